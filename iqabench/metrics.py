"""Correlation metrics, computed from saved predictions only.

Sign-aware: predictions and labels are first oriented so that higher means better quality
(a lower-better method or a DMOS dataset is negated), and never passed through abs().
PLCC is given raw and after the VQEG four-parameter logistic fit, which tries several starting
points and keeps the lowest residual (one start can end in a poor local minimum).
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

# scipy is imported where a statistic is computed: importing this module (for the metric table) is
# part of every command's start-up, and scipy.stats alone costs most of a second

# Bumped whenever a change here changes a number in metrics.json: a stored metrics.json of another
# version is recomputed, one of this version is read back as it is.
METRICS_VERSION = 3  # 3: a fit whose direction contradicts SRCC leaves PLCC undefined
# Values held at once by the bootstrap and the logistic grid (16 MiB of float64): memory O(n), not O(n_boot n).
CHUNK_ELEMENTS = 1 << 21
# Fewer test references than this: the reference bootstrap's interval is wide because there are few of them.
FEW_REFERENCES = 10


# -- the metric table: the one place a metric's name, label and meaning are written ----------------
@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric of a run's metrics.json, as every table, suite and CSV names it."""

    key: str  # the key in metrics.json, a CSV column, a suite's `metrics` entry, `report --metric`
    label: str  # the header of a text, markdown or HTML table
    tex: str  # the header of a LaTeX table
    meaning: str  # what the number is, for captions and help
    higher_better: bool
    fitted: bool  # computed after the 4-parameter logistic fit (else on the raw, oriented predictions)
    correlation: bool  # lies in [-1, 1]
    statistic: str | None  # the paired test behind a significance mark (significance.py), None: untested
    interval: bool  # metrics.json holds its bootstrap 95 % interval (`ci95`)

    def caption(self) -> str:
        """`PLCC raw (Pearson correlation, no fit)`: the label with its meaning."""
        return f"{self.label} ({self.meaning})"


METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("srcc", "SRCC", "SRCC", "Spearman rank correlation", True, False, True, "srcc", True),
    Metric("krcc", "KRCC", "KRCC", "Kendall rank correlation", True, False, True, "krcc", True),
    Metric("plcc", "PLCC", "PLCC", "Pearson correlation after the 4-parameter logistic fit, signed by its "
           "direction", True, True, True, "plcc", False),
    Metric("plcc_raw", "PLCC raw", r"PLCC$_\mathrm{raw}$", "Pearson correlation, no fit", True, False, True,
           "plcc", True),
    Metric("rmse", "RMSE", "RMSE", "root-mean-square error after the logistic fit, in oriented label units",
           False, True, False, None, False),
)}
METRIC_KEYS = tuple(METRICS)
CORRELATIONS = tuple(k for k, m in METRICS.items() if m.correlation)
INTERVAL_METRICS = tuple(k for k, m in METRICS.items() if m.interval)  # the keys of `ci95`


def metric(key: str) -> Metric:
    try:
        return METRICS[key]
    except KeyError:
        raise KeyError(f"unknown metric {key!r}; metrics: {', '.join(METRIC_KEYS)}") from None


def label(key: str, tex: bool = False) -> str:
    """The header of metric `key` in a text table, or in LaTeX."""
    m = metric(key)
    return m.tex if tex else m.label


def format_value(value: float | None, decimals: int, missing: str = "n/a") -> str:
    """A metric as a table shows it: fixed decimals, `missing` for an undefined value, no "-0.000"."""
    if value is None:
        return missing
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def orient(values: np.ndarray, higher_better: bool) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values if higher_better else -values


# The three correlations are the bootstrap's own statistics with every image drawn once (equal to
# scipy's spearmanr, kendalltau and pearsonr: tests/test_bootstrap_scale.py), so a run needs no scipy.stats.
def _once(statistic: str, pred: np.ndarray, label: np.ndarray) -> float:
    pred, label = np.asarray(pred, dtype=np.float64), np.asarray(label, dtype=np.float64)
    if len(pred) != len(label):
        raise ValueError(f"{statistic}: {len(pred)} predictions for {len(label)} labels")
    if len(pred) < 2:
        return float("nan")
    return float(ResampledStatistics(pred, label).rows(statistic, np.ones((1, len(pred))))[0])


def srcc(pred: np.ndarray, label: np.ndarray) -> float:
    return _once("srcc", pred, label)


def krcc(pred: np.ndarray, label: np.ndarray) -> float:
    return _once("krcc", pred, label)


