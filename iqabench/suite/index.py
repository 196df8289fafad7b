"""The runs of a suite cell: `RunIndex` finds, among the run folders iqabench.runs reads, the runs of
exactly a cell's method, full option fingerprint, dataset, split, part and training source. Both
`suite run` (what is left to do) and the suite table (what fills a cell) match through it."""
from __future__ import annotations

from pathlib import Path

from iqabench.runs import Run, find_runs
from iqabench.suite.definition import Cell, Unit


class RunIndex:
    """Every run folder under a results folder (iqabench.runs.find_runs), by column; an unreadable
    one is left out and said once (`problems`)."""

    def __init__(self, results: Path):
        self.results = Path(results)
        self.problems: list[str] = []
        self._by_column: dict[tuple, list[Run]] = {}
        for run in find_runs(self.results, self.problems):
            self._by_column.setdefault((run.dataset, run.split, run.part), []).append(run)

    def candidates(self, cell: Cell, unit: Unit) -> list[Run]:
        """Runs of exactly this method, options, column and training source, whatever their state."""
        fingerprint = {"method": cell.method, "options": cell.fingerprint_options}
        return [run for run in self._by_column.get((unit.dataset, unit.split, unit.part), [])
                if run.method == cell.method and run.fingerprint == fingerprint
                and _trained_as(run.checkpoint, unit, cell.seed)]

    def best(self, cell: Cell, unit: Unit) -> tuple[Run | None, str]:
        """The most recent usable run, or None and why there is none."""
        found = self.candidates(cell, unit)
        usable = sorted((r for r in found if r.usable), key=lambda r: (r.time, str(r.run_dir)))
        if usable:
            return usable[-1], ""
        if not found:
            return None, "no run"
        if all(r.smoke_test for r in found):
            return None, "only --limit (smoke-test) runs"
        states = sorted({r.state for r in found if not r.smoke_test})
        return None, f"run not complete ({', '.join(states)})"


def _trained_as(checkpoint: dict | None, unit: Unit, seed: int) -> bool:
    if unit.train_dataset is None:  # zero-shot, or published weights the options name
        return checkpoint is None or checkpoint.get("kind") == "external"
    if not checkpoint or checkpoint.get("kind") != "trained":
        return False
    on = checkpoint.get("trained_on") or {}
    return (on.get("dataset"), on.get("split"), on.get("seed")) == (unit.train_dataset, unit.train_split, seed)

