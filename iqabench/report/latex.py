r"""table.tex (the main table) and runs.tex (every run behind it), for \input into a paper.

Both need \usepackage{booktabs,tabularx}. The main table is set in \footnotesize with the method
column as a tabularx X column, so long method names wrap (at spaces and after / = , _ -) instead of
running into the numbers. Whether it fits one column of a two-column paper is decided from an
estimate of the numeric columns' widths: `table` when it fits \columnwidth, else `table*`
(\textwidth); only a table wider than \textwidth is scaled down (\resizebox, with a comment and a
warning), which keeps every number but shrinks the type.
"""
from __future__ import annotations

import re

from iqabench.metrics import label as metric_label
from iqabench.report.grid import Grid, fmt, legend
from iqabench.report.select import RunEntry

# Widths in pt of a two-column article (10pt): \columnwidth and \textwidth.
COLUMN_WIDTH, TEXT_WIDTH = 229.5, 469.0
TABCOLSEP = 3.0
MIN_METHOD_WIDTH = 60.0
NULL_TEX = "--"

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


def breakable(text: str) -> str:
    """Escaped text that may break after / = , _ and ( as well as at spaces and hyphens."""
    out = []
    for ch in str(text):
        out.append(_SPECIAL.get(ch, ch))
        if ch in "/=,_(.":
            out.append(r"\allowbreak{}")
    return "".join(out)


# Widths in pt of Computer Modern at \footnotesize (8pt), measured with pdflatex for the characters
# tables use most; others fall back to a wide default.
_WIDTHS = dict(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", (6.37, 6.02, 6.14, 6.49, 5.78, 5.55, 6.67, 6.37, 3.06, 4.37, 6.6,
                                                    5.31, 7.78, 6.37, 6.6, 5.78, 6.6, 6.25, 4.72, 6.14, 6.37, 6.37,
                                                    8.73, 6.37, 6.37, 5.19)))
_WIDTHS.update(zip("abcdefghijklmnopqrstuvwxyz", (4.25, 4.72, 3.78, 4.72, 3.78, 2.6, 4.25, 4.72, 2.36, 2.6, 4.49,
                                                    2.36, 7.08, 4.72, 4.25, 4.72, 4.49, 3.31, 3.35, 3.31, 4.72, 4.49,
                                                    6.14, 4.49, 4.49, 3.78)))
_WIDTHS.update({d: 4.25 for d in "0123456789"})
_WIDTHS.update({".": 2.36, ",": 2.36, ":": 2.36, ";": 2.36, "(": 3.31, ")": 3.31, "[": 2.36, "]": 2.36, " ": 2.83,
                "/": 4.25, "=": 6.61, "_": 4.25, "+": 6.61})
_BOLD = 1.15  # bold extended is about this much wider


def text_width(text: str, size: float = 1.0, bold: bool = False) -> float:
    """An estimate (5 % above the measured widths) of `text`'s width in pt at \\footnotesize;
    `size` scales it (\\scriptsize: 0.875). A leading "-" is a number's minus, set as $-$."""
    width = 0.0
    for i, ch in enumerate(text):
        if ch == "-":
            width += 6.61 if i == 0 else 2.83
        else:
            width += _WIDTHS.get(ch, 7.0)
    return width * (_BOLD if bold else 1.0) * 1.05 * size


def _chunks(text: str) -> list[str]:
    return [c for c in re.split(r"(?<=[/=,_(.\s-])", text) if c]


def _number(value: float | None, decimals: int) -> str:
    text = fmt(value, decimals)
    if text == "—":
        return NULL_TEX
    return "$-$" + text[1:] if text.startswith("-") else text


