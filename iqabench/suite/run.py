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
import time
from pathlib import Path
from typing import Callable, Literal

from iqabench.errors import Busy, IqaError, NotAvailable, one_line
from iqabench.suite.definition import Cell, Suite, Unit
from iqabench.suite.index import RunIndex

Status = Literal["done", "unavailable", "failed", "held"]


@dataclasses.dataclass
class CellOutcome:
    cell: Cell
    status: Status = "done"
    reason: str = ""  # every reason, joined; `reasons` holds them one by one
    reasons: tuple[str, ...] = ()
    ran: int = 0  # units scored (or resumed) now
    reused: int = 0  # units whose complete run was already there
    failures: list[str] = dataclasses.field(default_factory=list)
    held: int = 0  # units another process was computing when this one stopped waiting (--no-wait)

    def settle(self) -> None:
        """The cell's status from what happened to its units."""
        if self.status == "unavailable":
            return
        if self.failures:  # the other splits of a family still ran
            more = f" ({len(self.failures)} of {len(self.cell.units)} splits failed)" if len(self.cell.units) > 1 else ""
            self.status, self.reason = "failed", self.failures[0] + more
            self.reasons = (self.reason,)
        elif self.held:
            self.status, self.reason = "held", "another process is computing it (rerun, or run without --no-wait)"
            self.reasons = (self.reason,)


@dataclasses.dataclass
class SuiteRun:
    suite: Suite
    outcomes: list[CellOutcome]
    limit: int | None = None
    total: int = 0  # computable cells of the suite (this process may take a share of them: --cell)

    def with_status(self, status: Status) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def computed_nothing(self) -> bool:
        """Cells were asked for and none is done or being done by another process."""
        return bool(self.outcomes) and not (self.with_status("done") or self.with_status("held"))


def run_suite(suite: Suite, *, data_root: Path, results: Path, device: str = "auto", limit: int | None = None,
              batch_size: int = 1, allow_cpu: bool = False, progress: bool = True, part: tuple[int, int] | None = None,
              wait: bool = True, poll: float = 1.0, on_log: Callable[[str], None] = print) -> SuiteRun:
    """Train and score every computable cell of `suite` (or this process's share of them, `part` =
    (I, N): every N-th cell from the I-th) that has no complete run yet. A run or checkpoint another
    process holds (its lock) is left for last and waited for (`wait`), or skipped."""
    from iqabench.devices import resolve_device
    from iqabench.suite.plan import share

    device = resolve_device(device)
    every = suite.cells()
    mine = share(every, part)
    outcomes, runnable = [], []
    for k, cell in mine:  # every cell checked before the first runs: what cannot run here is said once, at the end
        reasons = why_not_here(cell, Path(data_root), device, allow_cpu)
        outcomes.append(CellOutcome(cell, "unavailable", "; ".join(reasons), reasons) if reasons else CellOutcome(cell))
        if not reasons:
            runnable.append((k, outcomes[-1]))
    if len(runnable) < len(mine):
        on_log(f"{len(mine) - len(runnable)} of {len(mine)} cell(s) cannot run here (why: in the summary)")
    runner = _Runner(RunIndex(results), dict(data_root=Path(data_root), results=Path(results), device=device,
                                             batch_size=batch_size, limit=limit, progress=progress, on_log=on_log))
    held = []
    for k, outcome in runnable:
        on_log(f"[{k}/{len(every)}] {outcome.cell.name}")
        held += [(outcome, unit) for unit in outcome.cell.units if not runner.unit(outcome, unit)]
    for outcome, unit in held:
        on_log(f"{outcome.cell.name}: {unit.describe()}: another process holds it; "
               + ("waiting for it" if wait else "skipped (--no-wait)"))
    while held and wait:
        time.sleep(poll)
        poll = min(poll * 1.5, 30.0)  # a long wait rereads the results folder less often
        runner.index = RunIndex(results)  # what the other process finished meanwhile
        held = [(o, u) for o, u in held if not runner.unit(o, u)]
    for outcome, _unit in held:
        outcome.held += 1
    for outcome in outcomes:
        outcome.settle()
    return SuiteRun(suite, outcomes, limit, len(every))


