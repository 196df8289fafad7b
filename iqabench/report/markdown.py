"""table.md (the main table, its legend and notes), runs.md and breakdown.md."""
from __future__ import annotations

from iqabench.metrics import label as metric_label
from iqabench.report.breakdown import BreakdownRow
from iqabench.report.grid import NULL, OWN_MARK, Grid, fmt, legend
from iqabench.report.select import Column, RunEntry


def escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def cell_text(grid: Grid, ident, col: Column, metric: str) -> str:
    g = grid.get(ident, col, metric)
    if g.value is None:
        return NULL
    text = g.text + g.suffix(grid.options.decimals)
    if g.bold:
        text = f"**{text}**"
    return text + ("†" if g.tied else "") + ("‡" if g.falling else "") + (OWN_MARK if g.own_labels else "")


def column_legend(grid: Grid) -> str:
    """Which split(s) and part each column holds, its n and what its labels are."""
    return "Columns: " + "; ".join(grid.column_sentences()) + "."


def table_md(grid: Grid, notes: list[str]) -> str:
    o = grid.options
    if not grid.rows or not grid.columns:
        return ("# iqabench results\n\nNo full complete run to tabulate: see runs.md for what was found.\n"
                + ("\n## Notes\n\n" + "\n".join(f"- {escape(n)}" for n in notes) + "\n" if notes else ""))
    out = ["# iqabench results", "",
           " ".join(legend(grid)) + f" {NULL}: no full complete run (see runs.md). "
           "Correlations are sign-aware: predictions and labels are oriented so higher means better, "
           "never passed through abs(). " + column_legend(grid), ""]
    head = ["Method"] + [f"{grid.titles[c]} {o.header(m)}" for c in grid.columns for m in grid.metrics]
    out += [_row([escape(h) for h in head]), _row(["---"] + ["---:"] * (len(head) - 1))]
    for ident in grid.rows:
        out.append(_row([escape(grid.row_label(ident))]
                        + [cell_text(grid, ident, c, m) for c in grid.columns for m in grid.metrics]))
    if notes:
        out += ["", "## Notes", ""] + [f"- {escape(n)}" for n in notes]
    return "\n".join(out) + "\n"


def runs_md(entries: list[RunEntry], labels: dict, decimals: int) -> str:
    out = ["# Runs", "",
           "Every run folder found. Only runs marked `used` are in the main table; a median cell uses "
           "one run per split. n counts the images of the part; failed images are left out of the metrics.", ""]
    head = ["Method", "Dataset", "Split", "Part", "n", "Scored", "Failed", "Status", metric_label("srcc"), metric_label("plcc"), "Role", "Run folder"]
    out += [_row(head), _row(["---"] * 4 + ["---:"] * 3 + ["---"] + ["---:"] * 2 + ["---"] * 2)]
    for e in entries:
        m = e.run.metrics or {}
        out.append(_row([escape(labels[e.identity]), escape(e.run.dataset), escape(e.run.split), escape(e.run.part),
                         _count(e.run.n), _count(m.get("n_scored")), _count(m.get("n_failed")), e.run.status,
                         fmt(e.run.metric("srcc"), decimals), fmt(e.run.metric("plcc"), decimals),
                         escape(e.remark), escape(e.run.rel)]))
    return "\n".join(out) + "\n"


def _count(value) -> str:
    return "?" if value is None else str(value)


def breakdown_md(rows: list[BreakdownRow], labels_in_order: list[str], decimals: int) -> str:
    """Per dataset and grouping (distortion type, level): groups x methods, SRCC."""
    out = ["# SRCC per distortion type and level", "",
           "SRCC on the images of each group (oriented, sign-aware); a median over splits for seeded "
           f"protocols, whose n sums the group's images over the splits. {NULL}: fewer than 3 images or "
           "constant values in the group.", ""]
    keys = sorted({(r.column_title, r.kind) for r in rows})
    for title, kind in keys:
        sub = [r for r in rows if r.column_title == title and r.kind == kind]
        methods = [m for m in labels_in_order if any(r.label == m for r in sub)]
        groups = sorted({(r.order, r.group) for r in sub})
        out += [f"## {escape(title)}: per {kind}", ""]
        out += [_row([kind, "n"] + [escape(m) for m in methods]), _row(["---", "---:"] + ["---:"] * len(methods))]
        for _, group in groups:
            by_method = {r.label: r for r in sub if r.group == group}
            n = max((r.n for r in by_method.values()), default=0)
            out.append(_row([escape(group), str(n)]
                            + [fmt(by_method[m].srcc, decimals) if m in by_method else NULL for m in methods]))
        out.append("")
    return "\n".join(out)