def plcc(pred: np.ndarray, label: np.ndarray) -> float:
    return _once("plcc", pred, label)


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    # np.minimum/np.maximum: np.clip's values, without its Python-level dispatch (a fit calls this thousands of times)
    z = np.minimum(np.maximum(-(x - b3) / (abs(b4) + 1e-12), -500.0), 500.0)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


@dataclasses.dataclass(frozen=True)
class LogisticFit:
    params: np.ndarray  # (b1, b2, b3, b4)
    sse: float  # residual sum of squares in label units
    start: str  # which starting point it came from
    starts_tried: int
    starts_converged: int


def logistic_starts(pred: np.ndarray, label: np.ndarray, n_grid: int = 4) -> dict[str, list[float]]:
    """Starting points for the 4-parameter fit: the VQEG data-driven one first, its mirror for a
    decreasing relation, then the `n_grid` best points of a coarse grid over centre and width.

    One start can end in a poor local minimum (an outlier that inflates the spread, a step-like
    or saturated relation, a centre far from the bulk of the predictions). For a fixed centre
    b3 and width b4 the model is linear in b1 and b2, so every grid point gets its best b1, b2
    by least squares, in either direction; the best grid points lie in the basins of good fits.
    Last comes the best step (the b4 -> 0 limit), found exactly, for two-level relations."""
    pred = np.asarray(pred, dtype=np.float64)
    label = np.asarray(label, dtype=np.float64)
    hi, lo = float(np.max(label)), float(np.min(label))
    mid, spread = float(np.mean(pred)), float(np.std(pred)) or 1.0
    starts = {"data-driven": [hi, lo, mid, spread], "reversed": [lo, hi, mid, spread]}
    centres = np.quantile(pred, np.linspace(0.02, 0.98, 49))
    y0 = label - label.mean()
    grid: list[tuple[float, float, float, float, float]] = []  # (sse, b1, b2, b3, b4)
    block = max(1, CHUNK_ELEMENTS // max(len(pred), 1))  # centres at once: O(n) memory on large sets
    for width in spread * np.logspace(-4.0, 1.0, 11):
        for first in range(0, len(centres), block):
            cs = centres[first:first + block]
            s = 1.0 / (1.0 + np.exp(np.clip(-(pred[None, :] - cs[:, None]) / width, -500, 500)))
            s0 = s - s.mean(axis=1, keepdims=True)
            var = (s0 * s0).sum(axis=1)
            slope = np.divide((s0 * y0).sum(axis=1), var, out=np.zeros_like(var), where=var > 0)
            sse = (y0 * y0).sum() - slope * (s0 * y0).sum(axis=1)
            intercept = label.mean() - slope * s.mean(axis=1)
            grid += [(float(e), float(m + c), float(c), float(b3), float(width))
                     for e, m, c, b3, v in zip(sse, slope, intercept, cs, var) if v > 0]
    for i, (_, b1, b2, b3, b4) in enumerate(sorted(grid)[:n_grid]):
        starts[f"grid-{i + 1}"] = [b1, b2, b3, b4]
    step = _best_step(pred, label)
    if step is not None:
        starts["step"] = step
    return starts


def _best_step(pred: np.ndarray, label: np.ndarray) -> list[float] | None:
    """The limit of the logistic as b4 -> 0: the split of the sorted predictions into two groups
    (each fitted by its mean) with the lowest residual, as (b1, b2, b3, b4) with b4 small enough
    that the nearest predictions sit on the plateaus. None when all predictions are equal."""
    order = np.argsort(pred, kind="stable")
    x, y = pred[order], label[order]
    n = len(x)
    cuts = np.nonzero(np.diff(x) > 0)[0] + 1  # a group boundary between distinct values only
    if n < 2 or len(cuts) == 0:
        return None
    csum, csq = np.cumsum(y), np.cumsum(y * y)
    left_n, right_n = cuts, n - cuts
    left_sum, right_sum = csum[cuts - 1], csum[-1] - csum[cuts - 1]
    left_sq, right_sq = csq[cuts - 1], csq[-1] - csq[cuts - 1]
    sse = (left_sq - left_sum ** 2 / left_n) + (right_sq - right_sum ** 2 / right_n)
    k = int(np.argmin(sse))
    cut = int(cuts[k])
    gap = float(x[cut] - x[cut - 1])
    return [float(right_sum[k] / right_n[k]), float(left_sum[k] / left_n[k]), float(x[cut - 1] + gap / 2), gap / 60.0]


def best_logistic_fit(pred: np.ndarray, label: np.ndarray) -> LogisticFit | None:
    """The fit with the lowest residual over every start of `logistic_starts`, each refined by
    least squares, or None when none converges. A grid or step start (its b1, b2 already
    least-squares optimal) stays a candidate as it is, so a refinement that stalls on a flat,
    step-like residual cannot lose it. Ties keep the earlier candidate; nothing is random."""
    pred = np.asarray(pred, dtype=np.float64)
    label = np.asarray(label, dtype=np.float64)
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(label))):
        return None  # as curve_fit refuses them: no start can converge
    starts = logistic_starts(pred, label)
    best: tuple[float, str, np.ndarray] | None = None
    converged = 0
    for name, p0 in starts.items():
        unrefined = name.startswith("grid") or name == "step"
        candidates = [(name + " (unrefined)", np.asarray(p0, dtype=np.float64))] if unrefined else []
        params = _refined(pred, label, p0)
        if params is not None:
            converged += 1
            candidates.insert(0, (name, params))
        for tag, params in candidates:
            sse = float(np.sum((logistic4(pred, *params) - label) ** 2))
            if np.isfinite(sse) and (best is None or sse < best[0]):
                best = (sse, tag, params)
    if best is None or converged == 0:
        return None
    return LogisticFit(params=best[2], sse=best[0], start=best[1], starts_tried=len(starts), starts_converged=converged)


