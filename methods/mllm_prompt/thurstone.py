"""Per-image scores from rankings, as seed 001 aggregates them (its public code, `optimize_score`).

Each ranked group gives one outcome per pair of its images: the higher rank wins; equal ranks (the
prompt allows ties) count as a win for both. C[i, j] is how often i beat j. The scores are the
maximum a posteriori strengths of Thurstone's Case V model with a unit Gaussian prior,
    S* = argmax_S  sum_ij C_ij log Phi(S_i - S_j) - |S|^2 / 2,
whose optimum sums to zero (the likelihood's gradient sums to zero over images, so sum S_i = 0 at
any stationary point: the study's explicit sum-zero constraint is therefore inactive). We use the
exact log Phi (log_ndtr) where the study clamps Phi at 1e-6, which differs only for S_i - S_j < -4.75.
Finally, as the study, the strengths are mapped linearly to 0..100 (minimum 0, maximum 100); when
every strength is equal there is no range and they are returned unscaled (all 0).
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np


def pair_counts(n_items: int, rankings: Sequence[tuple[Sequence[int], Sequence[int]]]) -> np.ndarray:
    """C [n, n] from (item indices, their ranks) per group: rank higher wins, equal ranks both win."""
    counts = np.zeros((n_items, n_items))
    for items, ranks in rankings:
        if len(items) != len(ranks) or len(set(items)) != len(items):
            raise ValueError(f"bad group {list(items)} with ranks {list(ranks)}")
        for (a, ra), (b, rb) in combinations(zip(items, ranks), 2):
            if ra >= rb:
                counts[a, b] += 1
            if rb >= ra:
                counts[b, a] += 1
    return counts


def outcome_counts(n_items: int, outcomes: Sequence[tuple[int, int, float]], ties_win_both: bool = True) -> np.ndarray:
    """C [n, n] from paired outcomes (i, j, w = i's share of the win). With `ties_win_both` (answers
    1/0/2) a tie, w = 0.5, is a win for both, as the study counts its "2" answers; otherwise (soft
    outcomes read from answer probabilities) w is added to i's wins and 1 - w to j's."""
    counts = np.zeros((n_items, n_items))
    for i, j, w in outcomes:
        if i == j or not 0.0 <= w <= 1.0:
            raise ValueError(f"bad comparison ({i}, {j}, {w})")
        if ties_win_both and w == 0.5:
            counts[i, j] += 1
            counts[j, i] += 1
        else:
            counts[i, j] += w
            counts[j, i] += 1.0 - w
    return counts


def neg_log_posterior(s: np.ndarray, counts: np.ndarray) -> tuple[float, np.ndarray]:
    """The objective the study minimises, and its gradient."""
    from scipy.special import log_ndtr

    diff = s[:, None] - s[None, :]
    logphi = log_ndtr(diff)
    value = -(np.sum(counts * logphi) - 0.5 * np.sum(s * s))
    # d/dd log Phi(d) = phi(d) / Phi(d), the inverse Mills ratio, computed in logs for stability
    ratio = np.exp(-0.5 * diff * diff - 0.5 * np.log(2 * np.pi) - logphi)
    weight = counts * ratio
    grad = -(weight.sum(1) - weight.sum(0)) + s
    return float(value), grad


def fit(counts: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """The MAP strengths S* (summing to zero) for the win counts C."""
    from scipy.optimize import minimize

    counts = np.asarray(counts, dtype=float)
    n = counts.shape[0]
    if counts.shape != (n, n) or np.any(counts < 0) or np.any(np.diag(counts) != 0):
        raise ValueError("counts must be a square non-negative matrix with a zero diagonal")
    if n == 0:
        return np.zeros(0)
    result = minimize(neg_log_posterior, np.zeros(n), args=(counts,), jac=True, method="L-BFGS-B",
                      options={"gtol": tol, "ftol": 1e-15, "maxiter": 10000})
    s = result.x
    return s - s.mean()


def scaled(strengths: np.ndarray) -> np.ndarray:
    """The study's linear map of the strengths onto 0..100 (unchanged when they have no range)."""
    lo, hi = float(np.min(strengths)), float(np.max(strengths))
    return strengths if hi - lo <= 1e-12 else 100.0 * (strengths - lo) / (hi - lo)
