"""Per-image scores from paired comparisons: Bradley–Terry by the MM algorithm (Hunter 2004).

Model: P(i beats j) = p_i / (p_i + p_j), p_i > 0. Given outcomes w (1 = i won, 0 = j won, 0.5 a tie,
or any fraction, e.g. a soft outcome from answer probabilities), the log-likelihood
    L(p) = sum_(i,j,w) w log p_i + (1 - w) log p_j - log(p_i + p_j)
is maximised by iterating Hunter's minorise-maximise update
    p_i <- W_i / sum_j n_ij / (p_i + p_j)
(W_i = i's total wins, n_ij = comparisons of i with j), which increases L at every step; then the
log-strengths are centred (the model fixes p only up to a common factor).

The pure MLE exists only when every image both won and lost some comparison and the comparison
graph is strongly connected. `prior` > 0 adds, for each image, `prior` virtual comparisons with a
fixed phantom of strength 1 of which it wins half: a weak pull towards the average that keeps every
strength finite (a MAP estimate; prior=0 is the plain MLE and refuses data where it does not exist).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fit(n_items: int, comparisons: Sequence[tuple[int, int, float]], prior: float = 0.5,
        max_iter: int = 10000, tol: float = 1e-10) -> np.ndarray:
    """Centred log-strengths [n_items] from (i, j, w) outcomes (w = i's share of the win)."""
    if prior < 0:
        raise ValueError(f"prior must be >= 0, got {prior}")
    wins = np.full(n_items, prior / 2.0)
    games = np.zeros((n_items, n_items))
    for i, j, w in comparisons:
        if i == j or not 0.0 <= w <= 1.0:
            raise ValueError(f"bad comparison ({i}, {j}, {w})")
        wins[i] += w
        wins[j] += 1.0 - w
        games[i, j] += 1.0
        games[j, i] += 1.0
    if prior == 0:
        played = games.sum(1)
        if np.any(wins <= 0) or np.any(wins >= played):
            raise ValueError("the Bradley-Terry MLE does not exist: an image won or lost every comparison "
                             "(use a prior > 0)")
    p = np.ones(n_items)
    for _ in range(max_iter):
        denom = (games / (p[:, None] + p[None, :])).sum(1) + prior / (p + 1.0)
        new = wins / denom
        if prior == 0:
            new /= np.exp(np.mean(np.log(new)))
        change = np.max(np.abs(np.log(new) - np.log(p)))
        p = new
        if change < tol:
            break
    logp = np.log(p)
    return logp - logp.mean()


def log_likelihood(logp: np.ndarray, comparisons: Sequence[tuple[int, int, float]]) -> float:
    """L at log-strengths `logp` (no prior): for tests and diagnostics."""
    total = 0.0
    for i, j, w in comparisons:
        a, b = logp[i], logp[j]
        norm = np.logaddexp(a, b)
        total += w * (a - norm) + (1 - w) * (b - norm)
    return float(total)
