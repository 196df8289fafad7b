"""The comparison table (methods x datasets, SRCC and PLCC) as Markdown, LaTeX and CSV.

Markdown and LaTeX round to 3 decimals and mark the best value per column in bold and the second
in italics (Markdown) or underlined (LaTeX); ranks use the rounded numbers the reader sees, so
ties share a mark. The CSV keeps full precision, counts and bootstrap intervals.
"""
from __future__ import annotations

import csv
import io
import math

from iqabench.report.collect import CI_METRICS, METRICS, Row

SHOWN = ("srcc", "plcc")
HEADS = {"srcc": "SRCC", "plcc": "PLCC"}
NULL_MD = "—"
NULL_TEX = "--"

CAPTION = ("SRCC and PLCC per method and dataset. PLCC is computed after the VQEG four-parameter "
           "logistic fit of predictions to labels (raw PLCC is in table.csv). All numbers are sign-aware: "
           "predictions and labels are oriented so that higher means better quality, and no absolute "
           "value is taken, so a negative SRCC means the method ranks images backwards. A PLCC marked "
           "with a dagger comes from a decreasing logistic fit (the method ranks images backwards); it is "
           "negative and not ranked. "
           "A median column is the median over random splits (PromptIQA protocol). "
           "Failed images are not scored and are left out of the correlations; their count is in the runs table.")

Column = tuple[str, str, str]


def columns(rows: list[Row]) -> list[Column]:
    return sorted({r.column for r in rows})


def column_title(col: Column, all_columns: list[Column]) -> str:
    """The dataset name alone when the dataset has one (split, part) in the table."""
    dataset, split, part = col
    protocol = split[:-len("-seed*")] + " median" if split.endswith("-seed*") else split
    if sum(1 for c in all_columns if c[0] == dataset) == 1:
        return dataset if not split.endswith("-seed*") else f"{dataset} ({protocol})"
    return f"{dataset} ({protocol}, {part})"


def grid(rows: list[Row]) -> tuple[list[str], list[Column], dict[tuple[str, Column], Row]]:
    methods = sorted({r.method_label for r in rows})
    return methods, columns(rows), {(r.method_label, r.column): r for r in rows}


def ranks(rows: list[Row]) -> dict[tuple[str, Column, str], int]:
    """1 for the best, 2 for the second value (rounded to 3 decimals) of each column and metric.

    Higher is better for every correlation; a column with fewer than two defined values has no marks.
    """
    out: dict[tuple[str, Column, str], int] = {}
    for col in columns(rows):
        for metric in SHOWN:
            cells = {r.method_label: round(r.values[metric], 3) for r in rows
                     if r.column == col and r.values[metric] is not None and not _daggered(r, metric)}
            if len(cells) < 2:
                continue
            distinct = sorted(set(cells.values()), reverse=True)
            for label, value in cells.items():
                if value == distinct[0]:
                    out[(label, col, metric)] = 1
                elif len(distinct) > 1 and value == distinct[1]:
                    out[(label, col, metric)] = 2
    return out


def _daggered(row: Row | None, metric: str) -> bool:
    return row is not None and metric == "plcc" and row.values["plcc"] is not None and row.decreasing_fit


def fmt(value: float | None, null: str) -> str:
    return null if value is None else f"{value:.3f}"


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


# ---------------------------------------------------------------- Markdown

def markdown(rows: list[Row]) -> str:
    methods, cols, cell = grid(rows)
    marks = ranks(rows)
    out = ["# iqabench results", "", CAPTION.replace("with a dagger", "with a dagger (†)") + f" Best per column in **bold**, second in _italics_; "
           f"{NULL_MD} means undefined (see the runs table).", ""]
    head = ["Method"] + [f"{_md_escape(column_title(c, cols))} {HEADS[m]}" for c in cols for m in SHOWN]
    out += [_md_row(head), _md_row(["---"] + ["---:"] * (len(head) - 1))]
    for label in methods:
        line = [_md_escape(label)]
        for col in cols:
            row = cell.get((label, col))
            for metric in SHOWN:
                text = fmt(row.values[metric] if row else None, NULL_MD)
                rank = marks.get((label, col, metric))
                text = f"**{text}**" if rank == 1 else f"_{text}_" if rank == 2 else text
                line.append(text + "†" if _daggered(row, metric) else text)
        out.append(_md_row(line))
    out += ["", "## Runs", "",
            ("n counts every image of the part (summed over splits for a median); failed images are excluded "
             "from the metrics. CI is the bootstrap 95 % interval of SRCC."), ""]
    head = ["Method", "Dataset", "Split", "Part", "Splits", "n", "Failed", "Status", "SRCC 95 % CI", "Notes"]
    out += [_md_row(head), _md_row(["---"] * 4 + ["---:"] * 3 + ["---"] * 3)]
    for row in rows:
        ci = row.ci95.get("srcc")
        notes = list(row.notes)
        if row.undefined_reason:
            notes.insert(0, f"undefined: {row.undefined_reason}")
        out.append(_md_row([_md_escape(row.method_label), _md_escape(row.dataset), _md_escape(row.split),
                            row.part, str(row.n_splits), _count(row.n), _count(row.n_failed), row.status,
                            f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else NULL_MD,
                            _md_escape("; ".join(notes))]))
    return "\n".join(out) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


