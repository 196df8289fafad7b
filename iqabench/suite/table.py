"""A suite in its paper's layout: our number, the published one and the difference, per cell.

Rows and columns are the suite file's, in its order; each data cell reads "ours / published
(ours - published)". Our number comes from the run found for the cell (see
iqabench.suite.index.RunIndex: same method, options fingerprint, dataset, split, part and
training source); a smoke-test (`--limit`) run or an unfinished one never fills a cell. For a
seeded split family the cell is the median over the splits found, and says how many. A cell
without a number shows "—" and a footnote saying why. Written as Markdown, LaTeX and CSV.
"""
from __future__ import annotations

import csv
import dataclasses
import io as _io
import statistics
from pathlib import Path

from iqabench import io
from iqabench.metrics import METRICS
from iqabench.suite.definition import Cell, Suite, applies
from iqabench.suite.index import RunIndex

DASH = "—"


@dataclasses.dataclass
class Entry:
    """One row x column x metric of the table."""

    ours: float | None
    published: float | None
    applicable: bool = True  # False: the row does not cover this column (blank, as in the paper)
    notes: list[str] = dataclasses.field(default_factory=list)
    found: int = 0  # runs behind `ours`
    expected: int = 0  # runs the cell needs (the splits of a seeded family)
    run_dirs: list[str] = dataclasses.field(default_factory=list)

    @property
    def diff(self) -> float | None:
        return None if self.ours is None or self.published is None else self.ours - self.published


def suite_entries(suite: Suite, index: RunIndex) -> dict[tuple[str, str, str], Entry]:
    """(row label, column key, metric) -> Entry, for every row x column x metric of the suite."""
    cells = {(c.row.label, c.column.key): c for c in suite.cells()}
    out: dict[tuple[str, str, str], Entry] = {}
    for row in suite.rows:
        for col in suite.columns:
            published = row.published.get(col.key, {})
            cell = cells.get((row.label, col.key))
            for metric in suite.metrics:
                entry = Entry(None, _float(published.get(metric)))
                if row.published_only or col.published_only:
                    entry.applicable = entry.published is not None  # its row label or column title says why
                elif not applies(row, col):
                    entry.applicable = False
                elif cell is not None:
                    _fill(entry, cell, metric, index)
                out[(row.label, col.key, metric)] = entry
    return out


def _fill(entry: Entry, cell: Cell, metric: str, index: RunIndex) -> None:
    values, reasons = [], []
    entry.expected = len(cell.units)
    for unit in cell.units:
        record, why = index.best(cell, unit)
        if record is None:
            reasons.append(why)
            continue
        entry.found += 1
        entry.run_dirs.append(str(record.run_dir))
        values.append(record.metric(metric))
    if entry.found == 0:
        entry.notes.append(f"no usable run: {_most_common(reasons)} (`iqabench suite run` fills it)")
        return
    if any(v is None for v in values):
        entry.notes.append(f"{metric} undefined in {sum(v is None for v in values)} of {entry.found} run(s) "
                           "(see their metrics.json undefined_reason)")
        return
    if entry.expected == 1:
        entry.ours = values[0]
        return
    entry.ours = float(statistics.median(values))
    entry.notes.append(f"{cell.aggregate or 'median'} over {entry.found} of {entry.expected} splits"
                       + (f" (missing: {_most_common(reasons)})" if reasons else ""))


def _most_common(reasons: list[str]) -> str:
    return max(set(reasons), key=reasons.count) if reasons else ""