def _refined(pred: np.ndarray, label: np.ndarray, p0: list[float]) -> np.ndarray | None:
    """`p0` refined by MINPACK's Levenberg-Marquardt, or None when it does not converge: the
    parameters `curve_fit(logistic4, pred, label, p0, maxfev=20000)` returns, bit for bit (a test
    checks), by calling the `leastsq` it wraps directly. curve_fit's per-evaluation wrappers cost
    about a quarter of a fit that needs thousands of evaluations (a near-exponential relation)."""
    from scipy import optimize

    def residual(b: np.ndarray) -> np.ndarray:
        return logistic4(pred, b[0], b[1], b[2], b[3]) - label

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _, _, _, ier = optimize.leastsq(residual, np.asarray(p0, dtype=np.float64), full_output=True,
                                                    maxfev=20000)
    except TypeError:  # fewer residuals than parameters (n < 4)
        return None
    if ier not in (1, 2, 3, 4) or not np.all(np.isfinite(params)):  # curve_fit's "optimal parameters not found"
        return None
    return params


def fit_logistic(pred: np.ndarray, label: np.ndarray) -> np.ndarray | None:
    """Fitted (b1, b2, b3, b4) of the multi-start fit, or None when no start converges."""
    fit = best_logistic_fit(pred, label)
    return None if fit is None else fit.params


def compute(pred: np.ndarray, label: np.ndarray, *, method_higher_better: bool = True,
            dataset_higher_better: bool = True, n_boot: int = 1000, seed: int = 0,
            refs=None) -> dict[str, Any]:
    """All metrics for one run. Inputs are raw; orientation is applied here and recorded.

    `refs` (the reference image of each image, on synthetic-distortion sets): images sharing a reference
    are not independent, so the bootstrap then resamples references, not images."""
    p = orient(pred, method_higher_better)
    y = orient(label, dataset_higher_better)
    out: dict[str, Any] = {"n_scored": int(len(p)), "orientation": {
        "prediction_negated": not method_higher_better, "label_negated": not dataset_higher_better}}
    if len(p) < 3 or np.ptp(p) == 0 or np.ptp(y) == 0:
        reason = "fewer than 3 scored images" if len(p) < 3 else "constant predictions or labels"
        out.update({k: None for k in METRIC_KEYS})
        out["undefined_reason"] = reason
        return out
    out["srcc"] = srcc(p, y)
    out["krcc"] = krcc(p, y)
    out["plcc_raw"] = plcc(p, y)
    fit = best_logistic_fit(p, y)
    if fit is None:
        out.update({"plcc": None, "rmse": None, "logistic_fit": "did not converge"})
    else:
        params = fit.params
        fitted = logistic4(p, *params)
        # A decreasing fit correlates positively with the labels even when the method ranks
        # images backwards; the sign of the fitted map's direction keeps that visible.
        direction = 1.0 if params[0] >= params[1] else -1.0
        out["logistic_direction"] = "increasing" if direction > 0 else "decreasing"
        out["plcc"] = direction * plcc(fitted, y) if np.ptp(fitted) > 0 else None
        out["rmse"] = float(np.sqrt(np.mean((fitted - y) ** 2)))
        # rmse is in oriented label units; for a DMOS set that is the negated DMOS scale
        out["logistic_start"] = fit.start  # which of the starts gave the lowest residual
        if direction * out["srcc"] < 0:
            # the lowest residual is a map running against the ranking, typically a step (b4 -> 0) that
            # isolates a few outliers: its direction says nothing about the order, so no PLCC is signed by it
            levels = np.unique(np.round((fitted - fitted.min()) / max(float(np.ptp(fitted)), 1e-300), 6))
            step = len(levels) <= 2  # the fit only splits the images into two groups
            out["plcc"] = None
            out["logistic_fit"] = (f"degenerate: the best fit is {'a step' if step else 'a logistic'} "
                                   f"{out['logistic_direction']} while SRCC is {out['srcc']:+.3f}; PLCC is "
                                   "undefined (see plcc_raw)")
            out["logistic_degenerate_params"] = [float(v) for v in params]
        else:
            out["logistic_params"] = [float(v) for v in params]
    unit = resample_unit(refs, len(p))
    out["ci95"] = bootstrap(p, y, n_boot=n_boot, seed=seed, unit=unit)
    out["bootstrap"] = {"n": n_boot, "seed": seed, **unit.describe(len(p))}
    note = interval_note(unit)
    if note:
        out["bootstrap"]["note"] = note
    return out