def _cell(grid: Grid, ident, col, metric) -> tuple[str, float]:
    """The cell's LaTeX and its estimated width."""
    g = grid.get(ident, col, metric)
    d = grid.options.decimals
    if g.value is None:
        return NULL_TEX, text_width("--")
    text = _number(g.value, d)
    width = text_width(fmt(g.value, d), bold=g.bold)
    if g.bold:
        text = rf"\textbf{{{text}}}"
    if g.spread is not None:
        text += rf"{{\scriptsize$\pm${fmt(g.spread, d)}}}"
        width += 7.0 * 0.875 + text_width(fmt(g.spread, d), 0.875)
    elif g.ci is not None:
        text += rf"\,{{\scriptsize[{_number(g.ci[0], d)}, {_number(g.ci[1], d)}]}}"
        width += 1.7 + text_width(f"[{fmt(g.ci[0], d)}, {fmt(g.ci[1], d)}]", 0.875)
    marks = (r"\dagger" if g.tied else "") + (r"\ddagger" if g.falling else "") + (r"\S" if g.own_labels else "")
    if marks:
        text += f"$^{{{marks}}}$"
        width += 4.0 * len(marks.split("\\")[1:])
    return text, width


def table_tex(grid: Grid) -> tuple[str, list[str]]:
    """The main table and warnings (a table too wide even for \\textwidth)."""
    o = grid.options
    if not grid.rows or not grid.columns:
        return "% iqabench: no full complete run to tabulate (see runs.tex)\n", []
    k = len(grid.metrics)
    body, widths = [], [text_width(o.header(m)) for _ in grid.columns
                        for m in grid.metrics]
    for ident in grid.rows:
        cells = []
        for i, (col, metric) in enumerate((c, m) for c in grid.columns for m in grid.metrics):
            text, width = _cell(grid, ident, col, metric)
            cells.append(text)
            widths[i] = max(widths[i], width)
        mark = r"$^{\mathrm{FR}}$" if ident in grid.full_reference else ""
        body.append(breakable(grid.labels[ident]) + mark + " & " + " & ".join(cells) + r" \\")
    # a dataset title wider than its k columns widens them
    for j, col in enumerate(grid.columns):
        span = sum(widths[j * k:(j + 1) * k]) + 2 * TABCOLSEP * (k - 1)
        need = text_width(grid.titles[col])
        if need > span:
            for i in range(j * k, (j + 1) * k):
                widths[i] += (need - span) / k
    numeric = sum(widths) + 2 * TABCOLSEP * len(widths)
    # the method column wraps long labels, but needs its longest unbreakable piece, and room for
    # MIN_METHOD_WIDTH of text (or less when every label is shorter)
    longest_word = max((text_width(c) for i in grid.rows for c in _chunks(grid.labels[i])), default=0.0)
    longest = max((text_width(grid.labels[i]) for i in grid.rows), default=0.0)
    method = max(min(MIN_METHOD_WIDTH, longest), longest_word, text_width("Method"))
    natural = numeric + method  # @{} on both sides: the outer separators are gone, the inner ones counted
    warnings = []
    if natural <= COLUMN_WIDTH:
        env, width, scale = "table", r"\columnwidth", False
    elif natural <= TEXT_WIDTH:
        env, width, scale = "table*", r"\textwidth", False
    else:
        env, width, scale = "table*", r"\textwidth", True
        warnings.append(f"table.tex: {len(widths)} numeric columns do not fit \\textwidth at \\footnotesize; "
                        "the table is scaled down (choose fewer metrics or datasets for a larger type)")

    caption = list(legend(grid, tex=True))
    heads = [o.header(m, tex=True) for m in grid.metrics]
    what = heads[0] if len(heads) == 1 else ", ".join(heads[:-1]) + " and " + heads[-1]
    first = o.caption or f"{what} per method and dataset ({', '.join(sorted({c.part for c in grid.columns}))} part)."
    columns = " ".join(tex_escape(sentence) + "." for sentence in grid.column_sentences())
    head1 = "Method & " + " & ".join(rf"\multicolumn{{{k}}}{{c}}{{{tex_escape(grid.titles[c])}}}" for c in grid.columns)
    rules = " ".join(rf"\cmidrule(lr){{{2 + j * k}-{1 + (j + 1) * k}}}" for j in range(len(grid.columns)))
    head2 = " & " + " & ".join(o.header(m, tex=True) for _ in grid.columns for m in grid.metrics)
    spec_numbers = f"*{{{len(widths)}}}{{c}}"
    out = [r"% iqabench main table; needs \usepackage{booktabs,tabularx}",
           rf"\begin{{{env}}}[t]", r"\centering", r"\footnotesize", rf"\setlength{{\tabcolsep}}{{{TABCOLSEP:g}pt}}",
           r"\caption{" + tex_escape(first) + " " + columns + " " + " ".join(caption) + "}", rf"\label{{{o.label}}}"]
    if scale:
        out += [r"% scaled: the table is wider than \textwidth at this type size",
                rf"\resizebox{{{width}}}{{!}}{{%", rf"\begin{{tabular}}{{@{{}}l{spec_numbers}@{{}}}}"]
    else:
        out.append(rf"\begin{{tabularx}}{{{width}}}{{@{{}}>{{\raggedright\arraybackslash}}X{spec_numbers}@{{}}}}")
    out += [r"\toprule", head1 + r" \\", rules, head2 + r" \\", r"\midrule"] + body + [r"\bottomrule"]
    out += [r"\end{tabular}}"] if scale else [r"\end{tabularx}"]
    out += [rf"\end{{{env}}}", ""]
    return "\n".join(out), warnings


