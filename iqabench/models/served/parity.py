"""The parity check of a served model: the first N images are scored in process too (the same
checkpoint on a local backend), and the per-image difference and the SRCC difference are kept.

`ParityCheck.observe` is given each batch's served scores; it scores the batch's first images
(until N are seen) with `local_score`, the same scorer on the local model. `extras(id)` is what
each compared image's record gets; `summary()` what the run records (runtime stats) and `line()`
what is printed.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any


def _srcc(a: Sequence[float], b: Sequence[float]) -> float | None:
    if len(a) < 3:
        return None
    from scipy.stats import spearmanr

    value = float(spearmanr(a, b).statistic)
    return value if math.isfinite(value) else None


class ParityCheck:
    def __init__(self, local_score: Callable[[list[Any]], Sequence[float]], n: int):
        self.local_score, self.n = local_score, n
        self.rows: dict[str, dict[str, Any]] = {}  # image id -> served, local, diff, label

    def wants(self) -> int:
        return max(0, self.n - len(self.rows))

    def observe(self, ids: Sequence[str], labels: Sequence[float | None], served: Sequence[float],
                inputs: Sequence[Any]) -> None:
        k = min(self.wants(), len(ids))
        if not k:
            return
        local = [float(v) for v in self.local_score(list(inputs[:k]))]
        for sid, label, s, loc in zip(ids[:k], labels[:k], served[:k], local):
            s = float(s)
            diff = s - loc if math.isfinite(s) and math.isfinite(loc) else None
            self.rows[sid] = {"served": s, "local": loc, "diff": diff, "label": label}

    def extras(self, sample_id: str) -> dict[str, Any]:
        row = self.rows.get(sample_id)
        return {"parity": {"local_score": row["local"], "diff": row["diff"]}} if row else {}

    def summary(self) -> dict[str, Any]:
        diffs = [abs(r["diff"]) for r in self.rows.values() if r["diff"] is not None]
        labelled = [r for r in self.rows.values() if r["diff"] is not None and r["label"] is not None]
        labels = [float(r["label"]) for r in labelled]
        srcc_served = _srcc([r["served"] for r in labelled], labels)
        srcc_local = _srcc([r["local"] for r in labelled], labels)
        return {"images": len(self.rows), "compared": len(diffs),
                "max_abs_diff": max(diffs) if diffs else None,
                "mean_abs_diff": sum(diffs) / len(diffs) if diffs else None,
                "srcc_served": srcc_served, "srcc_local": srcc_local,
                "srcc_diff": None if srcc_served is None or srcc_local is None else srcc_served - srcc_local}

    def line(self) -> str:
        s = self.summary()

        def f(v):
            return "n/a" if v is None else f"{v:.3g}"

        return (f"parity (served vs in-process, first {s['images']} images, {s['compared']} compared): per-image "
                f"|diff| max {f(s['max_abs_diff'])} mean {f(s['mean_abs_diff'])}; SRCC served {f(s['srcc_served'])} "
                f"in-process {f(s['srcc_local'])} diff {f(s['srcc_diff'])}")
