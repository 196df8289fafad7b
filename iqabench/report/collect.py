"""Find finished runs under a results folder and turn them into table rows.

One row per (method_label, dataset, split, part). When several runs share that key the most
recent complete one is kept (a partial run only when no complete one exists) and a note says so.
Runs whose split names differ only by the seed (`ratio80-0-20-seed1` .. `seed10`, and the
`byref-` variants) are then folded into one row holding the median over seeds: the PromptIQA
protocol. A metric that is undefined (null) in any seed stays undefined in the median.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from iqabench.errors import IqaError

METRICS = ("srcc", "krcc", "plcc", "plcc_raw", "rmse")
CI_METRICS = ("srcc", "krcc", "plcc_raw")
_REQUIRED = ("method_label", "dataset", "split", "part")
_SEEDED = re.compile(r"^(?P<protocol>(?:byref-)?ratio\d+-\d+-\d+)-seed(?P<seed>\d+)$")


@dataclasses.dataclass
class Run:
    """One run folder: its metrics.json as written by the runner, plus where it lives."""

    run_dir: Path
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    mtime: float

    @property
    def key(self) -> tuple[str, str, str, str]:
        m = self.metrics
        return (m["method_label"], m["dataset"], m["split"], m["part"])

    @property
    def time(self) -> float:
        """When the run ended: metrics.json's `created` (ISO 8601), else the file's modification time."""
        created = self.metrics.get("created")
        if isinstance(created, str):
            try:
                return datetime.datetime.fromisoformat(created).timestamp()
            except ValueError:
                pass  # not a timestamp we can read: fall back to the file time
        return self.mtime

    @property
    def complete(self) -> bool:
        return self.metrics.get("status") == "complete"


@dataclasses.dataclass
class Row:
    """One cell group of the comparison table: a single run or the median over seeded splits."""

    method: str
    method_label: str
    dataset: str
    split: str  # the split name, or `<protocol>-seed*` for a median over seeds
    part: str
    values: dict[str, float | None]  # METRICS, null kept as None
    ci95: dict[str, list[float] | None]  # empty for a median over seeds
    n: int | None
    n_failed: int | None
    n_scored: int | None
    status: str
    runs: list[Run]
    seeds: list[int] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    undefined_reason: str | None = None

    @property
    def n_splits(self) -> int:
        return len(self.runs)

    @property
    def aggregated(self) -> bool:
        return bool(self.seeds)

    @property
    def decreasing_fit(self) -> bool:
        """Some run behind this row has a falling logistic: its PLCC after the fit hides the sign."""
        return any(decreasing_fit(r.metrics) for r in self.runs)

    @property
    def column(self) -> tuple[str, str, str]:
        return (self.dataset, self.split, self.part)


def find_runs(results_dir: Path) -> list[Run]:
    """Every run folder (one holding metrics.json) under `results_dir`, in path order."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise IqaError(f"results folder {results_dir} does not exist")
    runs = [_read_run(path) for path in sorted(results_dir.rglob("metrics.json"))]
    if not runs:
        raise IqaError(f"no metrics.json under {results_dir}: run `iqabench run` first")
    return runs


def _read_run(metrics_path: Path) -> Run:
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise IqaError(f"{metrics_path}: cannot read metrics ({exc})") from exc
    if not isinstance(metrics, dict):
        raise IqaError(f"{metrics_path}: expected a JSON object")
    missing = [k for k in _REQUIRED if not metrics.get(k)]
    if missing:
        raise IqaError(f"{metrics_path}: missing field(s) {', '.join(missing)}")
    manifest_path = metrics_path.parent / "manifest.json"
    manifest: dict[str, Any] = {}
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise IqaError(f"{manifest_path}: cannot read manifest ({exc})") from exc
    return Run(metrics_path.parent, metrics, manifest, metrics_path.stat().st_mtime)


def pick_latest(runs: list[Run]) -> tuple[list[Run], dict[tuple, list[str]]]:
    """One run per key: the most recent complete one, else the most recent partial one.

    Recency is the `created` time the runner writes into metrics.json when a run ends, else the
    file's modification time.
    Returns the kept runs and, per key, notes naming what was set aside.
    """
    by_key: dict[tuple, list[Run]] = {}
    for run in runs:
        by_key.setdefault(run.key, []).append(run)
    kept, notes = [], {}
    for key, group in by_key.items():
        group.sort(key=lambda r: (r.complete, r.time, r.mtime, str(r.run_dir)), reverse=True)
        best = group[0]
        kept.append(best)
        if len(group) > 1:
            others = ", ".join(f"{r.run_dir.name} ({'complete' if r.complete else 'partial'})"
                               for r in group[1:])
            why = "most recent complete run" if best.complete else "no complete run; most recent partial run"
            notes[key] = [f"{len(group)} runs found; kept {best.run_dir.name} ({why}); set aside: {others}"]
            hashes = {r.metrics.get("split_hash") for r in group}
            if len(hashes) > 1:
                notes[key].append("the runs disagree on the split hash: the dataset changed between them")
    return kept, notes


