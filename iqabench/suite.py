"""Paper-table suites: one declarative file per published table (suites/*.toml, data only).

A suite file says which table of which paper it reproduces, the metrics it shows, a protocol
(split or seeded split family, part, training), its columns (datasets) and rows (methods with
options; trainable rows say where they train), and the published number of every row x column x
metric. Rows or columns the project cannot compute are `published_only`: they keep the paper's
layout and numbers. Nothing here names a method or a dataset: every name comes from the file and
is checked against the registry when the suite is loaded.

    kind = "paper-table"                    # marks a paper-table suite (suites/demo.toml is not one)
    title = "..."
    metrics = ["srcc", "plcc_raw"]          # keys of a run's metrics.json
    digits = 3                              # decimals shown
    notes = "..."
    [source]   paper, table, where, url
    [protocol] split (a name, `ratio80-0-20-seed{1..10}`, or none: each dataset's default),
               part ("test"), aggregate ("median", for a seeded family), training
               ("none" | "within": train on each column's own split | "cross": rows say `train`), seed
    [[columns]] key, label, dataset, split, published_only, note
    [[rows]]    label, method, options, column_options.<column>, train = {dataset, split},
                columns (the columns it applies to), published_only, source, note,
                published.<column> = {<metric> = number}
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import pydantic

from iqabench.data import splits
from iqabench.errors import IqaError
from iqabench.io import named_by
from iqabench.metrics import CORRELATIONS, METRIC_KEYS
from iqabench.validation import Strict, validation_line

KIND = "paper-table"
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


# -- the file's structure (validated by pydantic; cross-checks and names below) -------------------
Number = pydantic.StrictFloat  # an int is a number too; text ("0.5") is not
MetricKey = Literal[METRIC_KEYS]  # type: ignore[valid-type]  # the keys of the metric table


class Source(Strict):
    paper: str
    table: str
    where: str | None = None  # page or section
    url: str | None = None


class Protocol(Strict):
    split: str | None = None  # None: each dataset's default split
    part: Literal["train", "val", "test"] = "test"
    aggregate: Literal["median"] | None = None  # how a seeded split family becomes one number
    training: Literal["none", "within", "cross"] = "none"
    seed: int = pydantic.Field(42, ge=0)  # training seed (part of a checkpoint's identity)


class Column(Strict):
    key: str | None = None  # defaults to the dataset name
    label: str
    dataset: str | None = None
    split: str | None = None
    published_only: bool = False
    note: str | None = None


class TrainSource(Strict):
    dataset: str
    split: str | None = None  # None: the training dataset's default split


class Row(Strict):
    label: str
    method: str | None = None
    options: dict[str, Any] = {}
    column_options: dict[str, dict[str, Any]] = {}
    train: TrainSource | None = None
    columns: list[str] | None = None
    published_only: bool = False
    published: dict[str, dict[MetricKey, Number]] = {}
    source: str | None = None  # where this row's published numbers come from, when not the table itself
    note: str | None = None


class SuiteFile(Strict):
    kind: Literal["paper-table"]
    title: str
    source: Source
    metrics: list[MetricKey] = pydantic.Field(min_length=1)
    digits: int = pydantic.Field(3, ge=1, le=6)
    notes: str = ""
    protocol: Protocol = Protocol()
    columns: list[Column] = pydantic.Field(min_length=1)
    rows: list[Row] = pydantic.Field(min_length=1)


# -- what the engine runs ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Unit:
    """One run: a dataset split part, and (for a trained method) where its checkpoint is trained."""

    dataset: str
    split: str
    part: str
    train_dataset: str | None = None
    train_split: str | None = None

    def describe(self) -> str:
        text = f"{self.dataset}/{self.split}/{self.part}"
        return text + (f" (trained on {self.train_dataset}/{self.train_split})" if self.train_dataset else "")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One row x column the harness can compute: one unit, or one per split of a seeded family."""

    row: Row
    column: Column
    method: str  # the registered (canonical) name
    options: dict[str, Any]  # as the suite gives them (merged row, column and command-line options)
    fingerprint_options: dict[str, Any]  # every option with its default filled in, as runs record it
    units: tuple[Unit, ...]
    aggregate: str | None
    seed: int
    needs_training: bool

    @property
    def name(self) -> str:
        return f"{self.row.label} x {self.column.label}"


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    spec: SuiteFile  # names resolved: canonical dataset and method names, column keys filled in
    adaptations: tuple[str, ...] = ()  # what --dataset-map / -o changed, shown above the table

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def columns(self) -> list[Column]:
        return self.spec.columns

    @property
    def rows(self) -> list[Row]:
        return self.spec.rows

    @property
    def metrics(self) -> list[str]:
        return list(self.spec.metrics)

    def cells(self) -> list[Cell]:
        """One cell per computable row x column, rows first, in the file's order."""
        return [self._cell(row, col) for row in self.rows if not row.published_only
                for col in self.columns if applies(row, col)]

    def _cell(self, row: Row, col: Column) -> Cell:
        from iqabench import registry
        from iqabench.plan import resolve_method

        protocol = self.spec.protocol
        options = {**row.options, **row.column_options.get(col.key, {})}
        choice = resolve_method(row.method, options)
        split = col.split or protocol.split or registry.datasets.get(col.dataset).default_split
        needs_training = _needs_training(choice)
        units = []
        for name in splits.parse_name(split).members():
            if row.train is not None and needs_training:
                train = (row.train.dataset, row.train.split or registry.datasets.get(row.train.dataset).default_split)
            elif needs_training:
                train = (col.dataset, name)  # within: the train part of the split it is tested on
            else:
                train = (None, None)
            units.append(Unit(col.dataset, name, protocol.part, *train))
        return Cell(row, col, choice.name, options, choice.options.model_dump(mode="json"), tuple(units),
                    protocol.aggregate, protocol.seed, needs_training)

    def datasets(self) -> list[str]:
        """Every dataset a computable cell reads (test columns and training sources)."""
        names = [c.dataset for c in self.columns if not c.published_only]
        names += [r.train.dataset for r in self.rows if r.train is not None and not r.published_only]
        return list(dict.fromkeys(names))

    def adapted(self, dataset_map: dict[str, str] | None = None, options: dict[str, Any] | None = None) -> "Suite":
        """The same suite on other datasets (`koniq10k=synthetic`) and/or with options applied to every
        row whose method takes them (`backend_path=<tiny model>`); published numbers stay the paper's."""
        return _adapt(self, dataset_map or {}, options or {})


