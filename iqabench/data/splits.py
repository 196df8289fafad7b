"""Splits: a stable name, a membership hash, and a file that records both.

A split is either a committed file or computed from its name.

Committed files live in `datasets/<dataset>/splits/` (found through `shipped_folder("datasets")`):
  <name>.json   our format: {"dataset", "name", "hash", "sizes", "parts": {"train", "val", "test"},
                "source", "notes"}; `hash` and `sizes`, when present, must match the parts
  <name>.toml   a side-car describing published CSV file(s) beside it (see `_read_toml_split`)
A committed file wins over a computed name it happens to match.

Computed names:
  official                          the dataset's own split (KonIQ's `set` column)
  ratio{TR}-{VA}-{TE}-seed{S}       random per image, percentages summing to 100
  byref-ratio{TR}-{VA}-{TE}-seed{S} random per reference image: no content crosses parts
  all                               every image in `test` (for zero-shot scoring of a whole set)
A family `<name with {LO..HI}>` stands for one split per number: `ratio80-0-20-seed{1..10}` are the
ten random 80/20 splits of the PromptIQA protocol, `compare2score-test{1..10}` ten committed files.
`SplitName` (from `parse_name`) is the one reading of this grammar; every other module asks it.

Every split used is recorded under `results/splits/<dataset>/<name>.json`; a later use whose
membership hash differs from the record is refused.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from iqabench import io
from iqabench.data.columns import is_missing
from iqabench.errors import IqaError, one_line
from iqabench.locations import shipped_folder

if TYPE_CHECKING:  # a split is made from Columns or a DataFrame, whose columns are read alike
    import pandas as pd

    from iqabench.data.columns import Columns

    Table = Columns | pd.DataFrame

PARTS = ("train", "val", "test")
COMPUTED_FORMS = ("official", "all", "ratio{TR}-{VA}-{TE}-seed{S}", "byref-ratio{TR}-{VA}-{TE}-seed{S}")
FAMILY_CAP = 1000  # splits one family name may stand for; past it the name is refused, never expanded
_RATIO = re.compile(r"^(?P<byref>byref-)?ratio(?P<tr>\d+)-(?P<va>\d+)-(?P<te>\d+)-seed(?P<seed>\d+)$")
_FAMILY = re.compile(r"^(?P<head>[^{}]*)\{(?P<lo>\d+)\.\.(?P<hi>\d+)\}(?P<tail>[^{}]*)$")
_SEEDED = re.compile(r"^(?P<protocol>.+)-seed(?P<seed>\d+)$")
# A split name becomes a file name: no separators, no leading dot.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_JSON_KEYS = {"dataset", "name", "hash", "sizes", "parts", "source", "notes"}
_TOML_KEYS = {"source", "notes", "file", "part_column", "part_values", "files", "id_column", "header", "sep",
              "empty_parts"}
SPLIT_FILE_SUFFIXES = (".json", ".toml")


# -- the split-name grammar ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SplitName:
    """A split name read once. `kind` is official, all, ratio (random per image, or per reference
    image when `byref`), family (one name per number of a {LO..HI} range, expanded lazily by
    `members`) or named (a committed split file's name, checked when the split is made)."""

    text: str
    kind: str
    ratios: tuple[int, int, int] | None = None  # train, val, test percentages of a ratio name
    seed: int | None = None  # the number after a final `-seed`, whatever the kind
    byref: bool = False
    numbers: range | None = None  # a family's range
    head: str = ""  # a family: the text around its range
    tail: str = ""

    @property
    def protocol(self) -> str:
        """The name without its final `-seed<S>`: `byref-ratio80-0-20-seed3` -> `byref-ratio80-0-20`."""
        match = _SEEDED.match(self.text)
        return match["protocol"] if match else self.text

    @property
    def portable(self) -> bool:
        """Whether any dataset can make it (all, a ratio name, or a family of them): such a name
        survives moving a suite to another dataset; a named split belongs to its dataset."""
        if self.kind == "family":
            return parse_name(f"{self.head}{self.numbers.start}{self.tail}").portable
        return self.kind in ("all", "ratio")

    def __len__(self) -> int:
        return len(self.numbers) if self.kind == "family" else 1

    def members(self) -> Iterator[str]:
        """The split names it stands for, one at a time (a family's within FAMILY_CAP; others: itself)."""
        if self.kind != "family":
            yield self.text
            return
        for i in self.numbers:
            yield f"{self.head}{i}{self.tail}"


def parse_name(text: str) -> SplitName:
    """The reading of a split name; an empty or oversized family range is one IqaError line."""
    text = str(text)
    family = _FAMILY.match(text)
    if family:
        lo, hi = int(family["lo"]), int(family["hi"])
        if hi < lo:
            raise IqaError(f"split {text!r}: the range {{{lo}..{hi}}} is empty")
        if hi - lo + 1 > FAMILY_CAP:
            raise IqaError(f"split {text!r}: the range {{{lo}..{hi}}} names {hi - lo + 1} splits, more than "
                           f"the {FAMILY_CAP} a family may name")
        return SplitName(text, "family", numbers=range(lo, hi + 1), head=family["head"], tail=family["tail"])
    seeded = _SEEDED.match(text)
    seed = int(seeded["seed"]) if seeded else None
    if text in ("official", "all"):
        return SplitName(text, text)
    ratio = _RATIO.match(text)
    if ratio:
        return SplitName(text, "ratio", ratios=(int(ratio["tr"]), int(ratio["va"]), int(ratio["te"])), seed=seed,
                         byref=bool(ratio["byref"]))
    return SplitName(text, "named", seed=seed)


def expand(text: str | None) -> list[str | None]:
    """The split names a `--split` or suite value stands for (None: the dataset's default split)."""
    return [None] if text is None else list(parse_name(text).members())


@dataclasses.dataclass(frozen=True)
class Split:
    dataset: str
    name: str
    parts: dict[str, list[str]]
    source: str = ""  # where a committed split came from; empty for computed ones
    file: Path | None = None  # the committed file it was read from

    @property
    def hash(self) -> str:
        return membership_hash(self.parts)

    def ids(self, part: str) -> list[str]:
        if part not in self.parts:
            raise IqaError(f"split {self.name!r} has no part {part!r}; parts: {', '.join(self.parts)}")
        return self.parts[part]

    def to_json(self) -> dict:
        out = {"dataset": self.dataset, "name": self.name, "hash": self.hash,
               "sizes": {k: len(v) for k, v in self.parts.items()}, "parts": self.parts}
        if self.source:
            out["source"] = self.source
        return out


def membership_hash(parts: dict[str, list[str]]) -> str:
    canonical = {k: sorted(v) for k, v in sorted(parts.items())}
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()[:16]


# -- which splits a dataset has ------------------------------------------------------------------

def splits_folder(dataset: str, datasets_root: Path | None = None) -> Path:
    root = Path(datasets_root) if datasets_root is not None else shipped_folder("datasets")
    return root / dataset / "splits"


def file_splits(dataset: str, datasets_root: Path | None = None) -> dict[str, Path]:
    """Committed split files of `dataset`, by split name."""
    folder = splits_folder(dataset, datasets_root)
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir(), key=_natural):
        if path.suffix not in SPLIT_FILE_SUFFIXES or path.name.startswith(".") or not path.is_file():
            continue
        if path.stem in found:
            raise IqaError(f"{path}: split {path.stem!r} is also defined by {found[path.stem].name}; keep one")
        found[path.stem] = path
    return found


