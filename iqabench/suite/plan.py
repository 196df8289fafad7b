"""Which cells of a suite one process takes (`--cell I/N`: every N-th cell from the I-th), and the
commands that hand a suite to a scheduler: one resumable `suite run --cell I/N` per cell, all on
one shared results folder. Two processes on one folder never compute one run twice: a run or a
checkpoint another process holds is waited for (iqabench.suite.run)."""
from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from iqabench.errors import IqaError
from iqabench.suite.definition import Cell


def parse_part(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8): the 2nd of 8 shares (1-based, as SLURM's --array=1-8 counts)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise IqaError(f"--cell {text}: expected I/N with 1 <= I <= N (e.g. 1/4: the cells 1, 5, 9, ...)")
    return int(match[1]), int(match[2])


def share(cells: Sequence[Cell], part: tuple[int, int] | None) -> list[tuple[int, Cell]]:
    """(position from 1, cell) of the cells the share `part` takes; every cell without one."""
    i, n = part or (1, 1)
    return [(k, cell) for k, cell in enumerate(cells, 1) if (k - 1) % n == i - 1]


def cell_commands(suite: str, n_cells: int, args: Sequence[str]) -> list[str]:
    """One shell command per cell: `iqabench suite run SUITE --cell K/N ARGS...` for K = 1..N."""
    return [shlex.join(["iqabench", "suite", "run", suite, "--cell", f"{k}/{n_cells}", *args])
            for k in range(1, n_cells + 1)]