def applies(row: Row, col: Column) -> bool:
    return not col.published_only and (row.columns is None or col.key in row.columns)


def _needs_training(choice) -> bool:
    return choice.trainable and choice.cls.external_weights(choice.options) is None


# -- finding and loading ---------------------------------------------------------------------------
def suites_folder() -> Path:
    from iqabench.locations import shipped_folder

    return shipped_folder("suites")


def list_suites(folder: Path | None = None) -> list[tuple[str, Path]]:
    """(name, path) of every paper-table suite file (files of another kind, e.g. demo.toml, are skipped)."""
    folder = Path(folder) if folder is not None else suites_folder()
    out = []
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        try:
            kind = _read_toml(path).get("kind")
        except IqaError:
            kind = KIND  # unreadable: listed, so that loading it says what is wrong
        if kind == KIND:
            out.append((path.stem, path))
    return out


def load_suite(name_or_path: str | Path) -> Suite:
    """A suite by name (a file in the shipped suites/ folder) or by path, validated against the
    registry; any problem is one IqaError line naming the file and the key."""
    path = _suite_path(name_or_path)
    data = _read_toml(path)
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
            extra += [k for k in ("options", "column_options") if getattr(row, k)]
            if extra:
                raise IqaError(f"{where}.{extra[0]}: a published_only row is not computed; remove it")
        elif not row.method:
            raise IqaError(f"{where}.method: missing (or mark the row published_only = true)")
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

    def dataset(name: str, where: str) -> str:
        try:
            return registry.datasets.get(name).name
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
            train = train.model_copy(update={"dataset": dataset(train.dataset, f"{where}.train.dataset")})
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
            trained = trained or _needs_training(choice)
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


# -- adapting a suite to the data and models at hand ------------------------------------------------
def _adapt(suite: Suite, dataset_map: dict[str, str], options: dict[str, Any]) -> Suite:
    from iqabench import registry

    notes = list(suite.adaptations)
    used = suite.datasets()
    mapping: dict[str, str] = {}
    for source, target in dataset_map.items():
        try:
            source_name = registry.datasets.get(source).name
            target_card = registry.datasets.get(target)
        except IqaError as exc:
            raise IqaError(f"--dataset-map {source}={target}: {exc}") from None
        if source_name not in used:
            raise IqaError(f"--dataset-map {source}={target}: suite {suite.name} does not use {source_name} "
                           f"(it uses {', '.join(used)})")
        mapping[source_name] = target_card.name
        notes.append(f"dataset {source_name} replaced by {target_card.name}: the published numbers are for "
                     f"{source_name}")

    def moved_split(split: str | None, old: str, new: str) -> str | None:
        if split is None or splits.parse_name(split).portable:
            return split
        default = registry.datasets.get(new).default_split
        notes.append(f"split {split} belongs to {old}; {new} uses its default split {default}")
        return default

    protocol_split = suite.spec.protocol.split
    columns = []
    for col in suite.columns:
        if col.published_only or col.dataset not in mapping:
            columns.append(col)
            continue
        new = mapping[col.dataset]
        split = moved_split(col.split or protocol_split, col.dataset, new)
        if split is None:
            split = registry.datasets.get(new).default_split
        columns.append(col.model_copy(update={"dataset": new, "split": split}))
    rows = []
    taken: set[str] = set()
    for row in suite.rows:
        if row.published_only:
            rows.append(row)
            continue
        update: dict[str, Any] = {}
        if row.train is not None and row.train.dataset in mapping:
            new = mapping[row.train.dataset]
            update["train"] = TrainSource(dataset=new, split=moved_split(row.train.split, row.train.dataset, new))
        fields = registry.methods.get(row.method).Options.model_fields
        mine = {k: v for k, v in options.items() if k in fields}
        if mine:  # the command line wins over the file, column options included
            update["options"] = {**row.options, **mine}
            update["column_options"] = {k: {**v, **{o: mine[o] for o in v if o in mine}}
                                        for k, v in row.column_options.items()}
            taken.update(mine)
        rows.append(row.model_copy(update=update))
    unknown = [k for k in options if k not in taken]
    if unknown:
        raise IqaError(f"-o {unknown[0]}: no computable row of suite {suite.name} has that option")
    if options:
        notes.append("options applied to every row that takes them: "
                     + ", ".join(f"{k}={v}" for k, v in options.items()))
    spec = suite.spec.model_copy(update={"columns": columns, "rows": rows})
    data = spec.model_dump(mode="python")
    # the file's own options were checked when it was loaded; what -o adds is the user's own choice
    return Suite(suite.name, suite.path, validate(data, suite.path, command_line=True), tuple(dict.fromkeys(notes)))
