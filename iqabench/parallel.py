"""Data-parallel context on torch.distributed (torchrun / accelerate launch set the env vars).

Processes started by SLURM's `srun` without torchrun (SLURM_PROCID and SLURM_STEP_NUM_TASKS set, no
WORLD_SIZE) are ranks too: rank SLURM_PROCID of the step's SLURM_STEP_NUM_TASKS (an sbatch script of
several tasks that runs iqabench without srun is one process the others would wait for: refused),
meeting through a file in the results folder (which every task must see, as it must to share the
records), or through MASTER_ADDR/MASTER_PORT when the user sets them. So
`srun -n 2 iqabench run ...` scores each image once, on either task.

Rank r scores the strided shard r, r+N, ... of what is left to do and writes its own
prediction file; rank 0 merges and computes metrics after every rank is done. The ranks only
exchange control messages (CPU tensors over gloo), never model data, so any launcher works and
NCCL is not needed. A rank that fails writes a flag file the others poll between batches, so
every rank stops with the error instead of waiting for a rank that will never finish.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from pathlib import Path
from typing import Any

# Collectives wait this long: a healthy rank may lag another by a whole shard of a slow model.
# A rank that dies is not waited for: the launcher (torchrun) stops every rank when one exits.
DEFAULT_TIMEOUT_MINUTES = 24 * 60.0
TIMEOUT_VARIABLE = "IQABENCH_DIST_TIMEOUT_MINUTES"  # the user's override of the default


def timeout_minutes(configured: float | None = None) -> float:
    """How long collectives wait: the run's configured value, else the user's
    IQABENCH_DIST_TIMEOUT_MINUTES (read now, not at import), else a day."""
    if configured is not None:
        return float(configured)
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_MINUTES
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        from iqabench.errors import IqaError

        raise IqaError(f"{TIMEOUT_VARIABLE}={text!r}: must be a number of minutes above 0")
    return value

_WORLD: "World | None" = None


@dataclasses.dataclass
class World:
    rank: int = 0
    size: int = 1
    group: Any = None  # the gloo group used for control messages (None: the default group)
    ended_together: bool = False  # every rank passed the last agreement: they may exit together
    local_rank: int = 0  # its place on its machine (LOCAL_RANK, SLURM_LOCALID): which GPU it takes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list) -> list:
        return items[self.rank::self.size]

    def agree_ok(self, ok: bool) -> list[int]:
        """Collective: every rank says whether it succeeded; returns the ranks that failed."""
        if self.size == 1:
            return [] if ok else [0]
        import torch
        import torch.distributed as dist

        flags = torch.zeros(self.size, dtype=torch.int64)
        flags[self.rank] = 0 if ok else 1
        dist.all_reduce(flags, group=self.group)
        self.ended_together = True
        return [r for r in range(self.size) if flags[r].item()]

    def barrier(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    @contextlib.contextmanager
    def main_first(self):
        """Rank 0 runs the block first (it may build files the others then read). If rank 0 fails
        there, the other ranks stop with one line instead of a broken-connection traceback."""
        if self.size == 1:
            yield
            return
        if not self.is_main:
            if self.agree_ok(True):
                from iqabench.errors import IqaError

                raise IqaError("rank 0 failed while preparing the run (see its error above)")
            yield
            return
        try:
            yield
        except BaseException:
            self.agree_ok(False)
            raise
        self.agree_ok(True)


@dataclasses.dataclass(frozen=True)
class Launch:
    """How the launcher placed this process: rank of size, its local rank on the machine, by whom."""

    rank: int
    size: int
    local_rank: int
    by: str  # "torchrun" (WORLD_SIZE and friends) | "slurm" (srun without torchrun) | "none"


def launch() -> Launch:
    """This process's place as its launcher set it in the environment (read now, not at import)."""
    env = os.environ
    if "WORLD_SIZE" in env:  # torchrun, accelerate, or the user: they win over SLURM's own variables
        size = _int_variable("WORLD_SIZE", 1)
        rank = _int_variable("RANK", 0)
        return Launch(rank, size, _int_variable("LOCAL_RANK", rank), "torchrun" if size > 1 else "none")
    if "SLURM_PROCID" not in env:
        return Launch(0, 1, 0, "none")
    from iqabench.errors import IqaError

    if "SLURM_STEP_NUM_TASKS" not in env:  # srun sets it in every task: this is an sbatch script itself
        allocated = _int_variable("SLURM_NTASKS", 1)
        if allocated > 1:  # one process, while the job expects N ranks: refused rather than left waiting
            raise IqaError(f"SLURM_NTASKS={allocated} but this process is not an srun task (an sbatch script runs "
                           f"once): start the {allocated} ranks with `srun iqabench run ...`, or one process "
                           "with `srun -n 1 iqabench run ...`")
        return Launch(0, 1, 0, "none")
    size = _int_variable("SLURM_STEP_NUM_TASKS", 1)
    rank = _int_variable("SLURM_PROCID", 0)
    if size <= 1:
        return Launch(0, 1, 0, "none")
    if not 0 <= rank < size:
        raise IqaError(f"SLURM_PROCID={rank} is not a task of {size} (SLURM_STEP_NUM_TASKS): start the tasks "
                       "with `srun -n N iqabench run ...`, or with torchrun")
    return Launch(rank, size, _int_variable("SLURM_LOCALID", 0), "slurm")


