"""The `[reader]` table of a dataset card, checked once when the card is loaded.

Every mistake (unknown key, wrong type, unknown format, bad regex, a template that names a field
that cannot exist) is one IqaError line naming the card file, so a typo fails at registration,
not halfway through a run.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from iqabench.data.readers.templates import Template, ValueMap
from iqabench.errors import IqaError

FORMATS = ("csv", "xlsx", "mat", "text")
LOOKUPS = ("exact", "case-insensitive", "recursive")
GROUP_FIELDS = ("group", "group_index")
RESERVED = ("id", "path", "label", "ref", "ref_path", "official_set")

# key -> formats it applies to (None: all)
_READER_KEYS: dict[str, tuple[str, ...] | None] = {
    "format": None, "file": ("csv", "xlsx", "text"), "sheet": ("xlsx",), "columns": ("text",),
    "variables": ("mat",), "text": ("mat",), "groups": None, "keep": None, "exclude": None,
    "match": None, "maps": None, "id": None, "label": None, "ref": None, "official_set": None,
    "images": None, "refs": None, "extras": None, "numbers": None,
}
_FILES_KEYS = ("folders", "lookup", "name", "fallback")
_MATCH_KEYS = ("source", "pattern", "required", "form")
_MAP_KEYS = ("values", "aliases", "ignore_case")
_GROUP_KEYS = ("name", "count")


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
    for key in table:
        if key not in _READER_KEYS:
            raise IqaError(f"{where} unknown key {key!r} (known: {', '.join(_READER_KEYS)})")
        allowed = _READER_KEYS[key]
        if allowed is not None and fmt not in allowed:
            raise IqaError(f"{where} key {key!r} does not apply to format {fmt!r} (only {', '.join(allowed)})")

    variables = _mapping(table.get("variables", {}), f"{where}.variables", str)
    if fmt == "mat" and not variables:
        raise IqaError(f"{where} format 'mat' needs `variables` (variable = \"file.mat\")")
    columns = _strings(table.get("columns", ()), f"{where}.columns")
    if fmt == "text" and not columns:
        raise IqaError(f"{where} format 'text' needs `columns` (the field names of each line, in order)")
    text_vars = _strings(table.get("text", ()), f"{where}.text")
    for v in text_vars:
        if v not in variables:
            raise IqaError(f"{where}.text names {v!r}, which is not in `variables`")
    label = table.get("label", label_name)
    if not isinstance(label, str) or not label:
        raise IqaError(f"{where}.label must be a column name")
    if fmt == "mat":
        if label not in variables:
            raise IqaError(f"{where} the label {label!r} is not in `variables`")
        file = variables[label]
    else:
        file = table.get("file", default_file)
        if not isinstance(file, str) or not file:
            raise IqaError(f"{where}.file must be a file name")
    sheet = table.get("sheet", 0)
    if not isinstance(sheet, (str, int)) or isinstance(sheet, bool):
        raise IqaError(f"{where}.sheet must be a sheet name or a 0-based index")

    groups = []
    for i, g in enumerate(_list(table.get("groups", ()), f"{where}.groups")):
        gw = f"{where}.groups[{i}]"
        _check_keys(g, _GROUP_KEYS, gw)
        if not isinstance(g.get("name"), str) or not isinstance(g.get("count"), int) or g["count"] < 1:
            raise IqaError(f"{gw} needs name (text) and count (a positive integer)")
        groups.append((g["name"], g["count"]))

    keep = _mapping(table.get("keep", {}), f"{where}.keep", (str, int, float))
    exclude = {k: _regex(v, f"{where}.exclude.{k}") for k, v in
               _mapping(table.get("exclude", {}), f"{where}.exclude", str).items()}

    matches = []
    for i, m in enumerate(_list(table.get("match", ()), f"{where}.match")):
        mw = f"{where}.match[{i}]"
        _check_keys(m, _MATCH_KEYS, mw)
        if "source" not in m or "pattern" not in m:
            raise IqaError(f"{mw} needs source (a template) and pattern (a regex with named groups)")
        pattern = _regex(m["pattern"], f"{mw}.pattern")
        if not pattern.groupindex:
            raise IqaError(f"{mw}.pattern has no named group (?P<name>...): it would derive nothing")
        for g in pattern.groupindex:
            if g in RESERVED or g in GROUP_FIELDS:
                raise IqaError(f"{mw}.pattern group {g!r} shadows a field of the same name; rename it")
        required = m.get("required", True)
        form = m.get("form")
        if not isinstance(required, bool) or (form is not None and not isinstance(form, str)):
            raise IqaError(f"{mw}: required must be true/false and form text")
        matches.append(MatchSpec(Template.parse(m["source"], f"{mw}.source"), pattern, required, form))

    maps = {}
    for name, m in _mapping(table.get("maps", {}), f"{where}.maps", Mapping).items():
        mw = f"{where}.maps.{name}"
        _check_keys(m, _MAP_KEYS, mw)
        values = _mapping(m.get("values", {}), f"{mw}.values", (str, Mapping))
        if not values:
            raise IqaError(f"{mw} needs `values`")
        tables = {isinstance(v, Mapping) for v in values.values()}
        if len(tables) > 1:
            raise IqaError(f"{mw}.values mixes text and tables; use one kind")
        if True in tables:
            shapes = {tuple(sorted(v)) for v in values.values()}
            if len(shapes) > 1:
                raise IqaError(f"{mw}.values: every entry needs the same keys ({', '.join(sorted(shapes.pop()))})")
        aliases = _mapping(m.get("aliases", {}), f"{mw}.aliases", str)
        ignore_case = m.get("ignore_case", False)
        if not isinstance(ignore_case, bool):
            raise IqaError(f"{mw}.ignore_case must be true or false")
        vmap = ValueMap(dict(values), dict(aliases), ignore_case)
        for alias, target in aliases.items():
            if vmap.lookup(target) is None:
                raise IqaError(f"{mw}.aliases: {alias!r} points to {target!r}, which is not in values")
        maps[name] = vmap

    id_text = table.get("id")
    if id_text is None:
        raise IqaError(f"{where} has no `id` (the template naming each image, e.g. \"{{image_name}}\")")
    tid = Template.parse(id_text, f"{where}.id")
    ref = Template.parse(table["ref"], f"{where}.ref") if "ref" in table else None
    official = Template.parse(table["official_set"], f"{where}.official_set") if "official_set" in table else None
    images = _files(table.get("images", {}), f"{where}.images", "{id}")
    refs = None
    if "refs" in table:
        if ref is None:
            raise IqaError(f"{where}.refs needs `ref` (which reference each image has)")
        refs = _files(table["refs"], f"{where}.refs", "{ref}")
    extras = {}
    for name, text in _mapping(table.get("extras", {}), f"{where}.extras", str).items():
        if name in RESERVED:
            raise IqaError(f"{where}.extras: {name!r} is a column every table has; pick another name")
        extras[name] = Template.parse(text, f"{where}.extras.{name}")
    numbers = _strings(table.get("numbers", ()), f"{where}.numbers")
    for n in numbers:
        if n not in extras:
            raise IqaError(f"{where}.numbers names {n!r}, which is not in `extras`")

    spec = ReaderSpec(format=fmt, file=file, sheet=sheet, columns=columns, variables=dict(variables),
                      text=text_vars, groups=tuple(groups), keep=dict(keep), exclude=exclude, match=tuple(matches),
                      maps=maps, id=tid, label=label, ref=ref, official_set=official, images=images, refs=refs,
                      extras=extras, numbers=numbers, source=source)
    _check_templates(spec, where)
    return spec


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


def _files(value: Any, where: str, default_name: str) -> FilesSpec:
    if not isinstance(value, Mapping):
        raise IqaError(f"{where} must be a table")
    _check_keys(value, _FILES_KEYS, where)
    folders = _strings(value.get("folders", ("",)), f"{where}.folders") or ("",)
    for f in folders:
        if f.startswith("/") or ".." in f.replace("\\", "/").split("/"):
            raise IqaError(f"{where}.folders: {f!r} must stay inside the dataset folder")
    lookup = value.get("lookup", "exact")
    if lookup not in LOOKUPS:
        raise IqaError(f"{where}.lookup: unknown value {lookup!r} (known: {', '.join(LOOKUPS)})")
    name = Template.parse(value.get("name", default_name), f"{where}.name")
    fallback = Template.parse(value["fallback"], f"{where}.fallback") if "fallback" in value else None
    return FilesSpec(tuple(folders), lookup, name, fallback)


def _check_keys(table: Any, known: tuple[str, ...], where: str) -> None:
    if not isinstance(table, Mapping):
        raise IqaError(f"{where} must be a table")
    for key in table:
        if key not in known:
            raise IqaError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")


def _mapping(value: Any, where: str, kind: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise IqaError(f"{where} must be a table")
    for k, v in value.items():
        if not isinstance(v, kind) or isinstance(v, bool):
            raise IqaError(f"{where}: bad value for {k!r}: {v!r}")
    return dict(value)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in _list(value, where)):
        raise IqaError(f"{where} must be a list of text values")
    return tuple(value)


def _list(value: Any, where: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise IqaError(f"{where} must be a list")
    return list(value)


def _regex(text: Any, where: str) -> re.Pattern:
    if not isinstance(text, str):
        raise IqaError(f"{where} must be a regular expression (text)")
    try:
        return re.compile(text)
    except re.error as exc:
        raise IqaError(f"{where}: bad regular expression {text!r} ({exc})") from None