def _natural(path: Path) -> list:
    """test2 before test10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def available_splits(dataset: str, table: Table | None = None,
                     datasets_root: Path | None = None) -> list[str]:
    """Committed split names (usable as they are), then the computed forms ({..} are templates).

    With `table`, `official` is listed only when it has `official_set`, the by-reference form only
    when it has `ref`; without it every computed form is listed."""
    computed = [form for form in COMPUTED_FORMS
                if table is None
                or (form != "official" or "official_set" in table.columns)
                and (not form.startswith("byref-") or "ref" in table.columns)]
    committed = list(file_splits(dataset, datasets_root))
    return committed + [c for c in computed if c not in committed]


# -- making a split ------------------------------------------------------------------------------

def make_split(dataset: str, table: Table, name: str, datasets_root: Path | None = None) -> Split:
    if not _SAFE_NAME.match(name):
        raise IqaError(f"split name {name!r}: use letters, digits, '.', '_' and '-' only")
    committed = file_splits(dataset, datasets_root)
    if name in committed:
        split = read_split_file(committed[name], dataset)
        check_ids(split, table)
        return split
    ids = [str(v) for v in table["id"]]
    if name == "all":
        return Split(dataset, name, {"train": [], "val": [], "test": ids})
    if name == "official":
        if "official_set" not in table.columns:
            raise IqaError(f"{dataset} has no official split; use e.g. ratio80-10-10-seed42")
        sets = list(table["official_set"])
        parts = {p: [i for i, s in zip(ids, sets) if s == p] for p in PARTS}
        unknown = {str(s) for s in sets} - set(PARTS)
        if unknown:
            raise IqaError(f"{dataset}: official split has unknown part(s) {sorted(unknown)}")
        return Split(dataset, name, parts)
    parsed = parse_name(name)
    if parsed.kind != "ratio":
        listed = f"a committed split ({', '.join(committed)}), " if committed else ""
        raise IqaError(f"unknown split name {name!r} for {dataset}: use {listed}official, all, "
                       "ratioA-B-C-seedS or byref-ratioA-B-C-seedS")
    fractions = list(parsed.ratios)
    if sum(fractions) != 100:
        raise IqaError(f"split {name!r}: percentages must sum to 100")
    seed = parsed.seed
    if parsed.byref:
        if "ref" not in table.columns or any(is_missing(v) for v in table["ref"]):
            raise IqaError(f"{dataset} has no reference column: a by-reference split is not possible")
        refs = [str(v) for v in table["ref"]]
        assigned = _assign(sorted(set(refs)), fractions, seed)
        parts = {p: [i for i, ref in zip(ids, refs) if assigned[ref] == p] for p in PARTS}
    else:
        assigned = _assign(sorted(ids), fractions, seed)
        parts = {p: [i for i in ids if assigned[i] == p] for p in PARTS}
    return Split(dataset, name, parts)


def _assign(units: list[str], percent: list[int], seed: int) -> dict[str, str]:
    """Shuffle units with a seeded generator and cut them by the percentages (rounded)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(units))
    n = len(units)
    n_train = round(n * percent[0] / 100)
    n_val = round(n * percent[1] / 100)
    out = {}
    for rank, idx in enumerate(order):
        out[units[idx]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return out


def load_or_make(dataset: str, table: Table, name: str, split_dir: Path,
                 datasets_root: Path | None = None) -> Split:
    """Make (or read) the split, record it under `split_dir`, and refuse if a recorded one differs."""
    split = make_split(dataset, table, name, datasets_root)
    path = Path(split_dir) / dataset / f"{name}.json"
    if path.exists():
        recorded = _read_json(path, "delete it to re-record the split, if the dataset did not change")
        recorded_hash = recorded.get("hash") if isinstance(recorded, dict) else None
        if not isinstance(recorded_hash, str):
            raise IqaError(f"{path}: not a split record (no hash); delete it to re-record the split, "
                           "if the dataset did not change")
        if recorded_hash != split.hash:
            changed = f"the split file {split.file} or the dataset's metadata" if split.file \
                else "the dataset's metadata"
            raise IqaError(f"{path}: recorded split hash {recorded_hash} differs from {split.hash}: {changed} "
                           "changed since it was recorded (delete the record only to accept the new membership; "
                           "results made with the old one do not compare)")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        io.write_json_atomic(path, split.to_json())
    return split


# -- committed split files -----------------------------------------------------------------------

def read_split_file(path: Path, dataset: str) -> Split:
    """A committed split, checked on its own (parts, duplicates, recorded hash and sizes); its ids
    are checked against the dataset by `check_ids`."""
    path = Path(path)
    if path.suffix == ".json":
        parts, source = _read_json_split(path, dataset)
    elif path.suffix == ".toml":
        parts, source = _read_toml_split(path)
    else:
        raise IqaError(f"{path}: a split file is .json or .toml")
    _check_disjoint(path, parts)
    if not any(parts.values()):
        raise IqaError(f"{path}: every part is empty")
    return Split(dataset, path.stem, parts, source, path)


def check_ids(split: Split, table: Table) -> None:
    """Every id of the split must be an image of the dataset's table."""
    known = {str(v) for v in table["id"]}
    unknown = [i for p in PARTS for i in split.parts[p] if i not in known]
    if unknown:
        raise IqaError(f"{split.file or split.name}: {len(unknown)} id(s) not in dataset {split.dataset}, "
                       f"first {unknown[0]!r}")


def _read_json(path: Path, advice: str):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IqaError(f"{path}: not valid JSON (cut short or edited? {exc.msg} at line {exc.lineno}, "
                       f"column {exc.colno}); {advice}") from None
    except UnicodeDecodeError:
        raise IqaError(f"{path}: not UTF-8 text; {advice}") from None


def _read_json_split(path: Path, dataset: str) -> tuple[dict[str, list[str]], str]:
    data = _read_json(path, "restore it from version control or regenerate it")
    if not isinstance(data, dict):
        raise IqaError(f"{path}: expected a JSON object with a `parts` object")
    unknown = sorted(set(data) - _JSON_KEYS)
    if unknown:
        raise IqaError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_JSON_KEYS))}")
    for key, expected in (("dataset", dataset), ("name", path.stem)):
        if key in data and data[key] != expected:
            raise IqaError(f"{path}: `{key}` is {data[key]!r} but the file is the split {path.stem!r} of {dataset}")
    source = data.get("source")
    if not isinstance(source, str) or not source.strip():
        raise IqaError(f"{path}: `source` (where the split came from) is missing or empty")
    parts = data.get("parts")
    if not isinstance(parts, dict):
        raise IqaError(f"{path}: `parts` is missing or not an object of {', '.join(PARTS)}")
    _check_part_names(path, parts)
    for part, ids in parts.items():
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise IqaError(f"{path}: part {part!r} is not a list of non-empty image ids")
    parts = {p: parts[p] for p in PARTS}
    if "sizes" in data:
        sizes = {p: len(parts[p]) for p in PARTS}
        if data["sizes"] != sizes:
            raise IqaError(f"{path}: `sizes` {data['sizes']} does not match the parts {sizes}")
    if "hash" in data and data["hash"] != membership_hash(parts):
        raise IqaError(f"{path}: `hash` {data['hash']} does not match its parts ({membership_hash(parts)}): "
                       "the parts were edited; regenerate the file")
    return parts, source


