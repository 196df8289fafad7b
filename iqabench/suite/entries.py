"""What fills each number of a suite table: our value from the runs found for the cell (see
iqabench.suite.index.RunIndex: same method, options fingerprint, dataset, split, part and training
source), the published one, the interval the verdict judges by, and notes saying why a number is missing.
A smoke-test (`--limit`) run or an unfinished one never fills a cell. For a seeded split family the
number is the median over the splits found, and says how many."""
from __future__ import annotations

import dataclasses
import statistics

from iqabench.suite.definition import Cell, Suite, applies
from iqabench.suite.index import RunIndex
from iqabench.suite.verdict import INTERVAL, SPREAD, Verdict, judge


@dataclasses.dataclass
class Entry:
    """One row x column x metric of the table."""

    ours: float | None
    published: float | None
    applicable: bool = True  # False: the row does not cover this column (blank, as in the paper)
    notes: list[str] = dataclasses.field(default_factory=list)
    found: int = 0  # runs behind `ours`
    expected: int = 0  # runs the cell needs (the splits of a seeded family)
    run_dirs: list[str] = dataclasses.field(default_factory=list)
    computed: bool = False  # a cell the harness computes (not published-only, not blank)
    interval: tuple[float, float] | None = None  # what the verdict judges by: our 95 % interval or split spread
    basis: str = INTERVAL

    @property
    def diff(self) -> float | None:
        return None if self.ours is None or self.published is None else self.ours - self.published

    @property
    def verdict(self) -> Verdict | None:
        return judge(self.published, self.interval, self.basis) if self.ours is not None else None


def suite_entries(suite: Suite, index: RunIndex) -> dict[tuple[str, str, str], Entry]:
    """(row label, column key, metric) -> Entry, for every row x column x metric of the suite."""
    cells = {(c.row.label, c.column.key): c for c in suite.cells()}
    out: dict[tuple[str, str, str], Entry] = {}
    for row in suite.rows:
        for col in suite.columns:
            published = row.published.get(col.key, {})
            cell = cells.get((row.label, col.key))
            for metric in suite.metrics:
                entry = Entry(None, _float(published.get(metric)))
                if row.published_only or col.published_only:
                    entry.applicable = entry.published is not None  # its row label or column title says why
                elif not applies(row, col):
                    entry.applicable = False
                elif cell is not None:
                    _fill(entry, cell, metric, index)
                out[(row.label, col.key, metric)] = entry
    return out


def _fill(entry: Entry, cell: Cell, metric: str, index: RunIndex) -> None:
    values, intervals, reasons = [], [], []
    entry.computed = True
    entry.expected = len(cell.units)
    for unit in cell.units:
        record, why = index.best(cell, unit)
        if record is None:
            reasons.append(why)
            continue
        entry.found += 1
        entry.run_dirs.append(str(record.run_dir))
        values.append(record.metric(metric))
        intervals.append(((record.metrics or {}).get("ci95") or {}).get(metric))
    if entry.found == 0:
        entry.notes.append(f"no usable run: {_most_common(reasons)} (`iqabench suite run` fills it)")
        return
    if any(v is None for v in values):
        entry.notes.append(f"{metric} undefined in {sum(v is None for v in values)} of {entry.found} run(s) "
                           "(see their metrics.json undefined_reason)")
        return
    if entry.expected == 1:
        entry.ours = values[0]
        entry.interval = _pair(intervals[0])
        return
    entry.ours = float(statistics.median(values))
    if len(values) > 1:  # the spread of one split is no interval
        entry.interval, entry.basis = (min(values), max(values)), SPREAD
    entry.notes.append(f"{cell.aggregate or 'median'} over {entry.found} of {entry.expected} splits"
                       + (f" (missing: {_most_common(reasons)})" if reasons else ""))


def _pair(value) -> tuple[float, float] | None:
    """metrics.json's `ci95` entry, [low, high], or None when it is absent or undefined."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    low, high = (_float(v) for v in value)
    return None if low is None or high is None else (low, high)


def _most_common(reasons: list[str]) -> str:
    return max(set(reasons), key=reasons.count) if reasons else ""


def _float(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value else None  # NaN: undefined

