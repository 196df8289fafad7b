"""The `[reader]` table of a dataset card, checked once when the card is loaded.

The table's structure is a pydantic model (`ReaderTable`: unknown keys refused, types strict);
what its keys mean (format, regexes, templates that name a field that cannot exist) is checked by
`parse_reader`. Every mistake is one IqaError line naming the card file and the key, so a typo
fails at registration, not halfway through a run.
"""
from __future__ import annotations

import dataclasses
import posixpath
import re
from typing import Any, Mapping

import pydantic

from iqabench import validation
from iqabench.data.readers.templates import Template, ValueMap
from iqabench.errors import IqaError
from iqabench.validation import Strict

FORMATS = ("csv", "xlsx", "mat", "text")
LOOKUPS = ("exact", "case-insensitive", "recursive")
GROUP_FIELDS = ("group", "group_index")
RESERVED = ("id", "path", "label", "ref", "ref_path", "official_set")

# keys that apply to some formats only; every other key applies to all
_APPLIES: dict[str, tuple[str, ...]] = {
    "file": ("csv", "xlsx", "text"), "sheet": ("xlsx",), "columns": ("text",), "variables": ("mat",),
    "text": ("mat",),
}


# -- the table as written (structure and types; what the keys mean is checked in parse_reader) ------
class FilesTable(Strict):
    folders: list[str] = [""]
    lookup: str = "exact"  # checked below: its message lists the lookups
    name: str | None = None
    fallback: str | None = None


class MatchTable(Strict):
    source: str
    pattern: str
    required: bool = True
    form: str | None = None


class MapTable(Strict):
    values: dict[str, str | dict[str, Any]] = {}
    aliases: dict[str, str] = {}
    ignore_case: bool = False


class GroupTable(Strict):
    name: str
    count: int = pydantic.Field(ge=1)


class ReaderTable(Strict):
    format: str
    file: str | None = None
    sheet: str | int = 0
    columns: list[str] = []
    variables: dict[str, str] = {}
    text: list[str] = []
    groups: list[GroupTable] = []
    keep: dict[str, str | int | float] = {}
    exclude: dict[str, str] = {}
    match: list[MatchTable] = []
    maps: dict[str, MapTable] = {}
    id: str | None = None
    label: str | None = None
    ref: str | None = None
    official_set: str | None = None
    images: FilesTable = FilesTable()
    refs: FilesTable | None = None
    extras: dict[str, str] = {}
    numbers: list[str] = []


@dataclasses.dataclass(frozen=True, eq=False)
class FilesSpec:
    """Where one kind of file (images, reference images) is looked up."""
    folders: tuple[str, ...]  # candidates relative to the dataset folder; "" is the folder itself
    lookup: str  # exact | case-insensitive | recursive (case-insensitive, anywhere below)
    name: Template  # the file name (or relative path) to look up
    fallback: Template | None  # the path when the lookup finds nothing (relative to the dataset folder)


@dataclasses.dataclass(frozen=True, eq=False)
class MatchSpec:
    """A regex applied to a rendered template; its named groups become fields."""
    source: Template
    pattern: re.Pattern
    required: bool
    form: str | None  # how a matching value looks, for the error message


@dataclasses.dataclass(frozen=True, eq=False)
class ReaderSpec:
    format: str
    file: str  # csv, xlsx, text: the metadata file; mat: the file holding the label
    sheet: str | int
    columns: tuple[str, ...]
    variables: Mapping[str, str]  # mat: variable -> file
    text: tuple[str, ...]  # mat: variables holding cell arrays of strings
    groups: tuple[tuple[str, int], ...]
    keep: Mapping[str, Any]
    exclude: Mapping[str, re.Pattern]
    match: tuple[MatchSpec, ...]
    maps: Mapping[str, ValueMap]
    id: Template
    label: str
    ref: Template | None
    official_set: Template | None
    images: FilesSpec
    refs: FilesSpec | None
    extras: Mapping[str, Template]
    numbers: tuple[str, ...]
    source: str  # the card file, for messages

    def derived_names(self) -> set[str]:
        names = set(GROUP_FIELDS) if self.groups else set()
        for m in self.match:
            names |= set(m.pattern.groupindex)
        return names

    def columns_needed(self) -> list[str]:
        """Metadata columns the templates, the label and the filters read (for header detection)."""
        derived = self.derived_names()
        needed: list[str] = [self.label, *self.keep, *self.exclude]
        for stage, templates in self.stages():
            for t in templates:
                needed.extend(n for n in t.names() if n not in derived and n not in stage)
        return list(dict.fromkeys(needed))

    def stages(self) -> list[tuple[set[str], list[Template]]]:
        """Templates in evaluation order, each with the output fields already available to it."""
        out: list[tuple[set[str], list[Template]]] = [(set(), [m.source for m in self.match]), (set(), [self.id])]
        done = {"id"}
        if self.ref is not None:
            out.append((set(done), [self.ref]))
            done.add("ref")
        rest = [t for t in (self.official_set, *self.extras.values(), self.images.name, self.images.fallback) if t]
        if self.refs is not None:
            rest += [t for t in (self.refs.name, self.refs.fallback) if t]
        out.append((set(done), rest))
        return out