def _float(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value else None  # NaN: undefined


# -- text of one entry -------------------------------------------------------------------------------
class Footnotes:
    def __init__(self):
        self.texts: list[str] = []

    def mark(self, notes: list[str]) -> list[int]:
        out = []
        for note in notes:
            if note not in self.texts:
                self.texts.append(note)
            out.append(self.texts.index(note) + 1)
        return out


def _number(value: float | None, digits: int) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _signed(value: float, digits: int) -> str:
    text = f"{value:+.{digits}f}"
    return text.replace("-", "−")  # a minus sign, as the papers print it


def entry_text(entry: Entry, digits: int, marks: list[int]) -> str:
    if not entry.applicable:
        return ""
    text = f"{_number(entry.ours, digits)} / {_number(entry.published, digits)}"
    if entry.diff is not None:
        text += f" ({_signed(entry.diff, digits)})"
    return text + "".join(f" [{m}]" for m in marks)


# -- writers ----------------------------------------------------------------------------------------
def _header_lines(suite: Suite) -> list[str]:
    spec = suite.spec
    src = spec.source
    where = f", {src.where}" if src.where else ""
    lines = [f"Source: {src.paper}, {src.table}{where}" + (f" ({src.url})" if src.url else "")]
    p = spec.protocol
    lines.append(f"Protocol: split {p.split or 'each dataset default'}, part {p.part}, training {p.training}"
                 + (f", {p.aggregate} over the seeded splits" if p.aggregate else ""))
    lines.append("Each cell: ours / published (ours − published). Metrics: "
                 + ", ".join(METRICS[m].caption() for m in suite.metrics) + ".")
    lines += [f"NOTE: {a}" for a in suite.adaptations]
    return lines


def _grid(suite: Suite, entries, notes: Footnotes) -> list[list[str]]:
    rows = []
    for row in suite.rows:
        label = row.label + "".join(f" [{m}]" for m in notes.mark(_row_notes(row)))
        cells = [label]
        for col in suite.columns:
            for metric in suite.metrics:
                entry = entries[(row.label, col.key, metric)]
                cells.append(entry_text(entry, suite.spec.digits, notes.mark(entry.notes)))
        rows.append(cells)
    return rows


ROW_ONLY_PUBLISHED = "not implemented in iqabench: published numbers only"
COLUMN_ONLY_PUBLISHED = "dataset not available in iqabench: published numbers only"


def _row_notes(row) -> list[str]:
    notes = [ROW_ONLY_PUBLISHED] if row.published_only else []
    notes += [row.note] if row.note else []
    return notes + ([f"published numbers: {row.source}"] if row.source else [])


def _column_notes(col) -> list[str]:
    return ([COLUMN_ONLY_PUBLISHED] if col.published_only else []) + ([col.note] if col.note else [])


def _column_titles(suite: Suite, notes: Footnotes) -> list[str]:
    out = []
    for col in suite.columns:
        mark = "".join(f" [{m}]" for m in notes.mark(_column_notes(col)))
        out += [f"{col.label} {METRICS[m].label}{mark}" for m in suite.metrics]
    return out


def to_markdown(suite: Suite, entries) -> str:
    notes = Footnotes()
    titles = ["Method"] + _column_titles(suite, notes)
    grid = _grid(suite, entries, notes)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = [f"# {suite.title}", ""] + [f"{line}  " for line in _header_lines(suite)] + [""]
    lines.append("| " + " | ".join(esc(t) for t in titles) + " |")
    lines.append("|" + "|".join(["---"] + [":-:"] * (len(titles) - 1)) + "|")
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in grid]
    lines.append("")
    lines += [f"[{i}] {text}  " for i, text in enumerate(notes.texts, 1)]
    if suite.spec.notes:
        lines += ["", "Notes: " + " ".join(suite.spec.notes.split())]
    return "\n".join(lines).rstrip() + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "−": "$-$", "—": "---"}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def to_latex(suite: Suite, entries) -> str:
    notes = Footnotes()
    n = len(suite.metrics)
    col_titles = []
    for col in suite.columns:
        mark = "".join(f"$^{{{m}}}$" for m in notes.mark(_column_notes(col)))
        col_titles.append(f"\\multicolumn{{{n}}}{{c}}{{{_tex(col.label)}{mark}}}")
    grid = _grid(suite, entries, notes)
    spec = "l" + "c" * (n * len(suite.columns))
    lines = [f"% {_tex(suite.title)}"] + [f"% {_tex(line)}" for line in _header_lines(suite)]
    lines += [f"\\begin{{tabular}}{{{spec}}}", "\\hline",
              "Method & " + " & ".join(col_titles) + " \\\\",
              " & " + " & ".join(METRICS[m].tex for _ in suite.columns for m in suite.metrics) + " \\\\",
              "\\hline"]
    for row in grid:
        lines.append(" & ".join(_tex_marks(c) for c in row) + " \\\\")
    lines += ["\\hline", "\\end{tabular}", ""]
    lines += [f"% [{i}] {_tex(text)}" for i, text in enumerate(notes.texts, 1)]
    lines += ["\\par\\footnotesize"] + [f"[{i}] {_tex(text)}\\\\" for i, text in enumerate(notes.texts, 1)]
    return "\n".join(lines) + "\n"


def _tex_marks(text: str) -> str:
    """Footnote markers ` [3]` become superscripts; the rest is escaped."""
    import re

    parts = re.split(r" \[(\d+)\]", text)
    out = _tex(parts[0])
    for i in range(1, len(parts), 2):
        out += f"$^{{{parts[i]}}}$" + _tex(parts[i + 1])
    return out


CSV_FIELDS = ("suite", "row", "method", "column", "dataset", "split", "part", "trained_on", "metric", "ours",
              "published", "diff", "runs_found", "runs_expected", "run_dirs", "notes")


def to_csv(suite: Suite, entries) -> str:
    cells = {(c.row.label, c.column.key): c for c in suite.cells()}
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in suite.rows:
        for col in suite.columns:
            cell = cells.get((row.label, col.key))
            units = cell.units if cell else ()
            trained = sorted({f"{u.train_dataset}/{u.train_split}" for u in units if u.train_dataset})
            for metric in suite.metrics:
                e = entries[(row.label, col.key, metric)]
                if not e.applicable:
                    continue
                writer.writerow({
                    "suite": suite.name, "row": row.label, "method": cell.method if cell else "",
                    "column": col.key, "dataset": col.dataset or "",
                    "split": ";".join(u.split for u in units), "part": units[0].part if units else "",
                    "trained_on": ";".join(trained), "metric": metric,
                    "ours": "" if e.ours is None else repr(e.ours),
                    "published": "" if e.published is None else repr(e.published),
                    "diff": "" if e.diff is None else repr(e.diff),
                    "runs_found": e.found, "runs_expected": e.expected, "run_dirs": ";".join(e.run_dirs),
                    "notes": " | ".join(e.notes + _row_notes(row) + _column_notes(col))})
    return buf.getvalue()


def render_suite(suite: Suite, results: Path, out: Path) -> dict[str, Path]:
    """Write `<suite>.md`, `.tex` and `.csv` into `out` from the runs under `results`; returns the files."""
    index = RunIndex(Path(results))
    entries = suite_entries(suite, index)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"md": out / f"{suite.name}.md", "tex": out / f"{suite.name}.tex", "csv": out / f"{suite.name}.csv"}
    markdown = to_markdown(suite, entries)
    if index.problems:
        markdown += "\nRun folders left out (unreadable): " + "; ".join(index.problems) + "\n"
    io.write_text_atomic(files["md"], markdown)
    io.write_text_atomic(files["tex"], to_latex(suite, entries))
    io.write_text_atomic(files["csv"], to_csv(suite, entries))
    return files
