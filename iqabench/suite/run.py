"""Run a paper-table suite: train what needs training, score every cell that is missing, and say
what could not run here and what failed.

Both stages are the ordinary resumable ones (`iqabench.train.train`, `iqabench.run.run`), so a
rerun does only what is left: a cell whose complete run is already under the results folder is
not touched, a finished checkpoint is not refitted. A cell that fails is recorded and the suite
goes on.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Literal

from iqabench.errors import IqaError, NotAvailable, one_line
from iqabench.suite.definition import Cell, Suite, Unit
from iqabench.suite.index import RunIndex

Status = Literal["done", "unavailable", "failed"]


@dataclasses.dataclass
class CellOutcome:
    cell: Cell
    status: Status
    reason: str = ""
    ran: int = 0  # units scored (or resumed) now
    reused: int = 0  # units whose complete run was already there


@dataclasses.dataclass
class SuiteRun:
    suite: Suite
    outcomes: list[CellOutcome]
    limit: int | None = None

    def with_status(self, status: Status) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == status]


def run_suite(suite: Suite, *, data_root: Path, results: Path, device: str = "auto", limit: int | None = None,
              batch_size: int = 1, allow_cpu: bool = False, progress: bool = True,
              on_log: Callable[[str], None] = print) -> SuiteRun:
    """Train and score every computable cell of `suite` that has no complete run yet."""
    from iqabench.devices import resolve_device

    device = resolve_device(device)
    index = RunIndex(results)
    trainings: dict[Path, str | None] = {}  # checkpoint folder -> None (ready) or why it failed
    scored: set[str] = set()  # units scored in this suite run (two columns may map to one dataset)
    cells = suite.cells()
    outcomes = []
    for i, cell in enumerate(cells, 1):
        on_log(f"[{i}/{len(cells)}] {cell.name}")
        reason = why_not_here(cell, Path(data_root), device, allow_cpu)
        if reason:
            on_log(f"  cannot run here: {reason}")
            outcomes.append(CellOutcome(cell, "unavailable", reason))
            continue
        outcome = CellOutcome(cell, "done")
        failures: list[str] = []
        common = dict(data_root=Path(data_root), results=Path(results), device=device, batch_size=batch_size,
                      limit=limit, progress=progress, on_log=on_log)
        for unit in cell.units:
            stage = "scoring"
            try:
                key = json.dumps([cell.method, cell.fingerprint_options, dataclasses.astuple(unit)], sort_keys=True)
                if key in scored or (limit is None and index.best(cell, unit)[0] is not None):
                    outcome.reused += 1
                    continue
                if unit.train_dataset is not None:
                    stage = f"training on {unit.train_dataset}/{unit.train_split}"
                    _ensure_trained(cell, unit, trainings, **common)
                    stage = "scoring"
                _score(cell, unit, **common)
                scored.add(key)
                outcome.ran += 1
            except NotAvailable as exc:
                outcome.status, outcome.reason = "unavailable", one_line(exc, typed=True)
                break
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one cell's failure must not stop the suite
                failures.append(f"{unit.describe()}: {stage}: {one_line(exc, typed=True)}")
                on_log(f"  failed: {failures[-1]}")
        if failures and outcome.status == "done":  # the other splits of a family still ran
            more = f" ({len(failures)} of {len(cell.units)} splits failed)" if len(cell.units) > 1 else ""
            outcome.status, outcome.reason = "failed", failures[0] + more
        outcomes.append(outcome)
    return SuiteRun(suite, outcomes, limit)


def why_not_here(cell: Cell, data_root: Path, device: str, allow_cpu: bool) -> str | None:
    """Why this cell cannot run on this machine (method or data missing), checked without building anything."""
    from iqabench import registry
    from iqabench.plan import resolve_method

    choice = resolve_method(cell.method, cell.options)
    reasons = []
    missing = choice.cls.check_available(choice.options)
    if missing:
        reasons.append(f"method {cell.method} not available: {missing}")
    elif choice.cls.info.needs_gpu and device == "cpu" and not allow_cpu:
        reasons.append(f"method {cell.method} needs a GPU (device is cpu; --allow-cpu runs it anyway)")
    datasets = [u.dataset for u in cell.units] + [u.train_dataset for u in cell.units if u.train_dataset]
    for name in dict.fromkeys(datasets):
        card = registry.datasets.get(name)
        if card.build is None and card.locate(data_root) is None:
            reasons.append(f"dataset {name} not found under {data_root}")
    return "; ".join(reasons) or None


def _ensure_trained(cell: Cell, unit: Unit, trainings: dict, *, data_root, results, device, batch_size, limit,
                    progress, on_log) -> None:
    """Train the unit's checkpoint unless a finished one exists; one attempt per checkpoint per suite run."""
    from iqabench.plan import build_train_plan
    from iqabench.train import TrainConfig, train

    cfg = TrainConfig(method=cell.method, dataset=unit.train_dataset, split=unit.train_split, options=cell.options,
                      data_root=data_root, results=results, device=device, seed=cell.seed,  # recipe batch
                      limit=limit, progress=progress)
    workdir = build_train_plan(cfg).workdir
    if workdir in trainings:
        if trainings[workdir] is not None:
            raise IqaError(f"training failed earlier in this suite run: {trainings[workdir]}")
        return
    if (workdir / "train_summary.json").is_file():
        trainings[workdir] = None
        return
    try:
        train(cfg, on_log=on_log)
    except NotAvailable:
        raise
    except Exception as exc:
        trainings[workdir] = one_line(exc, typed=True)
        raise
    trainings[workdir] = None


def _score(cell: Cell, unit: Unit, *, data_root, results, device, batch_size, limit, progress, on_log) -> None:
    from iqabench.run import RunConfig, run

    cross = unit.train_dataset is not None and (unit.train_dataset, unit.train_split) != (unit.dataset, unit.split)
    cfg = RunConfig(method=cell.method, dataset=unit.dataset, split=unit.split, part=unit.part, options=cell.options,
                    data_root=data_root, results=results, limit=limit, batch_size=batch_size, device=device,
                    seed=cell.seed, train_dataset=unit.train_dataset if cross else None,
                    train_split=unit.train_split if cross else None, progress=progress)
    run(cfg, on_log=on_log)


def summary_lines(result: SuiteRun) -> list[str]:
    """What was done, what cannot run here (and why), what failed: one line per cell."""
    lines = [f"suite {result.suite.name}: {len(result.outcomes)} computable cell(s)"]
    done = result.with_status("done")
    ran = sum(o.ran for o in done)
    reused = sum(o.reused for o in done)
    lines.append(f"done: {len(done)} cell(s) ({ran} run(s) now, {reused} already complete)")
    for o in done:
        lines.append(f"  {o.cell.name}")
    if result.limit is not None:
        lines.append(f"  (--limit {result.limit}: smoke tests; these runs never fill the suite table)")
    for status, title in (("unavailable", "cannot run here"), ("failed", "failed")):
        group = result.with_status(status)
        if group:
            lines.append(f"{title}: {len(group)} cell(s)")
            by_reason: dict[str, list[str]] = {}
            for o in group:
                by_reason.setdefault(o.reason, []).append(o.cell.name)
            for reason, names in by_reason.items():  # one reason often covers a whole row or column
                lines.append(f"  {reason}")
                lines.append(f"    {len(names)} cell(s): {', '.join(names)}")
    return lines
