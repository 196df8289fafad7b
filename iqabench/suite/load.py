"""Finding, loading and validating suite files: structure (pydantic), cross-references, then every
name against the registry; any problem is one IqaError line naming the file and the key."""
from __future__ import annotations

import copy
import difflib
import re
import tomllib
from pathlib import Path
from typing import Any

import pydantic

from iqabench.data import splits
from iqabench.data.union import canonical
from iqabench.errors import IqaError
from iqabench.io import named_by
from iqabench.metrics import CORRELATIONS
from iqabench.suite.definition import Suite, applies, needs_training
from iqabench.suite.lineup import as_suite_data, is_lineup
from iqabench.suite.spec import KIND, SuiteFile
from iqabench.validation import validation_line

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def suites_folder() -> Path:
    from iqabench.locations import shipped_folder

    return shipped_folder("suites")


def list_suites(folder: Path | None = None) -> list[tuple[str, Path]]:
    """(name, path) of every suite file: the paper tables and the demo's line-up (files of another
    kind are skipped; an unreadable one is listed, so that loading it says what is wrong)."""
    folder = Path(folder) if folder is not None else suites_folder()
    out = []
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        try:
            data = _read_toml(path)
        except IqaError:
            data = {"kind": KIND}
        if data.get("kind") == KIND or is_lineup(data):
            out.append((path.stem, path))
    return out


def load_suite(name_or_path: str | Path) -> Suite:
    """A suite by name (a file in the shipped suites/ folder) or by path, validated against the
    registry; any problem is one IqaError line naming the file and the key."""
    path = _suite_path(name_or_path)
    data = _read_toml(path)
    if is_lineup(data):  # the demo's line-up, run as a suite without published numbers
        data = as_suite_data(data, path)
    if data.get("kind") != KIND:
        raise IqaError(f"{path}: kind: not a paper-table suite (expected kind = \"{KIND}\")")
    return Suite(path.stem, path, validate(data, path))


