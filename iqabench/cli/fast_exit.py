"""Ending the `iqabench` process without tearing the interpreter down.

After a command has finished, Python's finalisation frees every module and object one by one:
with torch, torchvision and pyiqa loaded that costs about 0.7 s of CPU, a sixth of a 120-image
piqe run (benchmarks/bench_piqe_startup.py prints it). Every file the engine writes is closed
(records are written unbuffered and synced) before the command returns, so nothing is left for
that teardown to do. The exit handlers libraries registered (logging's flush, temporary folders,
multiprocessing) still run; then the process ends with the command's exit code.

The ordinary exit is kept whenever something may still need it: another thread that Python would
wait for, a profiler or tracer (cProfile, coverage) that writes its output at exit, or
IQABENCH_FULL_EXIT=1 in the environment.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_process(code: int) -> NoReturn:
    if not _can_skip_teardown():
        sys.exit(code)
    try:
        _flush_standard_streams()
        atexit._run_exitfuncs()  # what the ordinary exit would run, in the same order
        _flush_standard_streams()
    except OSError:  # a closed pipe: the ordinary exit reports it as it always has
        sys.exit(code)
    os._exit(code)


def _can_skip_teardown() -> bool:
    if os.environ.get("IQABENCH_FULL_EXIT", "") not in ("", "0"):
        return False
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return False
    if not hasattr(atexit, "_run_exitfuncs"):
        return False
    main = threading.main_thread()
    return not any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate())


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