# ---------------------------------------------------------------- LaTeX

_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def _tex_number(value: float | None) -> str:
    if value is None:
        return NULL_TEX
    text = fmt(value, NULL_TEX)
    return "$-$" + text[1:] if text.startswith("-") else text  # a real minus sign, not a hyphen


def latex(rows: list[Row]) -> str:
    """Two booktabs tables: the comparison and the runs behind it (needs \\usepackage{booktabs})."""
    methods, cols, cell = grid(rows)
    marks = ranks(rows)
    spec = "l" + " ".join("c" * len(SHOWN) for _ in cols)
    out = [r"% needs \usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
           r"\caption{" + tex_escape(CAPTION).replace("with a dagger", r"with a dagger ($^\dagger$)") + r" Best per column in \textbf{bold}, second \underline{underlined}; "
           + NULL_TEX + r" means undefined.}", r"\label{tab:iqabench}", r"\begin{tabular}{" + spec + "}",
           r"\toprule"]
    out.append("Method & " + " & ".join(rf"\multicolumn{{{len(SHOWN)}}}{{c}}{{{tex_escape(column_title(c, cols))}}}"
                                        for c in cols) + r" \\")
    out.append(" ".join(rf"\cmidrule(lr){{{2 + i * len(SHOWN)}-{1 + (i + 1) * len(SHOWN)}}}"
                        for i in range(len(cols))))
    out.append(" & " + " & ".join(HEADS[m] for _ in cols for m in SHOWN) + r" \\")
    out.append(r"\midrule")
    for label in methods:
        line = [tex_escape(label)]
        for col in cols:
            row = cell.get((label, col))
            for metric in SHOWN:
                text = _tex_number(row.values[metric] if row else None)
                rank = marks.get((label, col, metric))
                text = rf"\textbf{{{text}}}" if rank == 1 else rf"\underline{{{text}}}" if rank == 2 else text
                line.append(text + r"$^\dagger$" if _daggered(row, metric) else text)
        out.append(" & ".join(line) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    out += [r"\begin{table}[t]", r"\centering",
            (r"\caption{Runs behind the comparison: n counts every image of the part (summed over splits for a "
             r"median), failed images are excluded from the metrics.}"), r"\label{tab:iqabench-runs}",
            r"\begin{tabular}{lllrrrl}", r"\toprule",
            r"Method & Dataset & Split & Splits & n & Failed & Status \\", r"\midrule"]
    for row in rows:
        out.append(" & ".join([tex_escape(row.method_label), tex_escape(row.dataset),
                               tex_escape(f"{row.split} ({row.part})"), str(row.n_splits), _count(row.n),
                               _count(row.n_failed), row.status]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- CSV

CSV_FIELDS = (["method", "method_label", "dataset", "split", "part", "n_splits", "seeds", "n", "n_failed",
               "n_scored", "status"] + list(METRICS)
              + [f"{m}_ci95_{end}" for m in CI_METRICS for end in ("lo", "hi")]
              + ["plcc_kind", "undefined_reason", "split_hash", "run_dirs", "notes"])


def csv_text(rows: list[Row]) -> str:
    """Full precision (repr of each float); an undefined value is an empty cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record = {"method": row.method, "method_label": row.method_label, "dataset": row.dataset,
                  "split": row.split, "part": row.part, "n_splits": row.n_splits,
                  "seeds": " ".join(map(str, row.seeds)), "n": _blank(row.n), "n_failed": _blank(row.n_failed),
                  "n_scored": _blank(row.n_scored), "status": row.status,
                  "plcc_kind": "after 4-parameter logistic fit; plcc_raw without",
                  "undefined_reason": row.undefined_reason or "",
                  "split_hash": " ".join(str(r.metrics.get("split_hash", "")) for r in row.runs),
                  "run_dirs": " ".join(str(r.run_dir) for r in row.runs), "notes": "; ".join(row.notes)}
        record.update({m: _blank(row.values[m]) for m in METRICS})
        for metric in CI_METRICS:
            ci = row.ci95.get(metric)
            record[f"{metric}_ci95_lo"] = _blank(ci[0] if ci else None)
            record[f"{metric}_ci95_hi"] = _blank(ci[1] if ci else None)
        writer.writerow(record)
    return buffer.getvalue()


def _blank(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)
