"""A suite on a scheduler: `suite plan --print-commands` gives one resumable command per cell on one
shared results folder, `suite run --cell I/N` processes run side by side on that folder, and a
`suite run` that meets a run another process holds waits for it (or skips it) instead of failing."""
from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from iqabench.cli.main import cli
from iqabench.errors import IqaError
from iqabench.suite import load_suite
from iqabench.suite.plan import parse_part, share
from iqabench.suite.table import render

PLUGINS = Path(__file__).parent / "plugins"
TIMEOUT = 600  # seconds a subprocess may take on a loaded machine

# Two rows with one method and the same options: their cells on a column are one run, so the two
# shares below (cells 1, 3, 5 and 2, 4, 6) meet on every run.
SUITE = """
kind = "paper-table"
title = "cells"
metrics = ["srcc"]
[source]
paper = "p"
table = "T"
[protocol]
split = "all"
[[columns]]
key = "all"
label = "All"
dataset = "tiny"
[[columns]]
key = "one"
label = "Seed 1"
dataset = "tiny"
split = "byref-ratio34-33-33-seed1"
[[columns]]
key = "two"
label = "Seed 2"
dataset = "tiny"
split = "byref-ratio34-33-33-seed2"
[[rows]]
label = "Sharp A"
method = "slow-sharpness"
options = { delay = 0.02 }
[rows.published]
all = { srcc = 0.5 }
[[rows]]
label = "Sharp B"
method = "slow-sharpness"
options = { delay = 0.02 }
"""


@pytest.fixture
def suite_file(tmp_path) -> Path:
    path = tmp_path / "cells.toml"
    path.write_text(SUITE)
    return path


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), env.get("PYTHONPATH")]))
    return env


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "iqabench.cli.main", "--plugin", str(PLUGINS / "tiny_dataset_plugin.py"),
            "--plugin", str(PLUGINS / "slow_method.py"), *args]


def _scored_once(results: Path) -> None:
    """Every run folder holds each image's record once (no image was scored by both processes)."""
    files = list(results.rglob("predictions.jsonl"))
    assert files
    for path in files:
        ids = [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]
        assert len(ids) == len(set(ids)), path


def test_a_share_takes_every_nth_cell_and_a_bad_one_is_one_line(suite_file):
    cells = load_suite(suite_file).cells()
    assert [k for k, _ in share(cells, (1, 2))] == [1, 3, 5]
    assert [k for k, _ in share(cells, (2, 4))] == [2, 6]
    assert sorted(k for i in (1, 2, 3) for k, _ in share(cells, (i, 3))) == [1, 2, 3, 4, 5, 6]
    for bad in ("0/2", "3/2", "1", "a/b"):
        with pytest.raises(IqaError, match=f"--cell {bad}: expected I/N"):
            parse_part(bad)


def test_printed_commands_one_per_cell_on_one_results_folder_fill_the_table(suite_file, tiny_root, tmp_path):
    results = tmp_path / "shared-results"
    plan = ["suite", "plan", str(suite_file), "--data-root", str(tiny_root), "--results", str(results),
            "--print-commands"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(plan, standalone_mode=False) in (0, None)
    lines = out.getvalue().splitlines()
    assert len(lines) == 6
    for k, line in enumerate(lines, 1):
        words = shlex.split(line)
        assert words[:4] == ["iqabench", "suite", "run", str(suite_file)]
        assert words[words.index("--cell") + 1] == f"{k}/6"
        assert words[words.index("--results") + 1] == str(results.resolve())
    for line in lines:  # each command as a scheduler task would run it (here in turn, in this process)
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli.main(shlex.split(line)[1:], standalone_mode=False) == 0
    table = render(load_suite(suite_file), results, tmp_path / "out")
    assert table.missing == 0 and len(list(results.rglob("metrics.json"))) == 3


def test_two_cell_shares_at_once_on_one_results_folder_complete_the_table(suite_file, tiny_root, tmp_path):
    results = tmp_path / "results"
    procs = [subprocess.Popen(_command("suite", "run", str(suite_file), "--cell", f"{i}/2", "--data-root",
                                       str(tiny_root), "--results", str(results), "--no-progress"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
             for i in (1, 2)]
    outs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    for proc, out in zip(procs, outs):
        assert proc.returncode == 0, out
        assert "lock held" not in out and "failed" not in out, out
        assert "3 computable cell(s)" not in out and "6 computable cell(s), 3 of them in this share" in out
    table = render(load_suite(suite_file), results, tmp_path / "out")
    assert table.missing == 0
    assert all(e.ours is not None for e in table.entries.values() if e.computed)
    _scored_once(results)


def _lines(proc) -> queue.Queue:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout] + [lines.put(None)],
                     daemon=True).start()
    return lines


def _read_until(lines: queue.Queue, text: str) -> str:
    seen = ""
    while text not in seen:
        line = lines.get(timeout=TIMEOUT)
        assert line is not None, f"ended before printing {text!r}:\n{seen}"
        seen += line
    return seen


@pytest.fixture
def held_run(suite_file, tiny_root, tmp_path):
    """A helper process holding the run lock of the suite's first run (as a process scoring it would),
    until the test lets go of it."""
    from iqabench.plan import build_run_plan
    from iqabench.run import RunConfig

    [cell] = [c for c in load_suite(suite_file).cells() if c.column.key == "all"][:1]
    [unit] = cell.units
    results = tmp_path / "results"
    run_dir = build_run_plan(RunConfig(method=cell.method, dataset=unit.dataset, split=unit.split, part=unit.part,
                                       options=cell.options, data_root=tiny_root, results=results)).run_dir
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import filelock, sys; lock = filelock.FileLock(sys.argv[1], timeout=0); "
         "lock.acquire(); print('held', flush=True); sys.stdin.read()", str(run_dir / ".lock.rank0")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    yield results, holder
    holder.kill()
    holder.wait()


def test_a_second_suite_run_waits_for_the_run_another_process_holds(suite_file, tiny_root, held_run, tmp_path):
    results, holder = held_run
    proc = subprocess.Popen(_command("suite", "run", str(suite_file), "--data-root", str(tiny_root), "--results",
                                     str(results), "--no-progress"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    lines = _lines(proc)
    seen = _read_until(lines, "another process holds it; waiting for it")
    assert proc.poll() is None  # still waiting while the lock is held
    holder.stdin.close()  # the other process ends: its lock is free
    assert proc.wait(timeout=TIMEOUT) == 0
    while (line := lines.get(timeout=TIMEOUT)) is not None:
        seen += line
    assert "lock held" not in seen and "failed" not in seen, seen
    assert "done: 6 cell(s)" in seen
    assert render(load_suite(suite_file), results, tmp_path / "out").missing == 0


def test_with_no_wait_a_held_run_is_skipped_not_failed(suite_file, tiny_root, held_run, tmp_path):
    results, _holder = held_run
    done = subprocess.run(_command("suite", "run", str(suite_file), "--data-root", str(tiny_root), "--results",
                                   str(results), "--no-progress", "--no-wait"),
                          capture_output=True, text=True, env=_env(), timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lock held" not in done.stdout and "failed" not in done.stdout
    assert "not waited for: 2 cell(s)" in done.stdout  # the two rows' cells on the held run
    assert "done: 4 cell(s)" in done.stdout
    assert render(load_suite(suite_file), results, tmp_path / "out").missing == 2
