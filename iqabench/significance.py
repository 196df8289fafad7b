"""Is one method's correlation with the labels higher than another's, on the same images?

Both tests are paired: the two methods scored the same images (the caller joins them by image id
and keeps only images both scored), so their correlations with the labels are dependent.

- `paired_bootstrap`: resample the images (or, where images share a reference, the references: a
  cluster bootstrap) with replacement, recompute both correlations on every resample and read the
  difference's percentile 95 % interval and a two-sided p-value. Resample b draws its n indices with
  `numpy.random.default_rng(seed).integers(0, n, (n_boot, n))[b]` (see `metrics.resample_chunks` for
  references), so a result is reproducible from (seed, n_boot) alone; both are returned with it.
- `williams_t`: Williams' t for r_12 vs r_13 given r_23 (variable 1 the labels, 2 and 3 the two
  methods), the test Steiger (1980, Psychological Bulletin 87:245) recommends for two dependent
  correlations sharing one variable:
      t = (r12 - r13) * sqrt((n-1)(1+r23) / (2 (n-1)/(n-3) |R| + rbar^2 (1-r23)^3)),  df = n - 3,
  with |R| = 1 - r12^2 - r13^2 - r23^2 + 2 r12 r13 r23 and rbar = (r12 + r13) / 2. For SRCC the
  same formula is applied to ranks (Pearson on ranks is Spearman), a common approximation. It assumes
  independent images: where images share references it is not offered (`williams_valid`).

Inputs are oriented (higher is better) by the caller; no abs() is taken anywhere, so a method that
ranks images backwards has a negative correlation and loses.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

from iqabench import metrics

STATISTICS = ("srcc", "plcc", "krcc")


@dataclasses.dataclass(frozen=True)
class BootstrapResult:
    statistic: str  # srcc | plcc | krcc
    n: int  # images in the comparison
    value_a: float | None
    value_b: float | None
    diff: float | None  # value_a - value_b on all n images
    ci95: tuple[float, float] | None  # percentile interval of the difference over resamples
    p_value: float | None  # two-sided: how often the resampled difference falls on either side of 0
    n_boot: int
    n_valid: int  # resamples where both correlations are defined (not constant)
    seed: int


@dataclasses.dataclass(frozen=True)
class WilliamsResult:
    n: int
    r12: float  # labels vs method a
    r13: float  # labels vs method b
    r23: float  # method a vs method b
    t: float
    df: int
    p_value: float  # two-sided


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair; NaN where a row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def _statistic_rows(statistic: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if statistic == "srcc":
        return _pearson_rows(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))
    if statistic == "plcc":
        return _pearson_rows(x, y)
    if statistic == "krcc":
        return np.array([_kendall(a, b) for a, b in zip(x, y)])
    raise ValueError(f"unknown statistic {statistic!r}; one of {', '.join(STATISTICS)}")


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.kendalltau(a, b).statistic)


def correlation(statistic: str, x: np.ndarray, y: np.ndarray) -> float | None:
    """One correlation of two vectors, None when undefined (fewer than 3 values, or constant)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3:
        return None
    value = _statistic_rows(statistic, x[None, :], y[None, :])[0]
    return None if not np.isfinite(value) else float(value)


def paired_bootstrap(x_a, x_b, y, statistic: str = "srcc", *, n_boot: int = 1000, seed: int = 0,
                     unit: metrics.ResampleUnit | None = None) -> BootstrapResult:
    """Bootstrap of corr(x_a, y) - corr(x_b, y) over resamples of `unit` (images by default, or the
    references images share: a cluster bootstrap), the same resamples for both; chunked, O(n) memory.

    p-value: 2 * min(P*(d <= 0), P*(d >= 0)) with the add-one correction (count + 1) / (valid + 1),
    capped at 1; so the smallest possible p is about 2 / n_boot."""
    x_a, x_b, y = (np.asarray(v, dtype=np.float64) for v in (x_a, x_b, y))
    n = len(y)
    if not (len(x_a) == len(x_b) == n):
        raise ValueError(f"paired bootstrap needs equal lengths, got {len(x_a)}, {len(x_b)}, {n}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; one of {', '.join(STATISTICS)}")
    value_a, value_b = correlation(statistic, x_a, y), correlation(statistic, x_b, y)
    diff = None if value_a is None or value_b is None else value_a - value_b
    if diff is None:
        return BootstrapResult(statistic, n, value_a, value_b, None, None, None, n_boot, 0, seed)
    stat_a, stat_b = metrics.ResampledStatistics(x_a, y), metrics.ResampledStatistics(x_b, y)
    diffs = [stat_a.rows(statistic, w) - stat_b.rows(statistic, w)
             for w in metrics.resample_chunks(n, n_boot, seed, unit)]
    draws = np.concatenate(diffs)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return BootstrapResult(statistic, n, value_a, value_b, diff, None, None, n_boot, 0, seed)
    lo, hi = (float(v) for v in np.percentile(draws, [2.5, 97.5]))
    below = (np.sum(draws <= 0) + 1) / (len(draws) + 1)
    above = (np.sum(draws >= 0) + 1) / (len(draws) + 1)
    p = float(min(1.0, 2 * min(below, above)))
    return BootstrapResult(statistic, n, value_a, value_b, diff, (lo, hi), p, n_boot, int(len(draws)), seed)


def williams_t_from_r(r12: float, r13: float, r23: float, n: int) -> WilliamsResult:
    """Williams' t (Steiger 1980) for H0: rho12 = rho13, from the three correlations and n (> 3)."""
    if n <= 3:
        raise ValueError(f"Williams' test needs more than 3 observations, got {n}")
    det = 1 - r12 ** 2 - r13 ** 2 - r23 ** 2 + 2 * r12 * r13 * r23
    rbar = (r12 + r13) / 2
    den = 2 * (n - 1) / (n - 3) * det + rbar ** 2 * (1 - r23) ** 3
    if not den > 0:
        # |R| = 0 and r23 = 1: the two methods are the same up to a linear map; no difference to test
        t = 0.0 if r12 == r13 else math.copysign(math.inf, r12 - r13)
    else:
        t = (r12 - r13) * math.sqrt((n - 1) * (1 + r23) / den)
    df = n - 3
    p = float(2 * stats.t.sf(abs(t), df))
    return WilliamsResult(n, float(r12), float(r13), float(r23), float(t), df, p)


def williams_t(x_a, x_b, y, statistic: str = "srcc") -> WilliamsResult | None:
    """Williams' t on Pearson (statistic="plcc") or on ranks (statistic="srcc"); None when a
    correlation is undefined."""
    x_a, x_b, y = (np.asarray(v, dtype=np.float64) for v in (x_a, x_b, y))
    if statistic == "srcc":
        x_a, x_b, y = stats.rankdata(x_a), stats.rankdata(x_b), stats.rankdata(y)
    elif statistic != "plcc":
        raise ValueError(f"Williams' test is for srcc or plcc, not {statistic!r}")
    if len(y) <= 3:
        return None
    r12, r13, r23 = (correlation("plcc", u, v) for u, v in ((y, x_a), (y, x_b), (x_a, x_b)))
    if r12 is None or r13 is None or r23 is None:
        return None
    return williams_t_from_r(r12, r13, r23, len(y))