def _suite_path(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    path = Path(text)
    if text.endswith(".toml") or path.is_file() or "/" in text:
        if not path.is_file():
            raise IqaError(f"{path}: suite file not found")
        return path
    candidate = suites_folder() / f"{text}.toml"
    if candidate.is_file():
        return candidate
    known = [n for n, _ in list_suites()]
    close = difflib.get_close_matches(text, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known) or 'none'}"
    raise IqaError(f"unknown suite {text!r}{hint}")


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IqaError(f"{path}: suite file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IqaError(f"{path}: not valid TOML ({exc})") from None


# -- validation ------------------------------------------------------------------------------------
def validate(data: dict, path: Path, command_line: bool = False) -> SuiteFile:
    """Structure (pydantic), then the cross-references, then every name against the registry.
    `command_line`: the options include what the user passed with -o (code opt-ins allowed)."""
    try:
        spec = SuiteFile(**data)
    except pydantic.ValidationError as exc:
        raise IqaError(validation_line(str(path), exc, SuiteFile, lambda loc: _loc(loc, data))) from None
    spec = _check_layout(spec, path)
    return _resolve_names(spec, path, command_line)


def _loc(loc: tuple, data: dict) -> str:
    """('rows', 2, 'published', 'x', 'srcc') -> 'rows[2] (Label).published.x.srcc'."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if i == 1 and loc[0] in ("rows", "columns"):
                label = _get(data, loc[0], part).get("label") if isinstance(_get(data, loc[0], part), dict) else None
                out += f" ({label})" if label else ""
        else:
            out += ("." if out else "") + str(part)
    return out


def _get(data: dict, key: str, index: int) -> Any:
    items = data.get(key)
    return items[index] if isinstance(items, list) and index < len(items) else None


def _where(kind: str, index: int, label: str) -> str:
    return f"{kind}[{index}] ({label})"


def _check_layout(spec: SuiteFile, path: Path) -> SuiteFile:
    columns = []
    for i, col in enumerate(spec.columns):
        where = f"{path}: {_where('columns', i, col.label)}"
        if col.published_only:
            if col.split is not None:
                raise IqaError(f"{where}.split: a published_only column is not computed, so it has no split")
        elif not col.dataset:
            raise IqaError(f"{where}.dataset: missing (only a published_only column may have no dataset)")
        key = col.key or col.dataset
        if not key:
            raise IqaError(f"{where}.key: a column without a dataset needs a key")
        if not _KEY.match(key):
            raise IqaError(f"{where}.key: {key!r} must be letters, digits, '.', '_', '+' or '-'")
        columns.append(col.model_copy(update={"key": key}))
    keys = [c.key for c in columns]
    for key in set(keys):
        if keys.count(key) > 1:
            raise IqaError(f"{path}: columns: key {key!r} is used twice; give the columns distinct `key`s")
    labels = [r.label for r in spec.rows]
    for i, row in enumerate(spec.rows):
        where = f"{path}: {_where('rows', i, row.label)}"
        if labels.index(row.label) < i:
            raise IqaError(f"{where}.label: rows[{labels.index(row.label)}] has the same label")
        if row.published_only:
            extra = [k for k in ("method", "train") if getattr(row, k) is not None]
            extra += [k for k in ("options", "column_options", "needs") if getattr(row, k)]
            if extra:
                raise IqaError(f"{where}.{extra[0]}: a published_only row is not computed; remove it")
        elif not row.method:
            raise IqaError(f"{where}.method: missing (or mark the row published_only = true)")
        elif row.why is not None:
            raise IqaError(f"{where}.why: says why a published_only row is not computed; this row is")
        for field, names in (("columns", row.columns or []), ("column_options", row.column_options),
                             ("published", row.published)):
            for name in names:
                if name not in keys:
                    raise IqaError(f"{where}.{field}.{name}: no such column (columns: {', '.join(keys)})")
        for col_key, values in row.published.items():
            if row.columns is not None and col_key not in row.columns:
                raise IqaError(f"{where}.published.{col_key}: the row does not cover this column (see its `columns`)")
            for metric, value in values.items():
                if metric not in spec.metrics:
                    raise IqaError(f"{where}.published.{col_key}.{metric}: not among the suite's metrics "
                                   f"({', '.join(spec.metrics)})")
                if metric in CORRELATIONS and not -1.0 <= value <= 1.0:
                    raise IqaError(f"{where}.published.{col_key}.{metric}: {value} is not a correlation in [-1, 1]")
    families = False
    for s, where in [(spec.protocol.split, "protocol.split")] + [
            (c.split, f"{_where('columns', i, c.label)}.split") for i, c in enumerate(columns)]:
        try:
            families |= s is not None and splits.parse_name(s).kind == "family"
        except IqaError as exc:  # an empty or oversized range
            raise IqaError(f"{path}: {where}: {exc}") from None
    if families and spec.protocol.aggregate is None:
        raise IqaError(f"{path}: protocol.aggregate: a seeded split family needs aggregate = \"median\"")
    return spec.model_copy(update={"columns": columns})


def _resolve_names(spec: SuiteFile, path: Path, command_line: bool = False) -> SuiteFile:
    """Canonical dataset and method names; every computable row's options checked per column."""
    from iqabench import registry
    from iqabench.plan import resolve_method

    def dataset(name: str, where: str, mix: bool = False) -> str:
        try:
            return canonical(name) if mix else registry.datasets.get(name).name
        except IqaError as exc:
            raise IqaError(f"{path}: {where}: {exc}") from None

    columns = [c if c.published_only else
               c.model_copy(update={"dataset": dataset(c.dataset, f"{_where('columns', i, c.label)}.dataset")})
               for i, c in enumerate(spec.columns)]
    rows = []
    for i, row in enumerate(spec.rows):
        where = _where("rows", i, row.label)
        if row.published_only:
            rows.append(row)
            continue
        row = row.model_copy(update={"options": copy.deepcopy(row.options),
                                     "column_options": copy.deepcopy(row.column_options)})
        try:
            method = registry.methods.get(row.method).name
        except IqaError as exc:
            raise IqaError(f"{path}: {where}.method: {exc}") from None
        train = row.train
        if train is not None:
            train = train.model_copy(update={"dataset": dataset(train.dataset, f"{where}.train.dataset", mix=True)})
        fields = registry.methods.get(method).Options.model_fields
        unknown = next((k for k in row.needs if k not in fields), None)
        if unknown is not None:
            raise IqaError(f"{path}: {where}.needs.{unknown}: not an option of {method}")
        trained = None
        for col in columns:
            if not applies(row, col):
                continue
            key = f"{where}.column_options.{col.key}" if col.key in row.column_options else f"{where}.options"
            try:
                choice = resolve_method(method, {**row.options, **row.column_options.get(col.key, {})})
            except IqaError as exc:
                raise IqaError(f"{path}: {key}: {exc}") from None
            if not command_line:
                _refuse_code_opt_ins(choice.options.model_dump(mode="json"), f"{path}: {key}")
                # files the suite names are relative to its own folder and stay inside it; -o values
                # (command_line) are the user's, relative to where they typed them
                for name in choice.cls.option_files(choice.options):
                    _place_file(row.column_options.get(col.key, {}), name, path, key)
                    _place_file(row.options, name, path, f"{where}.options")
            trained = trained or needs_training(choice)
        if trained:
            if spec.protocol.training == "none":
                raise IqaError(f"{path}: {where}.method: {method} must be trained but protocol.training is "
                               f"\"none\" (set it, or give published weights through the method's options)")
            if spec.protocol.training == "cross" and train is None:
                raise IqaError(f"{path}: {where}.train: protocol.training is \"cross\": say where {method} "
                               f"trains (train = {{ dataset = ..., split = ... }})")
        elif train is not None:
            raise IqaError(f"{path}: {where}.train: {method} is not trained here, so it has no training source")
        rows.append(row.model_copy(update={"method": method, "train": train}))
    return spec.model_copy(update={"columns": columns, "rows": rows})


def _place_file(options: dict[str, Any], dotted: str, path: Path, where: str) -> None:
    """The file option `dotted` (e.g. `examples`, `metric_options.x_path`), when `options` sets it,
    rewritten as the file inside the suite's folder that it names (one line when it leaves it)."""
    *parents, last = dotted.split(".")
    for part in parents:
        options = options.get(part) if isinstance(options, dict) else None
    if isinstance(options, dict) and isinstance(options.get(last), str) and options[last]:
        options[last] = str(named_by(path, options[last], f"{where}.{dotted}"))


# Options that start a program or run a model folder's own code: only the person at the keyboard may
# set them (-o on the command line), never a suite file someone else wrote.
_CODE_OPT_INS = {"worker_python": "names a program to start", "trust_remote_code": "runs a model folder's own code"}


def _refuse_code_opt_ins(options: dict[str, Any], where: str, prefix: str = "") -> None:
    """Walks the validated options (renamed and nested spellings included) for a code opt-in."""
    for key, value in options.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _refuse_code_opt_ins(value, where, f"{dotted}.")
        elif key in _CODE_OPT_INS and value not in (None, False, ""):
            raise IqaError(f"{where}.{dotted}: a suite file may not set this option (it {_CODE_OPT_INS[key]}); "
                           f"pass it yourself with -o {dotted.partition('.')[0]}=... on the command line")
