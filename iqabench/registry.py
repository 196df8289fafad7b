"""One registry for methods, datasets, MLLM backends and tiny-model builders.

Methods, built-in or third-party, are found through the Python entry-point group
`iqabench.methods`. An entry point names a `module:attr` target that is imported only when
needed. A target may be a family (an object with `resolve(suffix)` and `names()`), so
`pyiqa:<metric>` reaches every pyiqa metric.

Datasets are data: every `<name>/card.toml` in the shipped `datasets/` folder is registered
under its folder name and parsed only when asked for. Third parties add cards through the
entry-point group `iqabench.datasets` (a `module:attr` naming a DatasetCard), or from code with
`register_dataset(card)` / `register_dataset_file(path)`. Aliases work however a card came in.
MLLM backends (`iqabench.backends`), the builders of tiny test models of their architectures
(`iqabench.tiny_models`) and the dataset builders cards name (`iqabench.builders`) are found the
same way as methods, built-ins included.
Users may also name plugin modules or files themselves (`--plugin`); nothing else is loaded.
"""
from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from iqabench.errors import IqaError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str, check: Callable[[Any], bool],
                 load_file: Callable[[Path], Any] | None = None,
                 shipped: Callable[[], Iterable[tuple[str, Path]]] | None = None,
                 spellings: Callable[[Any], Iterable[str]] | None = None):
        self.kind = kind
        self.group = group
        self._check = check
        self._load_file = load_file  # a Path target -> object (datasets: a card file)
        self._shipped = shipped  # (name, Path) pairs registered before the entry points
        self._spellings = spellings  # object -> other names it answers to (datasets: their folder names)
        self._targets: dict[str, Any] = {}  # name -> object, "module:attr" or Path
        self._aliases: dict[str, str] = {}
        self._families: dict[str, Any] = {}
        self._entry_points_loaded = False
        self._all_imported = False

    # -- snapshot -------------------------------------------------------------------
    def _state(self) -> tuple:
        return (dict(self._targets), dict(self._aliases), dict(self._families), self._entry_points_loaded,
                self._all_imported)

    def _set_state(self, state: tuple) -> None:
        targets, aliases, families, self._entry_points_loaded, self._all_imported = state
        self._targets, self._aliases, self._families = dict(targets), dict(aliases), dict(families)

    # -- registration -------------------------------------------------------------
    def register(self, name: str, target: Any, aliases: Iterable[str] = ()) -> None:
        if name in self._targets and self._targets[name] is not target:
            existing = self._targets[name]
            # an entry point's "module:attr" may be replaced by the object it names, nothing else
            if not (isinstance(existing, str) and not isinstance(target, (str, Path))):
                raise IqaError(f"{self.kind} {name!r} is registered twice "
                               f"({_describe(existing)} and {_describe(target)})")
        self._targets[name] = target
        for alias in aliases:
            self._aliases[alias] = name

    def register_family(self, prefix: str, family: Any) -> None:
        if not (hasattr(family, "resolve") and hasattr(family, "names")):
            raise IqaError(f"{self.kind} family {prefix!r} needs resolve() and names()")
        self._families[prefix] = family
        for alias, target in getattr(family, "aliases", {}).items():
            self._aliases[alias] = f"{prefix}:{target}"

    def load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for name, path in (self._shipped() if self._shipped else ()):
            self._targets.setdefault(name, path)
        for ep in _entry_points(self.group):
            if ep.name not in self._targets:
                self._targets[ep.name] = ep.value
            elif isinstance(self._targets[ep.name], Path) and not _from_this_package(ep):
                print(f"iqabench: warning: {self.kind} plugin {ep.name!r} ({ep.value}) is ignored: "
                      f"{self._targets[ep.name]} has that name", file=sys.stderr)
        self._load_alias_indexes()

    def _load_alias_indexes(self) -> None:
        """Aliases known before any target is imported: each entry point of the group `<group>.aliases`
        names a small module attribute, a dict {alias: name or "family:member"} (a package's generated
        index of what its targets declare). So resolving an alias imports its target only; an alias
        no index knows is still found by importing every target."""
        for ep in _entry_points(f"{self.group}.aliases"):
            try:
                table = dict(ep.load())
            except Exception as exc:  # noqa: BLE001 - a broken index only makes lookups slower
                print(f"iqabench: warning: {self.kind} alias index {ep.value} failed to load: {exc}", file=sys.stderr)
                continue
            for alias, target in table.items():
                if str(target).partition(":")[0] in self._targets and alias not in self._targets:
                    self._aliases.setdefault(str(alias), str(target))

    def declared_names(self) -> list[str]:
        """Every name registered or found through an entry point, families by their prefix, nothing
        imported (so a name may still prove broken when resolved)."""
        self.load_entry_points()
        return sorted(self._targets)

    def declared(self, table: str) -> dict[str, Any]:
        """name -> its entry in the tables the entry point group `<group>.<table>` names (a package's
        generated index of what its targets declare, e.g. `recipe_splits`), for the names it covers;
        a name no table covers is missing: ask the object itself."""
        self.load_entry_points()
        out: dict[str, Any] = {}
        for ep in _entry_points(f"{self.group}.{table}"):
            try:
                loaded = dict(ep.load())
            except Exception as exc:  # noqa: BLE001 - a broken index only makes the answer slower
                print(f"iqabench: warning: {self.kind} index {ep.value} failed to load: {exc}", file=sys.stderr)
                continue
            # an index speaks for its own package's entry points only, never for a name registered since
            out.update((name, value) for name, value in loaded.items() if isinstance(self._targets.get(name), str))
        return out

    # -- lookup ---------------------------------------------------------------------
    def get(self, name: str) -> T:
        self.load_entry_points()
        if name in self._aliases:
            name = self._aliases[name]
        if name in self._targets:
            return self._resolve(name)
        prefix, sep, suffix = name.partition(":")
        if sep and prefix in self._targets:
            self._resolve(prefix)  # importing a family registers it
        if sep and prefix in self._families:
            try:
                return self._families[prefix].resolve(suffix)
            except IqaError:  # the family's own "unknown": unless it is a member in another case
                spelt = self._any_case(name)
                if spelt is None or spelt == name:
                    raise
                return self.get(spelt)
        spelt = self._any_case(name)  # among what is known without importing (names, indexed aliases)
        if spelt is not None and spelt != name:
            return self.get(spelt)
        self._import_all()  # aliases are declared by the targets themselves
        if name in self._aliases:
            return self.get(self._aliases[name])
        spelt = self._any_case(name)
        if spelt is not None:
            return self.get(spelt)
        raise IqaError(self._unknown(name))

    def _any_case(self, name: str) -> str | None:
        """The one registered name `name` spells in another case (`PIQE`, `KADID-10k`): a name, an alias
        or a family member first, then a spelling the object declares (a card's folder names, which
        two cards may share); None when there is none, or when two different names match."""
        wanted = name.casefold()
        found = {n for n in self._targets if n not in self._families and n.casefold() == wanted}
        found |= {target for alias, target in self._aliases.items() if alias.casefold() == wanted}
        prefix, sep, suffix = name.partition(":")
        for own_prefix, family in self._families.items() if sep else ():
            if own_prefix.casefold() == prefix.casefold():
                found |= {f"{own_prefix}:{m}" for m in family.names() if m.casefold() == suffix.casefold()}
        if not found and self._spellings is not None:
            found = {n for n, obj in self._targets.items() if not isinstance(obj, (str, Path))
                     and any(s.casefold() == wanted for s in self._spellings(obj))}
        return next(iter(found)) if len(found) == 1 else None

    def _unknown(self, name: str) -> str:
        """One line: the closest names and aliases, then every name with its aliases."""
        names = self.names()
        aliases = self.aliases()
        close = difflib.get_close_matches(name, names + sorted(aliases), n=3, cutoff=0.6)
        close = [f"{c} (= {aliases[c]})" if c in aliases else c for c in close]
        by_target: dict[str, list[str]] = {}
        for alias, target in aliases.items():
            by_target.setdefault(target, []).append(alias)
        for target in [t for t in by_target if ":" in t]:  # piqe -> pyiqa:piqe: listed with pyiqa:<name>
            by_target.setdefault(f"{target.partition(':')[0]}:<name>", []).extend(by_target.pop(target))
        known = []
        for n in names:
            own = sorted(by_target.pop(n, []))
            known.append(f"{n} (aliases {', '.join(own)})" if own else n)
        hint = f"; did you mean {', '.join(close)}?" if close else "."
        listing = f" (`iqabench list {self.kind}s`)" if self.kind in ("method", "dataset") else ""
        return f"unknown {self.kind} {name!r}{hint} Known{listing}: {'; '.join(known)}"

    def names(self, expand_families: bool = False) -> list[str]:
        self.load_entry_points()
        self._import_all()
        out = [n for n in self._targets if n not in self._families]
        for prefix, family in self._families.items():
            out.extend(f"{prefix}:{n}" for n in family.names()) if expand_families else out.append(f"{prefix}:<name>")
        return sorted(out)

    def aliases(self) -> dict[str, str]:
        self._import_all()
        return dict(self._aliases)

    def items(self, expand_families: bool = False) -> list[tuple[str, Any]]:
        return [(n, None if n.endswith(":<name>") else self.get(n)) for n in self.names(expand_families)]

    def _resolve(self, name: str) -> Any:
        target = self._targets[name]
        if isinstance(target, Path):
            obj = self._load_file(target) if self._load_file else None
            if obj is None or not self._check(obj):
                raise IqaError(f"{target}: not a valid {self.kind}")
            if getattr(obj, "name", name) != name:
                raise IqaError(f"{target}: declares name {obj.name!r}, but its folder registers it as {name!r}")
            target = self._targets[name] = obj
            for alias in getattr(obj, "aliases", ()):
                self._aliases.setdefault(alias, name)
        elif isinstance(target, str):
            target = _import_target(target, self.kind, name)
            if hasattr(target, "resolve") and hasattr(target, "names") and not isinstance(target, type):
                self._targets[name] = target
                self.register_family(name, target)
                return target
            if not self._check(target):
                raise IqaError(f"{self.kind} plugin {name!r} ({self._targets[name]}) is not a valid {self.kind}")
            self._targets[name] = target
            for alias in getattr(target, "aliases", ()):
                self._aliases.setdefault(alias, name)
        return target

    def _import_all(self) -> None:
        self.load_entry_points()
        if self._all_imported:
            return
        self._all_imported = True
        for name in list(self._targets):
            try:
                self._resolve(name)
            except IqaError:
                raise
            except Exception as exc:  # a broken third-party plugin must not hide the others
                print(f"iqabench: warning: {self.kind} plugin {name!r} failed to import: {exc}", file=sys.stderr)
                self._targets.pop(name)


