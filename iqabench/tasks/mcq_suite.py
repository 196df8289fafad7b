"""Accuracy tables of papers (suites/*.toml with kind = "accuracy-table", data only): the published
multiple-choice accuracies beside ours, from `iqabench ask` runs (iqabench/tasks/ask.py).

The layout follows the paper-table suites (iqabench/suite.py), with what a question set needs:

    kind = "accuracy-table"
    title = "..."
    digits = 2                               # decimals shown (accuracy in %)
    notes = "..."
    [source]   paper, table, where, url
    [[columns]] key, label, questions (the question file's name a computed cell answers),
                get (where a user obtains that file and its images), published_only, note
    [[rows]]    label, method (an MLLM method or a backend arch), options, answer (likelihood | generate),
                published_only, note, published.<column> = number (in %)

A computable cell (a row with a method, a column with a question file) is filled by the newest
complete `ask` run of that method, options and answer path on a question file of that name; until
one exists the cell says "cannot run here: needs the question file ..." with the command that
computes it. Nothing here names a method or a question set: every name comes from the file.
"""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Literal

import pydantic

from iqabench.errors import IqaError
from iqabench.validation import Strict, validation_line

KIND = "accuracy-table"


class Source(Strict):
    paper: str
    table: str
    where: str | None = None
    url: str | None = None


class Column(Strict):
    key: str
    label: str
    questions: str | None = None  # the question file's name, e.g. llvisionqa_dev.json
    get: str | None = None  # where the file and its images come from
    published_only: bool = False
    note: str | None = None


class Row(Strict):
    label: str
    method: str | None = None
    options: dict[str, Any] = {}
    answer: Literal["likelihood", "generate"] = "generate"
    published_only: bool = False
    published: dict[str, pydantic.StrictFloat] = {}
    note: str | None = None


class AccuracySuiteFile(Strict):
    kind: Literal["accuracy-table"]
    title: str
    source: Source
    digits: int = pydantic.Field(2, ge=0, le=4)
    notes: str = ""
    columns: list[Column] = pydantic.Field(min_length=1)
    rows: list[Row] = pydantic.Field(min_length=1)


@dataclasses.dataclass(frozen=True)
class AccuracySuite:
    name: str
    path: Path
    spec: AccuracySuiteFile


def list_accuracy_suites(folder: Path | None = None) -> list[tuple[str, Path]]:
    from iqabench.locations import shipped_folder

    folder = Path(folder) if folder is not None else shipped_folder("suites")
    out = []
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        try:
            if tomllib.loads(path.read_text(encoding="utf-8")).get("kind") == KIND:
                out.append((path.stem, path))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue  # not ours to judge: the paper-table loader names its problem
    return out


def is_accuracy_suite(name_or_path: str | Path) -> bool:
    return _path(name_or_path) is not None


def _path(name_or_path: str | Path) -> Path | None:
    path = Path(name_or_path)
    if path.is_file():
        try:
            return path if tomllib.loads(path.read_text(encoding="utf-8")).get("kind") == KIND else None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            return None
    return dict(list_accuracy_suites()).get(str(name_or_path))


def load_accuracy_suite(name_or_path: str | Path) -> AccuracySuite:
    """The suite, its rows' methods and options checked (one line naming the file and the row)."""
    from iqabench.tasks.ask import resolve_asker

    path = _path(name_or_path)
    if path is None:
        raise IqaError(f"{name_or_path}: not an accuracy-table suite")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    try:
        spec = AccuracySuiteFile(**data)
    except pydantic.ValidationError as exc:
        raise IqaError(validation_line(str(path), exc, AccuracySuiteFile)) from None
    keys = [c.key for c in spec.columns]
    for i, row in enumerate(spec.rows):
        where = f"{path}: rows[{i}] ({row.label})"
        if row.published_only == bool(row.method):
            raise IqaError(f"{where}: give a method, or mark the row published_only = true (not both)")
        for key in row.published:
            if key not in keys:
                raise IqaError(f"{where}.published.{key}: no such column (columns: {', '.join(keys)})")
        if row.method:
            try:
                resolve_asker(row.method, row.options)
            except IqaError as exc:
                raise IqaError(f"{where}.method: {exc}") from None
    return AccuracySuite(path.stem, path, spec)


def _ours(suite: AccuracySuite, row: Row, col: Column, runs) -> dict | None:
    from iqabench.tasks.ask import resolve_asker

    asker = resolve_asker(row.method, row.options)
    options = asker.options.model_dump(mode="json")
    found = [r for r in runs if r.usable and r.manifest["method"] == asker.name and r.manifest["answer"] == row.answer
             and r.manifest.get("options") == options and Path(r.manifest["questions"]["file"]).name == col.questions]
    return max(found, key=lambda r: str(r.accuracy.get("created"))).accuracy if found else None


def command(row: Row, col: Column) -> str:
    opts = "".join(f" -o {k}={v}" for k, v in row.options.items())
    return (f"iqabench ask --method {row.method}{opts} --answer {row.answer} --questions {col.questions} "
            f"--images DIR")


def is_computed(row: Row, col: Column) -> bool:
    """An `ask` run computes the cell: a row with a method x a column with a question file."""
    return not (row.published_only or col.published_only or not col.questions)


def computable(suite: AccuracySuite) -> list[tuple[Row, Column]]:
    return [(row, col) for row in suite.spec.rows for col in suite.spec.columns if is_computed(row, col)]


