"""How well K integer levels can carry a dataset's labels: the upper bound of a scorer that answers
one of K levels (seed 004's Table 1).

Each label s* is scaled to the K levels and rounded, as the paper's Eq. (1) writes it:
    level = Round((s* - min) / (max - min) * (K - 1))
(min and max over the labels scored; halves round up). The bound is the agreement of those levels
with the labels themselves: SRCC, PLCC (no fit) and their mean (the number the paper prints).

Measured on the released labels (2026-12), the printed formula gives, for K = 3, 5, 7, 9: AGIQA-3k
0.850 0.944 0.974 0.985, KADID-10k 0.913 0.968 0.984 0.991, KonIQ-10k 0.828 0.906 0.962 0.977,
LIVE Challenge 0.860 0.946 0.976 0.986: up to 0.073 below the paper's table (0.923 ... 0.993), which
no rounding variant tried (round or ceil of x*K, round of x*(K-1)) reproduces everywhere.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from iqabench.errors import IqaError

DEFAULT_LEVELS = (3, 5, 7, 9)


def quantise(labels: Sequence[float], levels: int) -> np.ndarray:
    """Eq. (1): labels -> integers 0..K-1."""
    y = np.asarray(labels, dtype=np.float64)
    if levels < 2:
        raise IqaError(f"levels={levels}: at least 2 levels are needed")
    low, high = float(np.min(y)), float(np.max(y))
    if high <= low:
        raise IqaError("every label is the same: nothing to quantise")
    return np.floor((y - low) / (high - low) * (levels - 1) + 0.5)


@dataclasses.dataclass(frozen=True)
class LevelBound:
    dataset: str
    levels: int
    n: int
    srcc: float
    plcc: float

    @property
    def mean(self) -> float:
        return (self.srcc + self.plcc) / 2.0


def level_bound(dataset: str, labels: Sequence[float], levels: int) -> LevelBound:
    from scipy import stats

    y = np.asarray(labels, dtype=np.float64)
    q = quantise(y, levels)
    return LevelBound(dataset, levels, int(y.size), float(stats.spearmanr(q, y)[0]), float(stats.pearsonr(q, y)[0]))


def table_lines(bounds: Sequence[LevelBound], digits: int = 3) -> list[str]:
    """Rows K, columns datasets, cells (SRCC + PLCC) / 2, as the paper lays it out."""
    datasets = list(dict.fromkeys(b.dataset for b in bounds))
    levels = sorted({b.levels for b in bounds})
    cell = {(b.dataset, b.levels): b for b in bounds}
    header = ["K", *datasets]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for k in levels:
        values = [f"{cell[(d, k)].mean:.{digits}f}" if (d, k) in cell else "" for d in datasets]
        lines.append("| " + " | ".join([str(k), *values]) + " |")
    return lines
