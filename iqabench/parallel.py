"""Data-parallel context on torch.distributed (torchrun / accelerate launch set the env vars).

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


def current(timeout: float | None = None) -> World:
    """The world this process belongs to; initialises torch.distributed when launched by torchrun.
    `timeout`: minutes a collective waits (None: see `timeout_minutes`)."""
    global _WORLD
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    import torch.distributed as dist

    wait = datetime.timedelta(minutes=timeout_minutes(timeout))
    group = None
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=wait)
    elif dist.get_backend() != "gloo":  # e.g. accelerate's NCCL group: control messages stay on CPU
        group = _WORLD.group if _WORLD is not None and _WORLD.group is not None else dist.new_group(backend="gloo", timeout=wait)
    _WORLD = World(rank=dist.get_rank(), size=dist.get_world_size(), group=group)
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
    """On CUDA each rank takes its own GPU (LOCAL_RANK)."""
    if device == "cuda" and world.size > 1:
        return f"cuda:{os.environ.get('LOCAL_RANK', world.rank)}"
    return device