def _check_part_names(path: Path, parts) -> None:
    missing = [p for p in PARTS if p not in parts]
    if missing:
        raise IqaError(f"{path}: missing part(s) {', '.join(missing)} (an unused part is an empty list)")
    extra = sorted(set(parts) - set(PARTS))
    if extra:
        raise IqaError(f"{path}: unknown part(s) {', '.join(map(str, extra))}; parts are {', '.join(PARTS)}")


def _check_disjoint(path: Path, parts: dict[str, list[str]]) -> None:
    seen: dict[str, str] = {}
    for part in PARTS:
        for i in parts[part]:
            if i in seen:
                where = f"twice in {part}" if seen[i] == part else f"in both {seen[i]} and {part}"
                raise IqaError(f"{path}: id {i!r} is {where}")
            seen[i] = part


def _read_toml_split(path: Path) -> tuple[dict[str, list[str]], str]:
    """A side-car describing published CSV file(s) in the same folder. Either one file with a part
    column, or one file per part:

        source = "github.com/owner/repo @ <commit> : data/split.csv"
        file = "split.csv"              # one file ...
        part_column = "split"
        part_values = { train = "training", val = "validation", test = "test" }   # if not train/val/test
        # files = { train = "train.txt", test = "test.txt" }                       # ... or one per part
        id_column = "image"             # a column name; with header = false, a 0-based index (default 0)
        header = true
        sep = ","
        empty_parts = ["val"]           # parts deliberately left empty
    """
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IqaError(f"{path}: not valid TOML ({exc}); restore it from version control or fix it") from None
    unknown = sorted(set(spec) - _TOML_KEYS)
    if unknown:
        raise IqaError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOML_KEYS))}")
    source = spec.get("source")
    if not isinstance(source, str) or not source.strip():
        raise IqaError(f"{path}: `source` (where the split came from) is missing or empty")
    empty = spec.get("empty_parts", [])
    if not isinstance(empty, list) or set(empty) - set(PARTS):
        raise IqaError(f"{path}: `empty_parts` must be a list of {', '.join(PARTS)}")
    if ("file" in spec) == ("files" in spec):
        raise IqaError(f"{path}: give either `file` (one CSV with a part column) or `files` (one per part)")
    if "file" in spec:
        parts = _parts_from_column(path, spec)
    else:
        files = spec["files"]
        if not isinstance(files, dict):
            raise IqaError(f"{path}: `files` must map parts to file names")
        extra = sorted(set(files) - set(PARTS))
        if extra:
            raise IqaError(f"{path}: unknown part(s) {', '.join(extra)} in `files`; parts are {', '.join(PARTS)}")
        parts = {p: _read_ids(path, spec, files[p]) if p in files else [] for p in PARTS}
    for part in PARTS:
        if part in empty and parts[part]:
            raise IqaError(f"{path}: part {part!r} is listed in `empty_parts` but has {len(parts[part])} id(s)")
        if part not in empty and not parts[part]:
            raise IqaError(f"{path}: missing part {part!r} (no ids; list it in `empty_parts` if that is intended)")
    return parts, source


