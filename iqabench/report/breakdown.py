"""SRCC per distortion type and per distortion level, for runs whose inputs carry them.

inputs.json records `distortion` and `level` for images of synthetic-distortion sets (KADID-10k,
TID2013, CSIQ, LIVE, `synthetic`). Each group's SRCC is computed on the scored images of that group
(oriented like every metric: no abs()); a median cell's group value is the median over its splits
where defined. A group of fewer than 3 scored images, or with constant values, is undefined.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from iqabench.errors import IqaError
from iqabench.report.select import Selection
from iqabench.significance import correlation

KINDS = ("distortion", "level")


@dataclasses.dataclass(frozen=True)
class BreakdownRow:
    label: str
    dataset: str
    column_title: str
    kind: str  # distortion | level
    group: str
    order: tuple  # sort key: levels numerically
    n: int  # scored images in the group (summed over splits)
    srcc: float | None
    n_splits: int  # splits where the group's SRCC is defined


def _order(group) -> tuple:
    try:
        return (0, float(group), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(group))


def _group_srcc(run, kind: str) -> dict[str, tuple[int, float | None, tuple]]:
    groups = {str(r["id"]): r[kind] for r in run.inputs() if isinstance(r, dict) and r.get(kind) is not None}
    if not groups:
        return {}
    preds = run.predictions()
    x, y = preds.oriented(run.method_higher_better, run.label_higher_better)
    members: dict[str, list[int]] = {}
    order = {}
    for k, sid in enumerate(preds.ids):
        if sid in groups:
            name = _text(groups[sid])
            members.setdefault(name, []).append(k)
            order[name] = _order(groups[sid])
    out = {}
    for name, idx in members.items():
        idx = np.asarray(idx)
        out[name] = (len(idx), correlation("srcc", x[idx], y[idx]), order[name])
    return out


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def breakdown(selection: Selection, titles: dict) -> tuple[list[BreakdownRow], list[str]]:
    """Rows for every table cell whose runs carry groups; plus warnings for runs that cannot be read."""
    rows, warnings = [], []
    for ident in selection.rows:
        for col in selection.columns:
            cell = selection.cell(ident, col)
            if cell is None:
                continue
            for kind in KINDS:
                per_run = []
                for run in cell.runs:
                    try:
                        per_run.append(_group_srcc(run, kind))
                    except IqaError as exc:  # one unreadable run costs its breakdown only, said so
                        warnings.append(f"{run.rel}: no {kind} breakdown ({exc})")
                groups = {g for d in per_run for g in d}
                for group in groups:
                    vals = [d[group] for d in per_run if group in d]
                    defined = [v[1] for v in vals if v[1] is not None]
                    rows.append(BreakdownRow(
                        selection.labels[ident], col.dataset, titles[col], kind, group, vals[0][2],
                        sum(v[0] for v in vals), float(np.median(defined)) if defined else None, len(defined)))
    rows.sort(key=lambda r: (r.column_title, r.kind, r.order, r.label))
    return rows, warnings
