"""What a reader must know about each table column and row to read its numbers: exactly which
split(s) a column holds, its n, what its labels are; which rows are full-reference methods, and
which cells score the labels' own definition.

A column of a seeded protocol is named by the seeds it holds (`byref-ratio60-20-20-seed42` for one,
`ratio80-0-20-seed{1..10}` for ten), never `seed*`. Run folders written before the manifest
recorded `method_full_reference` and `label_method` are answered from the registry (the method's
info, the dataset's card) when those are installed; otherwise as not known.
"""
from __future__ import annotations

import dataclasses

from iqabench.errors import IqaError
from iqabench.report.identity import protocol_of
from iqabench.runs import Run


def splits_text(splits) -> str:
    """['a-seed1', 'a-seed2', 'a-seed3', 'a-seed5'] -> 'a-seed{1..3,5}'; one split -> its name."""
    splits = sorted(set(splits), key=lambda s: (protocol_of(s)[0], protocol_of(s)[1] or -1, s))
    if len(splits) == 1:
        return splits[0]
    parsed = [protocol_of(s) for s in splits]
    protocols = {p for p, _ in parsed}
    if len(protocols) == 1 and all(seed is not None for _, seed in parsed):
        return f"{protocols.pop()}-seed{{{_ranges(sorted(seed for _, seed in parsed))}}}"
    return ", ".join(splits)


def _ranges(numbers: list[int]) -> str:
    parts, start = [], None
    for i, n in enumerate(numbers):
        start = n if start is None else start
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(n) if start == n else f"{start}..{n}")
            start = None
    return ",".join(parts)


def full_reference(run: Run) -> bool:
    """Whether the run's method compares each image with its reference (a full-reference metric)."""
    recorded = run.manifest.get("method_full_reference")
    if recorded is not None:
        return bool(recorded)
    from iqabench import registry

    try:
        return bool(registry.methods.get(run.method).info.needs_reference)
    except (IqaError, ImportError, AttributeError):  # a method not installed here: not known, not marked
        return False


def label_method(run: Run) -> str | None:
    """The method whose scores are the run's labels (a card's `label_method`), or None."""
    if "label_method" in run.manifest:
        return run.manifest["label_method"]
    from iqabench import registry

    try:
        return registry.datasets.get(run.dataset).label_method
    except (IqaError, ImportError, AttributeError):
        return None


def scores_its_labels(run: Run) -> bool:
    """The run's method is the one that computed the labels: its correlation measures nothing."""
    named = label_method(run)
    if not named:
        return False
    if named.casefold() == run.method.casefold():
        return True
    from iqabench import registry

    try:  # an alias of the same method (`fsim` for `pyiqa:fsim`)
        return registry.methods.get(named).name == registry.methods.get(run.method).name
    except (IqaError, ImportError, AttributeError):
        return False


@dataclasses.dataclass(frozen=True)
class ColumnFacts:
    splits: str  # exactly the split(s) the column holds
    n_splits: int
    n: str  # scored images per run: "120", or "118-120" when the rows differ
    labels: str  # what the labels are: "MOS", "DMOS, lower is better", "fsim computed by pyiqa:fsim ..."

    def sentence(self, title: str, part: str) -> str:
        per = " per split" if self.n_splits > 1 else ""
        return f"{title}: split {self.splits}, {part} part, n = {self.n}{per}, labels {self.labels}"


def column_facts(runs: list[Run]) -> ColumnFacts:
    """The facts of one column from the runs its cells use."""
    from iqabench.report.plots import label_axis_title

    splits = sorted({r.split for r in runs})
    counts = sorted({int(n) for r in runs if (n := (r.metrics or {}).get("n_scored")) is not None})
    n = "?" if not counts else str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    first = runs[0]
    labels = label_axis_title(first)
    computed = label_method(first)
    if computed:
        labels += f", computed by {computed} (not human opinion)"
    return ColumnFacts(splits_text(splits), len(splits), n, labels)
