"""The main table as data: rows (identities) x columns (dataset, protocol, part) x metrics, each
cell's rounded text and its marks. Markdown, LaTeX, HTML and CSV all render this one grid, so the
numbers a reader sees are the same in every format.

Marks: bold = best of its column (ties after rounding share it; full-reference methods have their
own best); dagger = not significantly different from the best (compare.py); double dagger = PLCC
from a decreasing logistic fit (the method ranks images backwards; never ranked). A full-reference
row's label carries FR_MARK.
"""
from __future__ import annotations

import dataclasses

from iqabench.metrics import METRICS, format_value
from iqabench.report.columns import ColumnFacts
from iqabench.report.compare import Marks
from iqabench.report.identity import Identity
from iqabench.report.options import ReportOptions
from iqabench.report.select import Cell, Column, Selection

NULL = "—"
OWN_MARK, OWN_TEX = "§", r"$^{\S}$"  # a cell whose method computed the labels
FR_MARK = " [FR]"  # after a full-reference method's label (LaTeX: a superscript FR)


@dataclasses.dataclass
class GridCell:
    value: float | None
    text: str  # the rounded value, "-" for negatives, NULL when undefined or absent
    spread: float | None = None  # half the interquartile range, for a median over splits
    ci: tuple[float, float] | None = None  # the bootstrap interval of a single run
    bold: bool = False
    tied: bool = False
    falling: bool = False
    own_labels: bool = False  # the method computed the labels: shown, never ranked
    cell: Cell | None = None

    def suffix(self, decimals: int, pm: str = " ± ") -> str:
        """What follows the number in text formats: ± half-IQR, or [lo, hi]."""
        if self.spread is not None:
            return f"{pm}{fmt(self.spread, decimals)}"
        if self.ci is not None:
            return f" [{fmt(self.ci[0], decimals)}, {fmt(self.ci[1], decimals)}]"
        return ""


@dataclasses.dataclass
class Grid:
    rows: list[Identity]
    labels: dict[Identity, str]
    columns: list[Column]
    titles: dict[Column, str]
    metrics: tuple[str, ...]
    cells: dict[tuple[Identity, Column, str], GridCell]
    options: ReportOptions
    marks: Marks
    facts: dict[Column, ColumnFacts] = dataclasses.field(default_factory=dict)
    full_reference: set[Identity] = dataclasses.field(default_factory=set)

    def row_label(self, ident: Identity) -> str:
        """The row's label as the table shows it: marked when the method is full-reference."""
        return self.labels[ident] + (FR_MARK if ident in self.full_reference else "")

    def column_sentences(self) -> list[str]:
        """Per column: exactly which split(s), part, n and what the labels are (captions and legends)."""
        return [self.facts[c].sentence(self.titles[c], c.part) for c in self.columns if c in self.facts]

    def get(self, ident: Identity, column: Column, metric: str) -> GridCell:
        return self.cells[(ident, column, metric)]

    def used(self, attribute: str) -> bool:
        return any(getattr(c, attribute) for c in self.cells.values())

    @property
    def has_spread(self) -> bool:
        return any(c.spread is not None for c in self.cells.values())

    def split_counts(self) -> list[int]:
        return sorted({c.cell.n_splits for c in self.cells.values() if c.cell is not None and c.cell.n_splits > 1})


def fmt(value: float | None, decimals: int) -> str:
    return format_value(value, decimals, NULL)


def column_titles(columns: list[Column], options: ReportOptions,
                  facts: dict[Column, ColumnFacts] | None = None) -> dict[Column, str]:
    """The dataset's display name alone, unless it has several columns: then what differs, the
    split(s) named exactly (`facts`), never a `seed*` pattern."""
    facts = facts or {}
    titles = {}
    for col in columns:
        name = options.dataset_name(col.dataset)
        same = [c for c in columns if c.dataset == col.dataset]
        if len(same) == 1:
            titles[col] = name
            continue
        extra = []
        if len({c.protocol for c in same}) > 1:
            extra.append(facts[col].splits if col in facts else col.protocol)
        if len({c.part for c in same}) > 1:
            extra.append(col.part)
        titles[col] = f"{name} ({', '.join(extra)})"
    return titles


def build_grid(selection: Selection, marks: Marks, options: ReportOptions) -> Grid:
    cells = {}
    for ident in selection.rows:
        for col in selection.columns:
            cell = selection.cell(ident, col)
            for metric in options.metrics:
                value = cell.values[metric] if cell else None
                g = GridCell(value, fmt(value, options.decimals), cell=cell)
                if cell is not None and value is not None:
                    key = (ident, col, metric)
                    g.bold, g.tied = key in marks.best, key in marks.tied
                    g.falling = metric == "plcc" and cell.decreasing_fit
                    g.own_labels = cell.own_labels
                    if cell.n_splits > 1 and options.show_spread and metric in cell.spread:
                        g.spread = cell.spread[metric]["iqr"] / 2
                    elif cell.n_splits == 1 and options.show_ci:
                        ci = cell.ci95(metric)
                        g.ci = (float(ci[0]), float(ci[1])) if ci else None
                cells[(ident, col, metric)] = g
    return Grid(selection.rows, selection.labels, selection.columns,
                column_titles(selection.columns, options, selection.facts), options.metrics, cells, options, marks,
                selection.facts, selection.full_reference)


def legend(grid: Grid, tex: bool = False) -> list[str]:
    """The sentences that explain the marks and numbers actually present (short caption)."""
    o = grid.options
    dag, ddag = (r"$^\dagger$", r"$^\ddagger$") if tex else ("†", "‡")
    out = []
    out += [f"{METRICS[m].label}: {METRICS[m].meaning}." for m in grid.metrics if METRICS[m].fitted]
    out.append("Best per column in bold." if not tex else r"Best per column in \textbf{bold}.")
    if grid.full_reference:
        fr = r"$^{\mathrm{FR}}$" if tex else FR_MARK.strip()
        out.append(f"{fr} full-reference method (it compares each image with its reference): ranked among "
                   "full-reference methods only, never against no-reference ones.")
    if grid.used("tied"):
        test = (f"paired bootstrap, {o.bootstrap_resamples} resamples, seed {o.bootstrap_seed}"
                if o.significance_test == "bootstrap" else "Williams' t test")
        alpha = f"{o.alpha:g}"
        out.append(f"{dag} not significantly different from the best ({test}, "
                   + (f"$p \\geq {alpha}$)." if tex else f"p ≥ {alpha})."))
    if grid.has_spread:
        counts = grid.split_counts()
        splits = "/".join(map(str, counts))
        out.append(f"Medians over {splits} random splits " + (r"$\pm$" if tex else "±") + " half the interquartile range.")
    if any(c.ci for c in grid.cells.values()):
        out.append("Brackets: bootstrap 95% interval." if not tex else r"Brackets: bootstrap 95\% interval.")
    if grid.used("own_labels"):
        out.append(f"{OWN_MARK if not tex else OWN_TEX} the method computed the dataset's labels: it scores their "
                   "own definition and is not ranked.")
    if grid.used("falling"):
        out.append(f"{ddag} decreasing logistic fit: the method ranks images backwards.")
    return out
