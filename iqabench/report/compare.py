"""Significance between the methods of each table column, from their saved predictions.

Two cells are compared only when both are single runs (a median over splits has no one set of
images to pair) on images both scored: the predictions are joined by image id. Predictions and
labels are oriented with each run's recorded directions; PLCC is compared on the predictions
mapped through each run's recorded logistic fit (signed by the fit's direction, as metrics.py
does), raw PLCC and KRCC on the oriented predictions, SRCC on their ranks. RMSE is not tested.

The table marks the best cell of each column and metric (bold; full-reference methods, which see
the reference image, have their own best and are never compared with no-reference ones) and every cell whose difference
from the best is not significant at `alpha` (two-sided) by the chosen test; KRCC has no Williams
test and always uses the bootstrap. No correction for multiple comparisons is applied.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from iqabench import significance as sig
from iqabench.errors import IqaError
from iqabench.metrics import METRICS, interval_note, logistic4, resample_unit
from iqabench.report.collect import Run
from iqabench.report.identity import Identity
from iqabench.report.options import ReportOptions
from iqabench.report.select import Cell, Column, Selection


@dataclasses.dataclass
class PairTest:
    column: Column
    metric: str
    a: Identity  # the better of the two by the table's value (the best, in "best" mode)
    b: Identity
    n: int = 0
    value_a: float | None = None
    value_b: float | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_bootstrap: float | None = None
    n_boot: int = 0
    n_valid: int = 0
    seed: int = 0
    williams_t: float | None = None
    williams_df: int | None = None
    p_williams: float | None = None
    unit: str = "image"  # what the bootstrap resampled: images, or the references images share
    n_references: int | None = None
    note: str = ""

    def p(self, test: str) -> float | None:
        if test == "williams" and self.p_williams is not None:
            return self.p_williams
        return self.p_bootstrap


@dataclasses.dataclass
class Marks:
    best: set  # (identity, column, metric) shown in bold
    tied: set  # (identity, column, metric): not significantly different from the best
    tests: list[PairTest]
    notes: list[str]


def _aligned(a: Run, b: Run) -> tuple[list[str], dict, dict] | str:
    """The ids both runs scored (in a's order) and each run's {id: (score, label)}; or why not."""
    pa, pb = a.predictions(), b.predictions()
    sa = {i: (s, y) for i, s, y in zip(pa.ids, pa.scores, pa.labels)}
    sb = {i: (s, y) for i, s, y in zip(pb.ids, pb.scores, pb.labels)}
    common = [i for i in pa.ids if i in sb]
    if len(common) < 4:
        return f"only {len(common)} image(s) scored by both"
    if any(abs(sa[i][1] - sb[i][1]) > 1e-9 * max(1.0, abs(sa[i][1])) for i in common):
        return "the two runs carry different labels for the same images"
    return common, sa, sb


def _inputs_for(run: Run, ids: list[str], table: dict, metric: str) -> np.ndarray | None:
    """The oriented predictions of `ids` as the metric sees them (None: PLCC without a recorded fit)."""
    x = np.array([table[i][0] for i in ids], dtype=np.float64)
    x = x if run.method_higher_better else -x
    if not METRICS[metric].fitted:
        return x
    params = (run.metrics or {}).get("logistic_params")
    if not params or len(params) != 4:
        return None
    direction = 1.0 if params[0] >= params[1] else -1.0
    return direction * logistic4(x, *params)


def test_pair(column: Column, metric: str, a: Cell, b: Cell, options: ReportOptions) -> PairTest:
    result = PairTest(column, metric, a.identity, b.identity, n_boot=options.bootstrap_resamples,
                      seed=options.bootstrap_seed)
    if a.single is None or b.single is None:
        result.note = "not tested: a median over splits has no single set of images to pair"
        return result
    ra, rb = a.single, b.single
    try:
        aligned = _aligned(ra, rb)
    except IqaError as exc:  # a missing or unreadable predictions file leaves this pair untested, said so
        result.note = f"not tested: {exc}"
        return result
    if isinstance(aligned, str):
        result.note = f"not tested: {aligned}"
        return result
    ids, ta, tb = aligned
    y = np.array([ta[i][1] for i in ids], dtype=np.float64)
    y = y if ra.label_higher_better else -y
    xa, xb = _inputs_for(ra, ids, ta, metric), _inputs_for(rb, ids, tb, metric)
    if xa is None or xb is None:
        result.note = "not tested: a run has no recorded logistic fit"
        return result
    statistic = METRICS[metric].statistic
    ref_of = {str(r["id"]): r.get("ref") for r in ra.inputs()}
    unit = resample_unit([ref_of.get(i) for i in ids], len(ids))  # images sharing a reference: resample those
    boot = sig.paired_bootstrap(xa, xb, y, statistic, n_boot=options.bootstrap_resamples,
                                seed=options.bootstrap_seed, unit=unit)
    result.n, result.value_a, result.value_b, result.diff = boot.n, boot.value_a, boot.value_b, boot.diff
    result.n_valid, result.p_bootstrap = boot.n_valid, boot.p_value
    result.unit, result.n_references = unit.kind, unit.n_clusters
    if boot.ci95:
        result.ci_low, result.ci_high = boot.ci95
    notes = []
    if unit.kind == "reference":  # Williams' t assumes independent images: not offered here
        notes.append(f"references resampled ({unit.n_clusters} references, {len(ids)} images); "
                     "no Williams' test: images share references")
        few = interval_note(unit)
        if few:
            notes.append(few)
    elif statistic in ("srcc", "plcc"):
        williams = sig.williams_t(xa, xb, y, statistic)
        if williams is not None:
            result.williams_t, result.williams_df, result.p_williams = williams.t, williams.df, williams.p_value
    if len(ids) < min(len(ra.predictions().ids), len(rb.predictions().ids)):
        notes.append(f"on the {len(ids)} image(s) both runs scored")
    result.note = "; ".join(notes)
    return result


def _splits(selection: Selection, column: Column) -> str:
    facts = selection.facts.get(column)
    return facts.splits if facts is not None else column.protocol


def significance(selection: Selection, options: ReportOptions) -> Marks:
    best, tied, tests, notes = set(), set(), [], []
    decimals = options.decimals
    for column in selection.columns:
        for metric, full in ((m, f) for m in options.metrics for f in (False, True)):
            # full-reference methods (which see the reference) are ranked among themselves only
            higher = METRICS[metric].higher_better
            cells = [c for c in (selection.cell(i, column) for i in selection.rows)
                     if c is not None and c.values[metric] is not None
                     and not (metric == "plcc" and c.decreasing_fit)
                     and not c.own_labels  # scoring the labels' own definition: never ranked
                     and (c.identity in selection.full_reference) == full]
            if not cells:
                continue
            top = max(cells, key=lambda c: c.values[metric] if higher else -c.values[metric])
            shown = round(top.values[metric], decimals)
            for c in cells:
                if round(c.values[metric], decimals) == shown:
                    best.add((c.identity, column, metric))
            if options.significance == "none" or METRICS[metric].statistic is None or len(cells) < 2:
                continue
            if top.single is None and options.significance == "best":
                kind = " (full-reference methods)" if full else ""
                notes.append(f"{column.dataset} {_splits(selection, column)} {metric}{kind}: the best cell is a median "
                             "over splits; no significance test in this column")
                continue
            if options.significance == "all":
                pairs = [(x, y) for i, x in enumerate(cells) for y in cells[i + 1:]]
            else:
                pairs = [(top, c) for c in cells if c is not top]
            for x, y in pairs:
                if y.values[metric] > x.values[metric]:
                    x, y = y, x  # a is the better of the two
                test = test_pair(column, metric, x, y, options)
                tests.append(test)
                if x is top or y is top:
                    other = y if x is top else x
                    p = test.p(options.significance_test)
                    if p is not None and p >= options.alpha:
                        tied.add((other.identity, column, metric))
    if options.significance_test == "williams" and any(t.unit == "reference" for t in tests):
        notes.append("Williams' test assumes independent images; where images share a reference image it is not "
                     "offered and the paired bootstrap over references decides instead")
    return Marks(best, tied - best, tests, notes)