def resample_unit(refs, n: int) -> "ResampleUnit":
    """References when every image has one (a cluster bootstrap), else images."""
    if refs is None or len(refs) != n or any(r is None for r in refs):
        return ResampleUnit.images()
    return ResampleUnit.by_reference(refs)


def interval_note(unit: "ResampleUnit") -> str | None:
    """What a reader must know about an interval drawn from few references."""
    if unit.kind == "reference" and unit.n_clusters < FEW_REFERENCES:
        return (f"only {unit.n_clusters} reference image(s): the interval resamples references "
                "(images of one reference are not independent) and is wide for that reason")
    return None


# -- the bootstrap, in O(n) memory --------------------------------------------------------------------------
# A resample is held as multiplicities (how often each image was drawn), chunk by chunk: never an
# (n_boot x n) array at once. SRCC and PLCC of a resample are weighted statistics of the original values
# (equal to the same statistic of the repeated values, ties in ranks averaged as scipy does); Kendall's
# tau-b is counted by a merge sort whose merges are the same for every resample (WeightedKendall), so a
# chunk of resamples costs O(k n log n) in whole-array steps. Resample b with images as the unit draws
# `default_rng(seed).integers(0, n, (n_boot, n))[b]`; with clusters (images sharing a reference) it draws
# `integers(0, n_clusters, (n_boot, n_clusters))[b]` and takes every image of each drawn cluster.


@dataclasses.dataclass(frozen=True)
class ResampleUnit:
    """What the bootstrap draws with replacement: images, or clusters of images (their reference)."""

    kind: str  # "image" | "reference"
    codes: np.ndarray | None = None  # cluster index of each image (0..n_clusters-1); None for images
    n_clusters: int | None = None

    @classmethod
    def images(cls) -> "ResampleUnit":
        return cls("image")

    @classmethod
    def by_reference(cls, refs) -> "ResampleUnit":
        names, codes = np.unique(np.asarray([str(r) for r in refs], dtype=object), return_inverse=True)
        return cls("reference", codes.astype(np.int64), int(len(names)))

    def describe(self, n: int) -> dict[str, Any]:
        return {"unit": self.kind, "n_images": int(n),
                "n_references": self.n_clusters if self.kind == "reference" else None}