@functools.lru_cache(maxsize=1)
def _installed_entry_points() -> importlib.metadata.EntryPoints:
    # one scan of the installed distributions per process: each group asked separately rescans them all
    # (6 ms each, and a listing asks for five groups)
    return importlib.metadata.entry_points()


def _entry_points(group: str) -> importlib.metadata.EntryPoints:
    return _installed_entry_points().select(group=group)


def _from_this_package(ep: importlib.metadata.EntryPoint) -> bool:
    # installed metadata older than the shipped cards still lists the built-ins: not a clash
    dist = getattr(ep, "dist", None)
    return dist is not None and dist.metadata["Name"] == "iqabench"


def _describe(target: Any) -> str:
    if isinstance(target, (str, Path)):
        return str(target)
    if getattr(target, "source", None) is not None:  # a card read from a file
        return str(target.source)
    qualname = getattr(target, "__qualname__", None)
    if qualname is None:  # an instance (a card built in code): name where it was made
        return f"a {type(target).__name__} from {getattr(target, '__module__', '?')}"
    return f"{getattr(target, '__module__', '?')}.{qualname}"


def _import_target(spec: str, kind: str, name: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise IqaError(f"{kind} {name!r}: cannot import {module_name} ({exc})") from exc
    obj: Any = module
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


_loaded_files: set[Path] = set()


def load_plugin(spec: str) -> None:
    """Import a plugin the user named: a module name or a path to a .py file.

    Importing it runs its registration calls (`methods.register(...)`)."""
    path = Path(spec)
    if spec.endswith(".py"):
        if not path.is_file():
            raise IqaError(f"{spec}: plugin file not found")
        if path.resolve() in _loaded_files:
            return  # its registrations are already made; running it again would register twice
        _loaded_files.add(path.resolve())
        mod_name = f"iqabench_plugin_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        assert module_spec and module_spec.loader
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            importlib.import_module(spec)
        except ImportError as exc:
            raise IqaError(f"plugin {spec!r}: cannot import ({exc})") from exc


class Snapshot:
    """What every registry holds at one moment (`snapshot()`), to put back with `restore()`."""

    def __init__(self) -> None:
        self._states = {name: reg._state() for name, reg in _registries().items()}
        self._loaded_files = set(_loaded_files)

    def added_since(self) -> list[str]:
        """'kind name' of each registration made since: a new name, or a name now standing for another
        object (an entry point's "module:attr" or a card's path replaced by what it names is a lookup)."""
        out = []
        for name, reg in _registries().items():
            before = self._states[name][0]
            for key, target in reg._targets.items():
                old = before.get(key, _MISSING)
                if old is _MISSING or (old is not target and not isinstance(old, (str, Path))):
                    out.append(f"{reg.kind} {key!r}")
        return out


_MISSING = object()


def _registries() -> dict[str, Registry]:
    return {"methods": methods, "backends": backends, "tiny_models": tiny_models, "datasets": datasets}


def snapshot() -> Snapshot:
    """The registries as they are now (entry points and shipped cards found first, so they are in it)."""
    for reg in _registries().values():
        reg.load_entry_points()
    return Snapshot()


def restore(snap: Snapshot) -> None:
    """Put every registry back as `snap` found it: registrations made since are undone, and plugin files
    loaded since may be loaded again."""
    for name, reg in _registries().items():
        reg._set_state(snap._states[name])
    _loaded_files.clear()
    _loaded_files.update(snap._loaded_files)


@contextlib.contextmanager
def scratch() -> Iterator[None]:
    """Registrations made inside are undone on leaving (tests, and anything that registers for a while)."""
    snap = snapshot()
    try:
        yield
    finally:
        restore(snap)


def _is_method(obj: Any) -> bool:
    from iqabench.api import Method

    return isinstance(obj, type) and issubclass(obj, Method) and obj is not Method


def _is_dataset(obj: Any) -> bool:
    from iqabench.data.card import DatasetCard

    return isinstance(obj, DatasetCard)


def _load_card(path: Path) -> Any:
    from iqabench.data.card import DatasetCard

    return DatasetCard.from_toml(path)


def _shipped_cards() -> list[tuple[str, Path]]:
    """Card files shipped in datasets/, named by their folder; nothing is parsed here."""
    from iqabench.locations import shipped_folder

    folder = shipped_folder("datasets")
    return [(p.parent.name, p) for p in sorted(folder.glob("*/card.toml"))] if folder.is_dir() else []


def _is_callable(obj: Any) -> bool:
    return callable(obj)


methods: Registry = Registry("method", "iqabench.methods", _is_method)
# MLLM backends: arch -> loader(BackendSpec, device) -> MLLMBackend (iqabench.models.backend)
backends: Registry = Registry("backend", "iqabench.backends", _is_callable)
# Builders of tiny random models of a backend's real architecture: arch -> build(folder, seed) -> folder
tiny_models: Registry = Registry("tiny model builder", "iqabench.tiny_models", _is_callable)
# Builders of datasets the project makes itself: name -> build(folder, progress=True); a card's
# [build] builder names one of these, so a data file can never pick a module to import.
builders: Registry = Registry("dataset builder", "iqabench.builders", _is_callable)
datasets: Registry = Registry("dataset", "iqabench.datasets", _is_dataset, load_file=_load_card,
                              shipped=_shipped_cards, spellings=lambda card: card.folder_names)


def register_dataset(card: Any) -> Any:
    """Register a DatasetCard with its aliases. Registering the card of one file twice is a no-op;
    a name or alias another card already has is an error."""
    if not _is_dataset(card):
        raise IqaError(f"register_dataset: expected a DatasetCard, got {type(card).__name__}")
    datasets.load_entry_points()  # so that a clash with a shipped card is seen
    existing = datasets._targets.get(card.name)
    if existing is not None and _same_file(existing if isinstance(existing, Path) else existing.source
                                           if _is_dataset(existing) else None, card.source):
        if _is_dataset(existing):
            return existing
        datasets._targets.pop(card.name)  # the shipped file itself: the parsed card replaces its path
    for alias in card.aliases:
        if alias in datasets._targets and alias != card.name:
            raise IqaError(f"dataset {card.name!r}: alias {alias!r} is the name of another dataset")
    datasets.register(card.name, card, card.aliases)
    return card


def _same_file(a: Path | None, b: Path | None) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


def register_dataset_file(path: str | Path) -> Any:
    """Register the card in a card.toml file (a plugin's own card)."""
    from iqabench.data.card import DatasetCard

    return register_dataset(DatasetCard.from_toml(Path(path)))


def register_method(cls: type) -> type:
    """Class decorator for plugins that register in code rather than through an entry point."""
    methods.register(cls.name, cls, getattr(cls, "aliases", ()))
    return cls