class _Runner:
    """Does one unit of a cell: trains its checkpoint if it needs one, then scores it."""

    def __init__(self, index: RunIndex, common: dict):
        self.index = index
        self.common = common
        self.trainings: dict[Path, str | None] = {}  # checkpoint folder -> None (ready) or why it failed
        self.scored: set[str] = set()  # units scored in this suite run (two columns may map to one dataset)

    def unit(self, outcome: CellOutcome, unit: Unit) -> bool:
        """False when another process holds the unit's run or checkpoint (try again later)."""
        cell = outcome.cell
        if outcome.status == "unavailable":  # found out on an earlier unit of the cell
            return True
        stage = "scoring"
        try:
            key = json.dumps([cell.method, cell.fingerprint_options, dataclasses.astuple(unit)], sort_keys=True)
            if key in self.scored or (self.common["limit"] is None and self.index.best(cell, unit)[0] is not None):
                outcome.reused += 1
                return True
            if unit.train_dataset is not None:
                stage = f"training on {unit.train_dataset}/{unit.train_split}"
                _ensure_trained(cell, unit, self.trainings, **self.common)
                stage = "scoring"
            _score(cell, unit, **self.common)
            self.scored.add(key)
            outcome.ran += 1
        except Busy:
            return False
        except NotAvailable as exc:
            outcome.status, outcome.reason = "unavailable", one_line(exc, typed=True)
            outcome.reasons = (outcome.reason,)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one cell's failure must not stop the suite
            outcome.failures.append(f"{unit.describe()}: {stage}: {one_line(exc, typed=True)}")
            self.common["on_log"](f"  failed: {outcome.failures[-1]}")
        return True


def why_not_here(cell: Cell, data_root: Path, device: str, allow_cpu: bool) -> tuple[str, ...]:
    """Why this cell cannot run on this machine, each reason on its own; checked without building
    anything: the options the suite needs given, then the engine's check of each unit's run (its
    method, its data; iqabench.readiness) and the suite's GPU rule."""
    from iqabench import registry
    from iqabench.config import RunConfig
    from iqabench.readiness import why_not_runnable

    reasons = [f"needs -o {k}=... ({' '.join(what.split())})" for k, what in cell.row.needs.items()
               if cell.options.get(k) in (None, "")]
    for unit in cell.units:  # a checkpoint is trained by the suite, so only presence is asked
        cfg = RunConfig(method=cell.method, dataset=unit.dataset, split=unit.split, part=unit.part,
                        options=cell.options, data_root=data_root, train_dataset=unit.train_dataset)
        reasons += why_not_runnable(cfg, read_data=False)
    unavailable = any(r.startswith(f"method {cell.method} cannot run here:") for r in reasons)
    if not unavailable and registry.methods.get(cell.method).info.needs_gpu and device == "cpu" and not allow_cpu:
        # a method that cannot run at all is not also said to need a GPU: one line per method
        reasons.append(f"method {cell.method} needs a GPU (device is cpu; --allow-cpu runs it anyway)")
    return tuple(dict.fromkeys(reasons))


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
    except (NotAvailable, Busy):  # not this checkpoint's failure: it cannot run here, or another process trains it
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
    """What was done (a line per cell), then per distinct reason a cell is not done, one line with the
    count of cells it affects (one reason often covers a whole row or column)."""
    mine = len(result.outcomes)
    lines = [f"suite {result.suite.name}: {result.total} computable cell(s)"
             + (f", {mine} of them in this share (--cell)" if mine != result.total else "")]
    done = result.with_status("done")
    ran = sum(o.ran for o in done)
    reused = sum(o.reused for o in done)
    lines.append(f"done: {len(done)} cell(s) ({ran} run(s) now, {reused} already complete)")
    for o in done:
        lines.append(f"  {o.cell.name}")
    if result.limit is not None:
        lines.append(f"  (--limit {result.limit}: smoke tests; these runs never fill the suite table)")
    for status, title in (("unavailable", "cannot run here"), ("failed", "failed"), ("held", "not waited for")):
        group = result.with_status(status)
        if group:
            lines.append(f"{title}: {len(group)} cell(s)")
            by_reason: dict[str, list[str]] = {}
            for o in group:  # a cell missing both its method and its data counts under each
                for reason in o.reasons:
                    by_reason.setdefault(reason, []).append(o.cell.name)
            lines += [f"  {reason} ({_cells(names)})" for reason, names in by_reason.items()]
    if result.computed_nothing:
        lines.append(f"nothing computed: none of the {mine} cell(s) is done (reasons above)")
    return lines


def _cells(names: list[str], shown: int = 3) -> str:
    more = f", and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} cell(s): {', '.join(names[:shown])}{more}"