def _parts_from_column(path: Path, spec: dict) -> dict[str, list[str]]:
    column = spec.get("part_column")
    if not isinstance(column, str):
        raise IqaError(f"{path}: `file` needs `part_column`, the column naming each image's part")
    values = spec.get("part_values", {p: p for p in PARTS})
    if not isinstance(values, dict) or set(values) - set(PARTS):
        raise IqaError(f"{path}: `part_values` must map {', '.join(PARTS)} to the values the file uses")
    part_of = {}
    for part, published in values.items():
        for value in published if isinstance(published, list) else [published]:
            part_of[str(value)] = part
    frame = _read_csv(path, spec, spec["file"])
    if column not in frame.columns:
        raise IqaError(f"{_data_file(path, spec['file'])}: no column {column!r} (columns: {', '.join(frame.columns)})")
    ids = _id_values(path, spec, spec["file"], frame)
    labels = frame[column].astype(str).str.strip()
    strange = sorted(set(labels) - set(part_of))
    if strange:
        raise IqaError(f"{_data_file(path, spec['file'])}: part value(s) {', '.join(map(repr, strange))} are not "
                       f"mapped by `part_values` in {path.name}")
    parts: dict[str, list[str]] = {p: [] for p in PARTS}
    for i, label in zip(ids, labels):
        parts[part_of[label]].append(i)
    return parts


