"""One registry for methods and datasets.

Built-ins and third-party plugins are found the same way: through the Python entry-point
groups `iqabench.methods` and `iqabench.datasets`. An entry point names a `module:attr`
target that is imported only when needed. A target may be a family (an object with
`resolve(suffix)` and `names()`), so `pyiqa:<metric>` reaches every pyiqa metric.
Users may also name plugin modules or files themselves (`--plugin`); nothing else is loaded.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, TypeVar

from iqabench.errors import IqaError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str, check: Callable[[Any], bool]):
        self.kind = kind
        self.group = group
        self._check = check
        self._targets: dict[str, Any] = {}  # name -> object or "module:attr"
        self._aliases: dict[str, str] = {}
        self._families: dict[str, Any] = {}
        self._entry_points_loaded = False
        self._all_imported = False

    # -- registration -------------------------------------------------------------
    def register(self, name: str, target: Any, aliases: Iterable[str] = ()) -> None:
        if name in self._targets and self._targets[name] is not target:
            existing = self._targets[name]
            if not (isinstance(existing, str) and not isinstance(target, str)):
                raise IqaError(f"{self.kind} {name!r} is registered twice ({_describe(existing)} and {_describe(target)})")
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
        for ep in importlib.metadata.entry_points(group=self.group):
            if ep.name not in self._targets:
                self._targets[ep.name] = ep.value

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
            return self._families[prefix].resolve(suffix)
        self._import_all()  # aliases are declared by the targets themselves
        if name in self._aliases:
            return self.get(self._aliases[name])
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(self.names())}"
        raise IqaError(f"unknown {self.kind} {name!r}{hint}")

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
        if isinstance(target, str):
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


def _describe(target: Any) -> str:
    return target if isinstance(target, str) else f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)}"


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


def load_plugin(spec: str) -> None:
    """Import a plugin the user named: a module name or a path to a .py file.

    Importing it runs its registration calls (`methods.register(...)`)."""
    path = Path(spec)
    if spec.endswith(".py"):
        if not path.is_file():
            raise IqaError(f"{spec}: plugin file not found")
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


def _is_method(obj: Any) -> bool:
    from iqabench.api import Method

    return isinstance(obj, type) and issubclass(obj, Method) and obj is not Method


def _is_dataset(obj: Any) -> bool:
    from iqabench.data.card import DatasetCard

    return isinstance(obj, DatasetCard)


methods: Registry = Registry("method", "iqabench.methods", _is_method)
datasets: Registry = Registry("dataset", "iqabench.datasets", _is_dataset)


def register_method(cls: type) -> type:
    """Class decorator for plugins that register in code rather than through an entry point."""
    methods.register(cls.name, cls, getattr(cls, "aliases", ()))
    return cls
