"""The console script ends the process without interpreter teardown (cli/fast_exit.py), and keeps
everything the ordinary exit gives: exit codes, all of stdout, exit handlers, waiting for threads,
and the output of a profiler."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

# A plugin that leaves a mark from each of the three things an exit can run or skip: an exit
# handler (must run), a module global's finaliser (runs only in the teardown that is skipped) and a
# thread that is still working when the command returns (must be waited for).
PLUGIN = textwrap.dedent("""
    import atexit, os, threading, time
    MARKS = os.environ["MARKS"]

    def mark(name):
        with open(os.path.join(MARKS, name), "w") as f:
            f.write("x")

    atexit.register(mark, "atexit")

    class Finalised:  # names bound now: the teardown may already have cleared this module's globals
        def __del__(self, _open=open, _path=os.path.join(MARKS, "teardown")):
            with _open(_path, "w") as f:
                f.write("x")

    KEPT = Finalised()
    if os.environ.get("LATE_THREAD"):
        threading.Thread(target=lambda: (time.sleep(1.0), mark("thread"))).start()
""")


def _cli(tmp_path: Path, *args: str, env: dict | None = None,
         pre: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, set]:
    marks = tmp_path / f"marks{len(list(tmp_path.glob('marks*')))}"
    marks.mkdir()
    plugin = tmp_path / "exit_plugin.py"
    plugin.write_text(PLUGIN)
    inherited = {k: v for k, v in os.environ.items() if k != "IQABENCH_FULL_EXIT"}
    full_env = {**inherited, "MARKS": str(marks), **(env or {})}
    done = subprocess.run([sys.executable, *pre, "-m", "iqabench.cli.main", "--plugin", str(plugin), *args],
                          capture_output=True, text=True, timeout=300, env=full_env, cwd=tmp_path)
    return done, {p.name for p in marks.iterdir()}


def test_the_teardown_is_skipped_and_exit_handlers_still_run(tmp_path):
    fast, fast_marks = _cli(tmp_path, "list", "datasets")
    full, full_marks = _cli(tmp_path, "list", "datasets", env={"IQABENCH_FULL_EXIT": "1"})
    assert fast.returncode == full.returncode == 0, fast.stderr + full.stderr
    assert fast.stdout == full.stdout and "synthetic" in fast.stdout  # all of stdout arrives
    assert full_marks == {"atexit", "teardown"}  # the ordinary exit: handlers, then teardown
    assert fast_marks == {"atexit"}  # handlers run; the teardown is what is skipped


def test_a_failing_command_keeps_its_exit_code_and_message(tmp_path):
    done, marks = _cli(tmp_path, "run", "--method", "no-such-method", "--dataset", "synthetic")
    assert done.returncode == 2
    assert done.stderr.startswith("iqabench: error:") and "no-such-method" in done.stderr
    assert marks == {"atexit"}


def test_a_thread_still_working_is_waited_for(tmp_path):
    done, marks = _cli(tmp_path, "list", "datasets", env={"LATE_THREAD": "1"})
    assert done.returncode == 0, done.stderr
    assert "thread" in marks and "atexit" in marks  # the ordinary exit, which joins the thread


def test_a_profiler_still_writes_its_output(tmp_path):
    out = tmp_path / "run.prof"
    done, marks = _cli(tmp_path, "list", "datasets", pre=("-m", "cProfile", "-o", str(out)))
    assert done.returncode == 0, done.stderr
    assert out.is_file() and out.stat().st_size > 0
    assert "teardown" in marks  # profiled: the ordinary exit
