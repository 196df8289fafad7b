"""Every run folder under a results folder, read through `iqabench.runs` (no model is ever run).

Public for other readers of results (e.g. paper-table suites):

    runs = collect(results)                  # list[Run] (iqabench.runs.Run): manifest and metrics loaded
    ident = identity.identity_of(runs[0])    # what makes a table row (see identity.py)
    mine = select.runs_of(runs, lambda r: r.method == "dog-iqa")   # the runs of one identity
    cells = select.select(runs).cells        # one value per (identity, column), reruns resolved

The files of a run folder and their schema: iqabench/runs.py. A folder without metrics.json is an
unfinished run and is listed as such, never dropped.
"""
from __future__ import annotations

from pathlib import Path

from iqabench.errors import IqaError
from iqabench.runs import Predictions, Run, find_runs

__all__ = ["Predictions", "Run", "collect"]


def collect(results: Path, progress: bool = False) -> list[Run]:
    """Every run folder under `results` (see ResultsLayout.run_dirs), in path order."""
    results = Path(results)
    if not results.is_dir():
        raise IqaError(f"results folder {results} does not exist")
    runs = find_runs(results, progress=progress)
    if not runs:
        raise IqaError(f"no run folder (manifest.json) under {results}: run `iqabench run` first")
    return runs