def _int_variable(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        from iqabench.errors import IqaError

        raise IqaError(f"{name}={text!r}: not a whole number (set by the launcher?)") from None


def _slurm_init_method(rendezvous: Path | None) -> str:
    """Where SLURM tasks meet: MASTER_ADDR:MASTER_PORT when the user gives them, else a file named
    after the job, step and restart in the results folder (every task sees it)."""
    env = os.environ
    if env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        return f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    if rendezvous is None:
        from iqabench.errors import IqaError

        raise IqaError("srun tasks need a meeting point: set MASTER_ADDR and MASTER_PORT, or launch with torchrun")
    folder = Path(rendezvous) / ".rendezvous"
    folder.mkdir(parents=True, exist_ok=True)
    tag = "-".join(env.get(v, "0") for v in ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_RESTART_COUNT"))
    return (folder / f"slurm-{tag}").resolve().as_uri()


def current(timeout: float | None = None, rendezvous: Path | None = None) -> World:
    """The world this process belongs to; initialises torch.distributed when launched by torchrun,
    or by srun without torchrun (see the module's text). `timeout`: minutes a collective waits
    (None: see `timeout_minutes`); `rendezvous`: the results folder, where srun tasks meet."""
    global _WORLD
    placed = launch()
    if placed.size <= 1:
        return World()
    import torch.distributed as dist

    wait = datetime.timedelta(minutes=timeout_minutes(timeout))
    group = None
    if not dist.is_initialized():
        if placed.by == "slurm":
            dist.init_process_group("gloo", init_method=_slurm_init_method(rendezvous), rank=placed.rank,
                                    world_size=placed.size, timeout=wait)
        else:
            dist.init_process_group("gloo", timeout=wait)
    elif dist.get_backend() != "gloo":  # e.g. accelerate's NCCL group: control messages stay on CPU
        group = _WORLD.group if _WORLD is not None and _WORLD.group is not None else dist.new_group(backend="gloo", timeout=wait)
    _WORLD = World(rank=dist.get_rank(), size=dist.get_world_size(), group=group, local_rank=placed.local_rank)
    return _WORLD


def shutdown() -> None:
    """End the process group. When every rank passed the last agreement, wait for all of them
    first, so none is stopped by the launcher before it has reported its outcome."""
    global _WORLD
    world, _WORLD = _WORLD, None
    if world is None or world.size == 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if world.ended_together:
        world.barrier()
    dist.destroy_process_group()


def device_for(world: World, device: str) -> str:
    """On CUDA each rank takes its own GPU (LOCAL_RANK, or SLURM_LOCALID under srun)."""
    if device == "cuda" and world.size > 1:
        return f"cuda:{world.local_rank}"
    return device
