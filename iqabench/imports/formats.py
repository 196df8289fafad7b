"""Readers of published per-image outputs: each turns a file into records (id, score, optional
label, the raw fields kept) and says which formula made the scores.

qbench   the Q-Bench authors' per-image outputs (`leaderboards/IQA_outputs/<model>/<set>.json`):
         JSON objects written back to back (`}{`), or a JSON list, or one object a line, each with
         `img_path`, `gt_score` and the last-position logits of two answer words (`logit_good`,
         `logit_poor`; one model uses `logit_high`, `logit_low`). The score is their notebook's
         (`leaderboards/IQA_outputs/eval.ipynb`): a softmax of the two logits at temperature 100,
         exp(g/100) / (exp(g/100) + exp(p/100)); their SRCC and PLCC are taken against `gt_score`
         with no logistic fit (iqabench's `plcc_raw`). Their CGIQA-6K number (`cgi.json`) is the
         mean of the SRCCs (and of the PLCCs) of the file's two halves, records 1-3000 and
         3001-6000 ("as in paper", the notebook says): the importer computes it beside the whole
         file's and records both (`QBENCH_BLOCKS`).
csv      a plain table with a header: `id` (or `image`, `img_path`, `path`) and `score`, optionally `label`.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

from iqabench.errors import IqaError

QBENCH_TEMPERATURE = 100.0
# The answer-word pairs the Q-Bench outputs carry, in the order they are looked for.
QBENCH_WORD_PAIRS = (("good", "poor"), ("high", "low"))
ID_COLUMNS = ("id", "image", "img_path", "path", "image_name")
# Files the notebook scores in blocks of records, by file name: (start, end) record ranges,
# 0-based and end-exclusive as its `d[:3000], d[3000:6000]`; the published number is their mean.
QBENCH_BLOCKS = {"cgi.json": ((0, 3000), (3000, 6000))}
FORMATS = ("qbench", "csv")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One image of a published file: its id as written, the score (None: not a number) and label."""

    id: str
    score: float | None
    label: float | None = None
    extras: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Published:
    format: str
    entries: list[Entry]
    formula: str  # short name, part of the run's identity
    formula_text: str  # what a reader of the manifest needs to recompute a score
    label_field: str | None  # the file's own label column, when it has one
    blocks: tuple[tuple[int, int], ...] | None = None  # record ranges the authors' number averages over


def detect(path: Path) -> str:
    """qbench for .json/.jsonl files, csv for .csv/.tsv/.txt."""
    suffix = Path(path).suffix.lower()
    if suffix in (".json", ".jsonl"):
        return "qbench"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    raise IqaError(f"{path}: cannot tell the format from the file name; give --format ({', '.join(FORMATS)})")


def read(path: Path, fmt: str = "auto") -> Published:
    path = Path(path)
    if not path.is_file():
        raise IqaError(f"{path}: no such file")
    fmt = detect(path) if fmt == "auto" else fmt
    if fmt == "qbench":
        return read_qbench(path)
    if fmt == "csv":
        return read_csv(path)
    raise IqaError(f"{path}: unknown format {fmt!r}; known: {', '.join(FORMATS)}")


# -- qbench ------------------------------------------------------------------------------------------------
def qbench_score(good: float, poor: float, temperature: float = QBENCH_TEMPERATURE) -> float:
    """exp(g/T) / (exp(g/T) + exp(p/T)), written as a logistic of the difference so it cannot overflow."""
    z = (poor - good) / temperature
    return 1.0 / (1.0 + math.exp(z)) if z < 700 else 0.0


def json_objects(text: str, path: Path) -> list[dict]:
    """A JSON list, or objects written back to back (with or without separators between them)."""
    decoder = json.JSONDecoder()
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise IqaError(f"{path}: not valid JSON ({exc})") from None
        objects = data
    else:
        objects, pos, end = [], len(text) - len(stripped), len(text)
        while pos < end:
            try:
                obj, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise IqaError(f"{path}: record {len(objects) + 1} is not valid JSON ({exc.msg} at "
                               f"character {exc.pos})") from None
            objects.append(obj)
            while pos < end and text[pos] in " \t\r\n,":
                pos += 1
    for k, obj in enumerate(objects, 1):
        if not isinstance(obj, dict):
            raise IqaError(f"{path}: record {k} is not a JSON object")
    return objects


def read_qbench(path: Path) -> Published:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise IqaError(f"{path}: cannot read ({exc})") from None
    objects = json_objects(text, path)
    if not objects:
        raise IqaError(f"{path}: no records")
    first = objects[0]
    pair = next((p for p in QBENCH_WORD_PAIRS if all(f"logit_{w}" in first for w in p)), None)
    if pair is None:
        raise IqaError(f"{path}: record 1 has none of the logit pairs "
                       f"{', '.join(f'logit_{a}/logit_{b}' for a, b in QBENCH_WORD_PAIRS)}")
    pos, neg = pair
    entries = []
    for k, obj in enumerate(objects, 1):
        sid = obj.get("img_path")
        if not isinstance(sid, str) or not sid:
            raise IqaError(f"{path}: record {k} has no img_path")
        good, poor = _number(obj.get(f"logit_{pos}")), _number(obj.get(f"logit_{neg}"))
        label = _number(obj.get("gt_score"))
        score = qbench_score(good, poor) if good is not None and poor is not None else None
        logits = {w: v for w, v in ((pos, good), (neg, poor)) if v is not None}
        entries.append(Entry(sid, score, label, {"word_logits": logits}))
    formula = f"qbench-softmax-{pos}-{neg}-t{QBENCH_TEMPERATURE:g}"
    text = (f"score = exp(logit_{pos}/{QBENCH_TEMPERATURE:g}) / (exp(logit_{pos}/{QBENCH_TEMPERATURE:g}) + "
            f"exp(logit_{neg}/{QBENCH_TEMPERATURE:g})), as in Q-Bench's leaderboards/IQA_outputs/eval.ipynb; "
            "their table's PLCC has no logistic fit (plcc_raw here)")
    blocks = QBENCH_BLOCKS.get(path.name)
    if blocks:
        text += ("; the published number of this file is the mean of the SRCCs (and PLCCs) of records "
                 + " and ".join(f"{a + 1}-{b}" for a, b in blocks) + ", as the notebook computes it")
    return Published("qbench", entries, formula, text, "gt_score" if any(e.label is not None for e in entries) else None,
                     blocks)


# -- csv ----------------------------------------------------------------------------------------------------
def read_csv(path: Path) -> Published:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            sample = handle.read(4096)
            handle.seek(0)
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t") if sample.strip() else csv.excel
            rows = list(csv.DictReader(handle, dialect=dialect))
            columns = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IqaError(f"{path}: cannot read as CSV ({exc})") from None
    if not rows:
        raise IqaError(f"{path}: no rows")
    id_col = next((c for c in ID_COLUMNS if c in columns), None)
    if id_col is None or "score" not in columns:
        raise IqaError(f"{path}: needs a header with an id column ({', '.join(ID_COLUMNS)}) and `score`; "
                       f"found {', '.join(columns)}")
    has_label = "label" in columns
    entries = []
    for line, row in enumerate(rows, 2):
        sid = (row.get(id_col) or "").strip()
        if not sid:
            raise IqaError(f"{path}:{line}: empty {id_col}")
        entries.append(Entry(sid, _number(row.get("score")), _number(row.get("label")) if has_label else None))
    return Published("csv", entries, "given", "the file's `score` column as written", "label" if has_label else None)


def _number(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
