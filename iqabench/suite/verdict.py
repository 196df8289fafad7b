"""The reproduction verdict of one published number: "reproduced" when it lies inside our 95 %
interval (the run's bootstrap interval, `ci95` in metrics.json), or, for a seeded split family,
inside the spread of our per-split values; otherwise the gap, in widths of that interval. A number
with no interval of ours (a fitted metric, an old run, a family with one split found) gets no verdict."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable

INTERVAL = "95 % interval"
SPREAD = "spread of the split values"

LEGEND = ("Verdict: \"reproduced\" when the published number lies inside our 95 % interval (for a seeded "
          "split family: inside the spread of our per-split values); otherwise \"gap N×\": it lies N widths "
          "of that interval outside it.")


@dataclasses.dataclass(frozen=True)
class Verdict:
    published: float
    low: float
    high: float
    basis: str  # INTERVAL or SPREAD

    @property
    def reproduced(self) -> bool:
        return self.low <= self.published <= self.high

    @property
    def gap(self) -> float:
        """Published minus the nearest end of our interval (0 inside it)."""
        if self.published > self.high:
            return self.published - self.high
        return min(0.0, self.published - self.low)

    @property
    def widths(self) -> float | None:
        """|gap| in interval widths; None for an interval of width 0 (then only the gap says it)."""
        width = self.high - self.low
        return abs(self.gap) / width if width > 0 else None

    def text(self, digits: int) -> str:
        if self.reproduced:
            return "reproduced"
        if self.widths is None:
            return f"gap {abs(self.gap):.{digits}f}"
        return f"gap {self.widths:.1f}×"


def judge(published: float | None, interval: tuple[float, float] | None, basis: str) -> Verdict | None:
    if published is None or interval is None:
        return None
    low, high = sorted(interval)
    return Verdict(published, float(low), float(high), basis)


def summary_line(entries: Iterable) -> str:
    """One line counting the verdicts of every published number a suite computes (entries of
    iqabench.suite.table: `published`, `ours`, `verdict`)."""
    published = [e for e in entries if e.published is not None and e.computed]
    if not published:
        return "Reproduction: no published number to compare with."
    ours = [e for e in published if e.ours is not None]
    judged = [e.verdict for e in ours if e.verdict is not None]
    reproduced = sum(v.reproduced for v in judged)
    parts = [f"{reproduced} reproduced", f"{len(judged) - reproduced} not"]
    if len(ours) > len(judged):
        parts.append(f"{len(ours) - len(judged)} without an interval to judge by")
    if len(published) > len(ours):
        parts.append(f"{len(published) - len(ours)} without our number yet")
    return f"Reproduction: {', '.join(parts)} (of {len(published)} published numbers the harness computes)."