def _read_ids(path: Path, spec: dict, name) -> list[str]:
    return _id_values(path, spec, name, _read_csv(path, spec, name))


def _data_file(path: Path, name) -> Path:
    """A file named by the side-car: beside it, never outside the splits folder."""
    if not isinstance(name, str) or not name or os.path.isabs(name) or ".." in Path(name).parts:
        raise IqaError(f"{path}: data file {name!r} must be a relative path inside {path.parent}")
    return path.parent / name


def _read_csv(path: Path, spec: dict, name) -> pd.DataFrame:
    import pandas as pd

    data = _data_file(path, name)
    header = spec.get("header", True)
    sep = spec.get("sep", ",")
    if not isinstance(header, bool) or not isinstance(sep, str) or not sep:
        raise IqaError(f"{path}: `header` must be true/false and `sep` a non-empty string")
    try:
        return pd.read_csv(data, sep=sep, header=0 if header else None, dtype=str, keep_default_na=False,
                           engine="python" if len(sep) > 1 else "c")
    except FileNotFoundError:
        raise IqaError(f"{path}: data file {data} not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise IqaError(f"{data}: cannot read as CSV ({one_line(exc, typed=True)})") from None


def _id_values(path: Path, spec: dict, name, frame: pd.DataFrame) -> list[str]:
    header = spec.get("header", True)
    column = spec.get("id_column", None if header else 0)
    if header and not isinstance(column, str):
        raise IqaError(f"{path}: `id_column` must name the image column of {name}")
    if not header and (not isinstance(column, int) or isinstance(column, bool)):
        raise IqaError(f"{path}: with header = false, `id_column` is a 0-based column index")
    if column not in frame.columns:
        columns = ", ".join(map(str, frame.columns))
        raise IqaError(f"{_data_file(path, name)}: no column {column!r} (columns: {columns})")
    ids = frame[column].astype(str).str.strip().tolist()
    blank = [n for n, i in enumerate(ids) if not i]
    if blank:
        raise IqaError(f"{_data_file(path, name)}: {len(blank)} row(s) with an empty id, first data row {blank[0] + 1}")
    return ids
