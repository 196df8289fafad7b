"""A suite in its paper's layout: per cell "ours / published (ours - published) verdict"
(iqabench.suite.entries fills the numbers, iqabench.suite.verdict judges them). Rows and columns are
the suite file's, in its order; a cell without a number shows "—" and a footnote saying why.
Written as Markdown, LaTeX, HTML and CSV, each with the one-line count of the verdicts."""
from __future__ import annotations

import csv
import dataclasses
import html
import io as _io
from pathlib import Path

from iqabench import io
from iqabench.metrics import METRICS
from iqabench.suite.definition import Suite
from iqabench.suite.entries import Entry, suite_entries
from iqabench.suite.index import RunIndex
from iqabench.suite.verdict import LEGEND, summary_line

DASH = "—"


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
    if entry.verdict is not None:
        text += f" {entry.verdict.text(digits)}"
    return text + "".join(f" [{m}]" for m in marks)


# -- writers ----------------------------------------------------------------------------------------
def _header_lines(suite: Suite, entries) -> list[str]:
    spec = suite.spec
    src = spec.source
    where = f", {src.where}" if src.where else ""
    lines = [f"Source: {src.paper}, {src.table}{where}" + (f" ({src.url})" if src.url else "")]
    p = spec.protocol
    lines.append(f"Protocol: split {p.split or 'each dataset default'}, part {p.part}, training {p.training}"
                 + (f", {p.aggregate} over the seeded splits" if p.aggregate else ""))
    lines.append("Each cell: ours / published (ours − published) verdict. Metrics: "
                 + ", ".join(METRICS[m].caption() for m in suite.metrics) + ".")
    if any(e.published is not None and e.computed for e in entries.values()):
        lines.append(LEGEND)
    lines.append(summary_line(entries.values()))
    lines += [f"NOTE: {a}" for a in suite.adaptations]
    return lines


def _grid(suite: Suite, entries, notes: Footnotes) -> list[tuple[str, list[tuple[str, Entry]]]]:
    """(row label with its marks, [(cell text, entry), ...]) per row, in the file's order."""
    rows = []
    for row in suite.rows:
        label = row.label + "".join(f" [{m}]" for m in notes.mark(_row_notes(row)))
        cells = []
        for col in suite.columns:
            for metric in suite.metrics:
                entry = entries[(row.label, col.key, metric)]
                cells.append((entry_text(entry, suite.spec.digits, notes.mark(entry.notes)), entry))
        rows.append((label, cells))
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
    lines = [f"# {suite.title}", ""] + [f"{line}  " for line in _header_lines(suite, entries)] + [""]
    lines.append("| " + " | ".join(esc(t) for t in titles) + " |")
    lines.append("|" + "|".join(["---"] + [":-:"] * (len(titles) - 1)) + "|")
    lines += ["| " + " | ".join(esc(c) for c in [label] + [text for text, _ in cells]) + " |"
              for label, cells in grid]
    lines.append("")
    lines += [f"[{i}] {text}  " for i, text in enumerate(notes.texts, 1)]
    if suite.spec.notes:
        lines += ["", "Notes: " + " ".join(suite.spec.notes.split())]
    return "\n".join(lines).rstrip() + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "−": "$-$", "—": "---",
        "×": r"$\times$"}


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
    lines = [f"% {_tex(suite.title)}"] + [f"% {_tex(line)}" for line in _header_lines(suite, entries)]
    lines += [f"\\begin{{tabular}}{{{spec}}}", "\\hline",
              "Method & " + " & ".join(col_titles) + " \\\\",
              " & " + " & ".join(METRICS[m].tex for _ in suite.columns for m in suite.metrics) + " \\\\",
              "\\hline"]
    for label, cells in grid:
        lines.append(" & ".join(_tex_marks(c) for c in [label] + [text for text, _ in cells]) + " \\\\")
    lines += ["\\hline", "\\end{tabular}", "", f"% {_tex(summary_line(entries.values()))}"]
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
              "published", "diff", "low", "high", "interval", "verdict", "gap", "gap_widths", "runs_found", "runs_expected", "run_dirs", "notes")


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
                    **_verdict_fields(e),
                    "runs_found": e.found, "runs_expected": e.expected, "run_dirs": ";".join(e.run_dirs),
                    "notes": " | ".join(e.notes + _row_notes(row) + _column_notes(col))})
    return buf.getvalue()