def resample_chunks(n: int, n_boot: int, seed: int, unit: ResampleUnit | None = None):
    """Yield (k x n) float64 multiplicities of the next k resamples, k bounded by CHUNK_ELEMENTS."""
    unit = unit or ResampleUnit.images()
    rng = np.random.default_rng(seed)
    draws = n if unit.kind == "image" else unit.n_clusters
    per = max(2, (CHUNK_ELEMENTS // max(n, draws, 1)) // 2 * 2)  # even: chunks continue one random stream
    for start in range(0, n_boot, per):
        k = min(per, n_boot - start)
        idx = rng.integers(0, draws, (k, draws))
        counts = np.bincount((idx + draws * np.arange(k)[:, None]).ravel(), minlength=k * draws).reshape(k, draws)
        yield (counts if unit.kind == "image" else counts[:, unit.codes]).astype(np.float64)


class WeightedRanks:
    """Average ranks of one vector's values in any resample given as multiplicities: the sort and the
    tie groups are computed once, each resample costs O(n)."""

    def __init__(self, values: np.ndarray):
        values = np.asarray(values, dtype=np.float64)
        self.order = np.argsort(values, kind="stable")
        sorted_values = values[self.order]
        self.starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
        group_of_sorted = np.cumsum(np.r_[False, sorted_values[1:] != sorted_values[:-1]])
        self.group = np.empty(len(values), dtype=np.int64)
        self.group[self.order] = group_of_sorted  # tie group of each image

    def of(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ranks, constant): each image's average rank in every resample (rows of w), and whether the
        resample's values are all equal (every drawn image in one tie group)."""
        g = np.add.reduceat(w[:, self.order], self.starts, axis=1)  # drawn images per tie group
        below = np.cumsum(g, axis=1) - g
        ranks = (below + (g + 1.0) / 2.0)[:, self.group]
        return ranks, g.max(axis=1) >= w.sum(axis=1)


def weighted_pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson r of each resample (row of w) of the paired values a, b (rows, or one vector for all)."""
    total = w.sum(axis=1, keepdims=True)
    ma = (w * a).sum(axis=1, keepdims=True) / total
    mb = (w * b).sum(axis=1, keepdims=True) / total
    da, db = a - ma, b - mb
    cov = (w * da * db).sum(axis=1)
    den = np.sqrt((w * da * da).sum(axis=1) * (w * db * db).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, cov / np.where(den > 0, den, 1.0), np.nan)


class ResampledStatistics:
    """SRCC, KRCC and raw PLCC of paired vectors (x, y) over resamples given as multiplicities."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        self.rx, self.ry = WeightedRanks(self.x), WeightedRanks(self.y)
        self._tau: WeightedKendall | None = None  # built on first use: only KRCC needs it

    def rows(self, statistic: str, w: np.ndarray) -> np.ndarray:
        """The statistic of every resample; NaN where the resample's x or y is constant."""
        return self.many((statistic,), w)[statistic]

    def many(self, statistics, w: np.ndarray) -> dict[str, np.ndarray]:
        """Several statistics of every resample (rows of w), the ranks computed once."""
        unknown = [s for s in statistics if s not in ("srcc", "plcc", "plcc_raw", "krcc")]
        if unknown:
            raise ValueError(f"unknown statistic {unknown[0]!r}")
        ranks_x, flat_x = self.rx.of(w)
        ranks_y, flat_y = self.ry.of(w)
        flat = flat_x | flat_y
        out = {}
        for statistic in statistics:
            if statistic == "srcc":
                values = weighted_pearson(ranks_x, ranks_y, w)
            elif statistic == "krcc":
                if self._tau is None:
                    self._tau = WeightedKendall(self.x, self.y)
                values = self._tau.of(w)
            else:
                values = weighted_pearson(self.x, self.y, w)
            values[flat] = np.nan
            out[statistic] = values
        return out



class WeightedKendall:
    """Kendall's tau-b (scipy's) of paired vectors (x, y) in any resample given as multiplicities.

    Knight's method: with the pairs sorted by (x, y), the discordant pairs are the inversions of y's
    ranks, counted by a bottom-up merge sort. The merges depend on the values only, so each level's
    order is computed once; a resample's discordant weight at that level is, for every element of a
    right half, its multiplicity times the multiplicity of the left half's elements with greater y,
    read from one cumulative sum. Ties (in x, in y, in both) are counted from group sums, and an
    image drawn k times forms k (k - 1) / 2 pairs tied in both. Every count is an integer below 2^53,
    exact in float64; memory is O(n log n) int32 for the levels plus O(k n) per chunk."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        n = len(x)
        self.order = np.lexsort((y, x))  # by x, then y
        xs, ys = x[self.order], y[self.order]
        r = np.unique(ys, return_inverse=True)[1].reshape(-1)  # y's tie group, in (x, y) order
        new_x = np.r_[True, xs[1:] != xs[:-1]]
        self.x_starts = np.flatnonzero(new_x)
        self.xy_starts = np.flatnonzero(new_x | np.r_[True, ys[1:] != ys[:-1]])
        self.y_order = np.argsort(r, kind="stable")  # positions (in (x, y) order) grouped by y
        self.y_starts = np.flatnonzero(np.r_[True, np.diff(r[self.y_order]) != 0])
        index = np.int32 if n < 2 ** 31 else np.int64
        pos = np.arange(n)
        # per level: the order within blocks, which places hold the left half, and where each block's
        # right half starts and ends (in the (x, y) order)
        self.levels: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        half = 1
        while half < n:
            block, right = pos // (2 * half), (pos // half) % 2 == 1
            # within each block of two halves: by y's rank, the left half first on ties (not inversions)
            perm = np.lexsort((right, r, block))
            right_starts = np.arange(half, n, 2 * half)  # >= 1: the place before is in the row
            ends = np.minimum(right_starts + half, n) - 1
            self.levels.append((perm.astype(index), ~right[perm], right_starts.astype(index), ends.astype(index)))
            half *= 2

    def of(self, w: np.ndarray) -> np.ndarray:
        """tau-b of every resample (rows of w); NaN where x or y is constant in the resample."""
        # exact integer counts (a multiplicity fits int32; every sum of them is taken in int64)
        ws = np.take(np.asarray(w), self.order, axis=1).astype(np.int32)
        k, n = ws.shape
        # running sums over the flattened rows: a row's sums carry the rows before it, which cancel in
        # every difference of two places of one row below
        cw = np.cumsum(ws.ravel(), dtype=np.int64).reshape(k, n)
        discordant = np.zeros(k, dtype=np.int64)
        for perm, is_left, right_starts, ends in self.levels:
            wl = np.take(ws, perm, axis=1)
            left = wl * is_left
            c = np.cumsum(left.ravel(), dtype=np.int64).reshape(k, n)  # left-half weight up to each place
            # sum over right-half elements b of w_b * (left weight of b's block with greater y):
            # (c at the block's end) * (the block's right weight) - sum_b w_b * c_b
            right_weight = cw[:, ends] - cw[:, right_starts - 1]
            discordant += (c[:, ends] * right_weight).sum(axis=1)
            discordant -= np.einsum("ij,ij->i", wl - left, c)
        total = cw[:, -1] - np.r_[0, cw[:-1, -1]]
        pairs = total * (total - 1) // 2

        def tied(groups: np.ndarray, starts: np.ndarray) -> np.ndarray:
            g = np.add.reduceat(groups, starts, axis=1, dtype=np.int64)
            return (g * (g - 1) // 2).sum(axis=1)

        x_ties, xy_ties = tied(ws, self.x_starts), tied(ws, self.xy_starts)
        y_ties = tied(np.take(ws, self.y_order, axis=1), self.y_starts)
        score = (pairs - x_ties - y_ties + xy_ties - 2 * discordant).astype(np.float64)  # concordant - discordant
        den = (pairs - x_ties).astype(np.float64) * (pairs - y_ties)
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = np.where(den > 0, score / np.sqrt(np.where(den > 0, den, 1.0)), np.nan)
        return np.clip(tau, -1.0, 1.0)


BOOTSTRAP_STATISTICS = ("srcc", "krcc", "plcc_raw")


def bootstrap(p: np.ndarray, y: np.ndarray, n_boot: int, seed: int,
              unit: ResampleUnit | None = None) -> dict[str, list[float] | None]:
    """Percentile 95 % intervals of SRCC, KRCC and raw PLCC over resamples of `unit` (images by
    default, or references: a cluster bootstrap); resamples with constant predictions or labels are
    left out. Memory O(n): resamples are drawn and reduced chunk by chunk."""
    stat = ResampledStatistics(p, y)
    draws: dict[str, list[np.ndarray]] = {k: [] for k in BOOTSTRAP_STATISTICS}
    for w in resample_chunks(len(p), n_boot, seed, unit):
        for key, values in stat.many(BOOTSTRAP_STATISTICS, w).items():
            draws[key].append(values)
    out: dict[str, list[float] | None] = {}
    for key, parts in draws.items():
        vals = np.concatenate(parts) if parts else np.array([])
        vals = vals[np.isfinite(vals)]
        out[key] = [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))] if len(vals) else None
    return out


def selection_score(pred: np.ndarray, label: np.ndarray) -> float:
    """(SRCC + PLCC_raw) / 2, the model-selection criterion of seed 000; -inf if undefined."""
    pred = np.asarray(pred, dtype=np.float64)
    label = np.asarray(label, dtype=np.float64)
    if len(pred) < 3 or np.ptp(pred) == 0 or np.ptp(label) == 0:
        return float("-inf")
    return (srcc(pred, label) + plcc(pred, label)) / 2.0