def cell_lines(suite: AccuracySuite, results: Path) -> list[str]:
    """Every row x column: its accuracy when a complete `ask` run computed it, else the command that
    computes it and why it cannot run here (the question file, the model); or published only."""
    from iqabench.report.accuracy import find_accuracy_runs
    from iqabench.tasks.ask import resolve_asker

    runs = find_accuracy_runs(results, problems=[]) if Path(results).is_dir() else []
    lines = []
    for row in suite.spec.rows:
        missing = None if row.published_only else resolve_asker(row.method, row.options).check_available()
        for col in suite.spec.columns:
            name = f"{row.label} x {col.label}"
            if not is_computed(row, col):
                why = row.note if row.published_only and row.note else col.note
                lines.append(f"{name}: published only" + (f" ({' '.join(why.split())})" if why else ""))
                continue
            acc = _ours(suite, row, col, runs)
            value = ((acc or {}).get("overall") or {}).get("accuracy")
            if value is not None:
                lines.append(f"{name}: `{command(row, col)}`; done: {100 * value:.{suite.spec.digits}f}%")
                continue
            reasons = ["its answers are withheld in the question file asked (n = 0)" if acc is not None else
                       f"needs the question file {col.questions}" + (f" (from {col.get})" if col.get else "")
                       + " and its images"] + ([f"method {row.method} not available: {missing}"] if missing else [])
            lines.append(f"{name}: `{command(row, col)}`; cannot run here: " + "; ".join(reasons))
    return lines


def show_lines(suite: AccuracySuite, results: Path) -> list[str]:
    """`suite show` of an accuracy table: source, columns (their question files), rows, published
    numbers, every cell (cell_lines) and the notes."""
    spec, d = suite.spec, suite.spec.digits
    src = spec.source
    lines = [f"{suite.name}: {spec.title}", f"kind: {KIND} (cells are `iqabench ask` runs; accuracy in %)",
             f"source: {src.paper}, {src.table}" + (f", {src.where}" if src.where else "")
             + (f" ({src.url})" if src.url else ""), "columns:"]
    for col in spec.columns:
        what = "published only" if col.published_only or not col.questions else f"questions {col.questions}"
        lines.append(f"  {col.key:16} {col.label:20} {what}" + (f" (from {col.get})" if col.get else ""))
    lines.append("rows:")
    for row in spec.rows:
        opts = "".join(f" -o {k}={v}" for k, v in row.options.items())
        lines.append(f"  {row.label}: " + ("published only" if row.published_only else
                                           f"{row.method}{opts}, answer {row.answer}"))
    lines.append("published:")
    for row in spec.rows:
        values = "; ".join(f"{key} {value:.{d}f}" for key, value in row.published.items())
        lines.append(f"  {row.label}: {values or '(none)'}")
    lines += ["cells:"] + [f"  {line}" for line in cell_lines(suite, results)]
    lines.append(f"cells computed by the harness: {len(computable(suite))}")
    if spec.notes.strip():
        lines.append("notes: " + " ".join(spec.notes.split()))
    return lines


def how_to_run(suite: AccuracySuite) -> str:
    """One line: the cells are `iqabench ask` runs on question files the suite does not hold."""
    files = ", ".join(dict.fromkeys(col.questions for _, col in computable(suite)))
    return (f"{suite.path}: an accuracy table: its {len(computable(suite))} cell(s) are `iqabench ask` runs on "
            f"question files not shipped here ({files}); `iqabench suite show {suite.name}` gives each cell's "
            f"command, then `iqabench report --suite {suite.name}` makes the table")


def render_accuracy_suite(suite: AccuracySuite, results: Path) -> str:
    """The table in Markdown: `ours (published)` per cell, footnotes saying why a cell is not computed."""
    from iqabench.report.accuracy import find_accuracy_runs

    spec = suite.spec
    runs = find_accuracy_runs(results, problems=[]) if Path(results).is_dir() else []
    lines = [f"# {spec.title}", "", f"Source: {spec.source.paper}, {spec.source.table}"
             + (f" ({spec.source.url})" if spec.source.url else "") + ".", "",
             "Each cell: ours (published), accuracy in %; ours is the newest complete `iqabench ask` run of "
             "the row's method and answer path on the column's question file.", ""]
    head = ["Method"] + [c.label for c in spec.columns]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    reasons: list[str] = []
    d = spec.digits
    for row in spec.rows:
        cells = [row.label]
        for col in spec.columns:
            pub = row.published.get(col.key)
            pub_text = f"{pub:.{d}f}" if pub is not None else "–"
            if not is_computed(row, col):
                cells.append(f"– ({pub_text})")
                continue
            acc = _ours(suite, row, col, runs)
            value = (acc or {}).get("overall", {}).get("accuracy")
            if value is not None:
                cells.append(f"{100 * value:.{d}f} ({pub_text})")
                continue
            mark = len(reasons) + 1
            why = ("its answers are withheld in the question file found (n = 0)" if acc is not None else
                   f"needs the {col.label} question file {col.questions}" + (f" (from {col.get})" if col.get else "")
                   + f" and its images; then `{command(row, col)}`")
            reasons.append(f"[{mark}] {row.label} x {col.label}: cannot run here: {why}")
            cells.append(f"not run [{mark}] ({pub_text})")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += reasons + ([""] if reasons else [])
    notes = [f"- {r.label}: {r.note}" for r in spec.rows if r.note] + \
        [f"- {c.label}: {c.note}" for c in spec.columns if c.note]
    if spec.notes.strip():
        lines += [spec.notes.strip(), ""]
    if notes:
        lines += notes + [""]
    return "\n".join(lines)