def _verdict_fields(e: Entry) -> dict[str, str]:
    v = e.verdict
    if v is None:
        return dict.fromkeys(("low", "high", "interval", "verdict", "gap", "gap_widths"), "")
    return {"low": repr(v.low), "high": repr(v.high), "interval": v.basis,
            "verdict": "reproduced" if v.reproduced else "not reproduced", "gap": repr(v.gap),
            "gap_widths": "" if v.widths is None else repr(v.widths)}


def to_html(suite: Suite, entries) -> str:
    """One self-contained page: the table, a cell's class saying its verdict, the footnotes."""
    e = lambda text: html.escape(str(text), quote=True)  # noqa: E731
    notes = Footnotes()
    titles = ["Method"] + _column_titles(suite, notes)
    grid = _grid(suite, entries, notes)
    head = "".join(f"<th>{e(t)}</th>" for t in titles)
    body = ""
    for label, cells in grid:
        tds = "".join(f'<td class="{_verdict_class(entry)}">{e(text)}</td>' for text, entry in cells)
        body += f"<tr><th>{e(label)}</th>{tds}</tr>"
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{e(suite.title)}</title><style>{_CSS}</style></head><body>", f"<h1>{e(suite.title)}</h1>"]
    parts += [f"<p>{e(line)}</p>" for line in _header_lines(suite, entries)]
    parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    parts.append("<ol>" + "".join(f"<li>{e(text)}</li>" for text in notes.texts) + "</ol>")
    if suite.spec.notes:
        parts.append(f"<p>Notes: {e(' '.join(suite.spec.notes.split()))}</p>")
    return "".join(parts) + "</body></html>\n"


_CSS = ("body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em}"
        "table{border-collapse:collapse}th,td{border-bottom:1px solid #ddd;padding:3px 8px}"
        "td{text-align:center}th{text-align:left;background:#f3f3f3}"
        "td.reproduced{background:#e6f4e6}td.not-reproduced{background:#fbe9e7}")


def _verdict_class(entry: Entry) -> str:
    v = entry.verdict
    return "" if v is None else "reproduced" if v.reproduced else "not-reproduced"


@dataclasses.dataclass(frozen=True)
class Rendered:
    files: dict[str, Path]  # "md", "tex", "html", "csv"
    entries: dict[tuple[str, str, str], Entry]

    @property
    def summary(self) -> str:
        return summary_line(self.entries.values())

    @property
    def missing(self) -> int:
        """Numbers the harness computes that no usable run fills yet (0: the table is complete)."""
        return sum(e.computed and e.found < e.expected for e in self.entries.values())


def render(suite: Suite, results: Path, out: Path) -> Rendered:
    """Write `<suite>.md`, `.tex`, `.html` and `.csv` into `out` from the runs under `results`."""
    index = RunIndex(Path(results))
    entries = suite_entries(suite, index)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {k: out / f"{suite.name}.{k}" for k in ("md", "tex", "html", "csv")}
    markdown = to_markdown(suite, entries)
    if index.problems:
        markdown += "\nRun folders left out (unreadable): " + "; ".join(index.problems) + "\n"
    io.write_text_atomic(files["md"], markdown)
    io.write_text_atomic(files["tex"], to_latex(suite, entries))
    io.write_text_atomic(files["html"], to_html(suite, entries))
    io.write_text_atomic(files["csv"], to_csv(suite, entries))
    return Rendered(files, entries)


def render_suite(suite: Suite, results: Path, out: Path) -> dict[str, Path]:
    """The files `render` writes."""
    return render(suite, results, out).files