def parse_reader(table: Any, source: str, default_file: str, label_name: str) -> ReaderSpec:
    """`table` checked and compiled; `source` names the card in messages; `default_file` is the
    metadata file when the table names none; `label_name` the label column when it names none."""
    where = f"{source}: [reader]"
    if not isinstance(table, Mapping):
        raise IqaError(f"{where} must be a table")
    fmt = table.get("format")
    if fmt is None:
        raise IqaError(f"{where} has no `format` (one of {', '.join(FORMATS)})")
    if fmt not in FORMATS:
        raise IqaError(f"{where} unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    t = validation.validate(ReaderTable, dict(table), source, validation.toml_place, at=("reader",))
    for key in t.model_fields_set:
        if key in _APPLIES and fmt not in _APPLIES[key]:
            raise IqaError(f"{where} key {key!r} does not apply to format {fmt!r} (only {', '.join(_APPLIES[key])})")
    if fmt == "mat" and not t.variables:
        raise IqaError(f"{where} format 'mat' needs `variables` (variable = \"file.mat\")")
    if fmt == "text" and not t.columns:
        raise IqaError(f"{where} format 'text' needs `columns` (the field names of each line, in order)")
    for v in t.text:
        if v not in t.variables:
            raise IqaError(f"{where}.text names {v!r}, which is not in `variables`")
    label = label_name if t.label is None else t.label
    if not label:
        raise IqaError(f"{where}.label must be a column name")
    if fmt == "mat" and label not in t.variables:
        raise IqaError(f"{where} the label {label!r} is not in `variables`")
    file = t.variables[label] if fmt == "mat" else default_file if t.file is None else t.file
    if not file:
        raise IqaError(f"{where}.file must be a file name")
    for key, named in [("file", file)] + [(f"variables.{k}", v) for k, v in t.variables.items()]:
        if not stays_inside(named):
            raise IqaError(f"{where}.{key}: {named!r} must stay inside the dataset folder (a path relative to it)")
    exclude = {k: _regex(v, f"{where}.exclude.{k}") for k, v in t.exclude.items()}
    matches = tuple(_match(m, f"{where}.match[{i}]") for i, m in enumerate(t.match))
    maps = {name: _map(m, f"{where}.maps.{name}") for name, m in t.maps.items()}
    if t.id is None:
        raise IqaError(f"{where} has no `id` (the template naming each image, e.g. \"{{image_name}}\")")
    ref = Template.parse(t.ref, f"{where}.ref") if t.ref is not None else None
    refs = None
    if t.refs is not None:
        if ref is None:
            raise IqaError(f"{where}.refs needs `ref` (which reference each image has)")
        refs = _files(t.refs, f"{where}.refs", "{ref}")
    for name in t.extras:
        if name in RESERVED:
            raise IqaError(f"{where}.extras: {name!r} is a column every table has; pick another name")
    for n in t.numbers:
        if n not in t.extras:
            raise IqaError(f"{where}.numbers names {n!r}, which is not in `extras`")
    spec = ReaderSpec(
        format=fmt, file=file, sheet=t.sheet, columns=tuple(t.columns), variables=dict(t.variables),
        text=tuple(t.text), groups=tuple((g.name, g.count) for g in t.groups), keep=dict(t.keep), exclude=exclude,
        match=matches, maps=maps, id=Template.parse(t.id, f"{where}.id"), label=label, ref=ref,
        official_set=None if t.official_set is None else Template.parse(t.official_set, f"{where}.official_set"),
        images=_files(t.images, f"{where}.images", "{id}"), refs=refs,
        extras={name: Template.parse(text, f"{where}.extras.{name}") for name, text in t.extras.items()},
        numbers=tuple(t.numbers), source=source)
    _check_templates(spec, where)
    return spec


def _match(m: MatchTable, where: str) -> MatchSpec:
    pattern = _regex(m.pattern, f"{where}.pattern")
    if not pattern.groupindex:
        raise IqaError(f"{where}.pattern has no named group (?P<name>...): it would derive nothing")
    for g in pattern.groupindex:
        if g in RESERVED or g in GROUP_FIELDS:
            raise IqaError(f"{where}.pattern group {g!r} shadows a field of the same name; rename it")
    return MatchSpec(Template.parse(m.source, f"{where}.source"), pattern, m.required, m.form)


def _map(m: MapTable, where: str) -> ValueMap:
    if not m.values:
        raise IqaError(f"{where} needs `values`")
    tables = {isinstance(v, Mapping) for v in m.values.values()}
    if len(tables) > 1:
        raise IqaError(f"{where}.values mixes text and tables; use one kind")
    if True in tables:
        shapes = {tuple(sorted(v)) for v in m.values.values()}
        if len(shapes) > 1:
            raise IqaError(f"{where}.values: every entry needs the same keys ({', '.join(sorted(shapes.pop()))})")
    vmap = ValueMap(dict(m.values), dict(m.aliases), m.ignore_case)
    for alias, target in m.aliases.items():
        if vmap.lookup(target) is None:
            raise IqaError(f"{where}.aliases: {alias!r} points to {target!r}, which is not in values")
    return vmap


def _check_templates(spec: ReaderSpec, where: str) -> None:
    """What can be checked before the data is read: `{name.key}` needs a map with that key, and a
    name known in advance (mat variables, text columns) must exist."""
    known_columns = set(spec.variables) | set(spec.columns) if spec.format in ("mat", "text") else None
    derived = spec.derived_names()
    for stage, templates in spec.stages():
        for t in templates:
            for name in t.names():
                if known_columns is not None and name not in known_columns | derived | stage:
                    raise IqaError(f"{where}: template {t.text!r} names {name!r}, which is neither a column "
                                   f"({', '.join(sorted(known_columns))}) nor a field derived before it")
            for name, key in t.keys():
                vmap = spec.maps.get(name)
                if vmap is None:
                    raise IqaError(f"{where}: template {t.text!r} reads {name}.{key}, but there is no "
                                   f"[reader.maps.{name}] table")
                entry = next(iter(vmap.values.values()))
                if not isinstance(entry, Mapping) or key not in entry:
                    raise IqaError(f"{where}: template {t.text!r} reads {name}.{key}, but the entries of "
                                   f"maps.{name} have no key {key!r}")


def stays_inside(rel: str) -> bool:
    """Whether a path a card names stays inside the folder it is relative to, on its text: not
    absolute (nor a drive or UNC path), and no `..` leaving it once `a/../` is resolved. A symlink
    inside the folder is the user's own choice and is followed."""
    text = rel.replace("\\", "/")
    if text.startswith("/") or re.match(r"[A-Za-z]:", text):
        return False
    normal = posixpath.normpath(text) if text else "."
    return normal != ".." and not normal.startswith("../")


def _files(value: FilesTable, where: str, default_name: str) -> FilesSpec:
    folders = tuple(value.folders) or ("",)
    for f in folders:
        if not stays_inside(f):
            raise IqaError(f"{where}.folders: {f!r} must stay inside the dataset folder")
    if value.lookup not in LOOKUPS:
        raise IqaError(f"{where}.lookup: unknown value {value.lookup!r} (known: {', '.join(LOOKUPS)})")
    name = Template.parse(value.name if value.name is not None else default_name, f"{where}.name")
    fallback = Template.parse(value.fallback, f"{where}.fallback") if value.fallback is not None else None
    return FilesSpec(folders, value.lookup, name, fallback)


def _regex(text: Any, where: str) -> re.Pattern:
    if not isinstance(text, str):
        raise IqaError(f"{where} must be a regular expression (text)")
    try:
        return re.compile(text)
    except re.error as exc:
        raise IqaError(f"{where}: bad regular expression {text!r} ({exc})") from None