RUNS_ROWS_HEIGHT = 440.0  # pt of rows per runs table: \textheight is 550pt, caption and header take the rest
RUNS_X_WIDTH = 80.0  # pt of each X column (method, role) in \textwidth, from the widths of the others


def runs_tex(entries: list[RunEntry], labels: dict, decimals: int, tex_label: str = "tab:iqabench-runs") -> str:
    r"""Every run, in full-width tables (\scriptsize) of at most a page each: a paper's appendix.
    A float cannot break across pages (and longtable refuses two-column mode), so long lists are cut
    into several tables, "(continued)"."""
    rows, heights = [], []
    for e in entries:
        m = e.run.metrics or {}
        label, remark = labels[e.identity], e.remark
        rows.append(" & ".join([
            breakable(label), tex_escape(e.run.dataset), breakable(e.run.split), tex_escape(e.run.part),
            str(e.run.n if e.run.n is not None else "?"), str(m.get("n_failed", "?")),
            _number(e.run.metric("srcc"), decimals), breakable(remark)]) + r" \\")
        lines = max(1, *(-(-text_width(t, 0.85) // RUNS_X_WIDTH) for t in (label, remark)))
        heights.append(8.0 * lines + 1.0)
    chunks, current, used = [], [], 0.0
    for row, height in zip(rows, heights):
        if current and used + height > RUNS_ROWS_HEIGHT:
            chunks.append(current)
            current, used = [], 0.0
        current.append(row)
        used += height
    chunks.append(current)
    out = []
    for k, chunk in enumerate(chunks):
        caption = (r"Runs behind the results. Only runs marked used are in the main table (a median uses one "
                   r"run per split); n counts the images of the part, failed images are left out of the metrics."
                   if k == 0 else r"Runs behind the results (continued).")
        out += [r"% iqabench runs behind the main table; needs \usepackage{booktabs,tabularx}",
                r"\begin{table*}[p]", r"\centering", r"\scriptsize", r"\setlength{\tabcolsep}{3pt}",
                rf"\caption{{{caption}}}", rf"\label{{{tex_label}}}" if k == 0 else "",
                r"\begin{tabularx}{\textwidth}{@{}>{\raggedright\arraybackslash}X l l l r r r "
                r">{\raggedright\arraybackslash}X@{}}",
                r"\toprule", rf"Method & Dataset & Split & Part & n & Failed & {metric_label('srcc', tex=True)} & Role \\",
                r"\midrule"]
        out += chunk + [r"\bottomrule", r"\end{tabularx}", r"\end{table*}", ""]
    return "\n".join(line for line in out if line != "") + "\n"