def collect(results_dir: Path) -> list[Row]:
    """Table rows for every run under `results_dir`, seeded splits folded into medians."""
    kept, notes = pick_latest(find_runs(results_dir))
    singles: list[Row] = []
    seeded: dict[tuple, list[tuple[int, Run]]] = {}
    for run in kept:
        method_label, dataset, split, part = run.key
        match = _SEEDED.match(split)
        if match:
            group_key = (method_label, dataset, f"{match['protocol']}-seed*", part)
            seeded.setdefault(group_key, []).append((int(match["seed"]), run))
        else:
            singles.append(_single_row(run, notes.get(run.key, [])))
    medians = []
    for key, members in seeded.items():
        if len(members) == 1:  # one seeded split is a plain run, not a median
            run = members[0][1]
            singles.append(_single_row(run, notes.get(run.key, [])))
        else:
            medians.append(_median_row(key, members, notes))
    rows = singles + medians
    rows.sort(key=lambda r: (r.dataset, r.split, r.part, r.method_label))
    return rows


def _single_row(run: Run, notes: list[str]) -> Row:
    m = run.metrics
    return Row(
        method=m.get("method", run.manifest.get("method", "")),
        method_label=m["method_label"], dataset=m["dataset"], split=m["split"], part=m["part"],
        values={k: _number(m.get(k)) for k in METRICS},
        ci95={k: (m.get("ci95") or {}).get(k) for k in CI_METRICS},
        n=m.get("n"), n_failed=m.get("n_failed"), n_scored=m.get("n_scored"),
        status=m.get("status", "unknown"), runs=[run], notes=list(notes) + _missing_notes(m) + _fit_notes(m),
        undefined_reason=m.get("undefined_reason"))


def _median_row(key: tuple, members: list[tuple[int, Run]], notes: dict[tuple, list[str]]) -> Row:
    method_label, dataset, split, part = key
    members.sort(key=lambda sr: sr[0])
    seeds = [s for s, _ in members]
    runs = [r for _, r in members]
    values: dict[str, float | None] = {}
    row_notes = [f"median over {len(runs)} split(s), seeds {_ranges(seeds)}"]
    undefined: dict[int, list[str]] = {}
    for metric in METRICS:
        per_seed = [_number(r.metrics.get(metric)) for r in runs]
        count = sum(v is None for v in per_seed)
        if count:
            values[metric] = None
            undefined.setdefault(count, []).append(metric)
        else:
            values[metric] = float(np.median(per_seed))
    row_notes += [f"{', '.join(metrics)} undefined in {count} of {len(runs)} split(s)"
                  for count, metrics in undefined.items()]
    decreasing = sum(decreasing_fit(r.metrics) for r in runs)
    if decreasing:
        row_notes.append(f"decreasing logistic fit in {decreasing} of {len(runs)} split(s): "
                         "PLCC after the fit is positive there although the method ranks backwards")
    missing = _sum(r.metrics.get("n_missing") or 0 for r in runs)
    if missing:
        row_notes.append(f"{missing} image(s) not scored yet over the splits (runs not finished)")
    for run in runs:
        row_notes += notes.get(run.key, [])
    statuses = {r.metrics.get("status", "unknown") for r in runs}
    methods = {r.metrics.get("method", "") for r in runs}
    reasons = sorted({r.metrics["undefined_reason"] for r in runs if r.metrics.get("undefined_reason")})
    return Row(
        method=methods.pop() if len(methods) == 1 else ";".join(sorted(methods)),
        method_label=method_label, dataset=dataset, split=split, part=part,
        values=values, ci95={},
        n=_sum(r.metrics.get("n") for r in runs), n_failed=_sum(r.metrics.get("n_failed") for r in runs),
        n_scored=_sum(r.metrics.get("n_scored") for r in runs),
        status="complete" if statuses == {"complete"} else "partial", runs=runs, seeds=seeds,
        notes=row_notes, undefined_reason="; ".join(reasons) or None)


def decreasing_fit(metrics: dict[str, Any]) -> bool:
    """True when the recorded logistic falls (b1 < b2): it then maps a backwards ranking onto a
    positive PLCC, so the sign of the relation is only visible in SRCC and raw PLCC."""
    params = metrics.get("logistic_params")
    return bool(params) and len(params) == 4 and params[0] < params[1]


def _missing_notes(metrics: dict[str, Any]) -> list[str]:
    missing = metrics.get("n_missing")
    return [f"{missing} image(s) not scored yet (run not finished)"] if missing else []


def _fit_notes(metrics: dict[str, Any]) -> list[str]:
    if not decreasing_fit(metrics):
        return []
    raw = _number(metrics.get("plcc_raw"))
    raw_text = "undefined" if raw is None else f"{raw:.3f}"
    return [(f"decreasing logistic fit (b1 < b2): PLCC after the fit is positive although the method "
             f"ranks backwards; raw PLCC {raw_text}")]


def _number(value: Any) -> float | None:
    """A metric value as float; None (JSON null) and NaN both mean undefined."""
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value


def _sum(values) -> int | None:
    values = list(values)
    return None if any(v is None for v in values) else int(sum(values))


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3,5'."""
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ",".join(parts)
