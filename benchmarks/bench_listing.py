"""CPU time of `iqabench list methods --all` beside `iqabench --help`, each in a fresh process,
best of five (CPU time, so a busy machine inflates both alike), and the time the pyiqa family takes
to say which of its metrics can run. Goals (issues 19, 21): listing <= 0.3 s, --help < 0.3 s of CPU,
every pyiqa metric's availability < 1 s. These goals live here, not in the unit tests, whose
results must not depend on the machine's load.

Python caches compiled modules (`__pycache__`) on first import, so a user's second command reads
bytecode; the first line measures that (after one warm-up), the second with an empty bytecode cache that
is never written (every module compiled from source on every start, as on a read-only install without it)."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile


def cpu_seconds(args: list[str], bytecode: bool = True) -> float:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not bytecode:  # an empty cache folder, never written: every module is compiled from source
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="iqabench-nopyc-")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "iqabench.cli.main", *args], capture_output=True, check=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def pyiqa_availability_seconds() -> float:
    """CPU seconds of asking every pyiqa metric whether it can run, in this process (names read first)."""
    import time

    from iqabench.methods.pyiqa.family import FAMILY

    names = FAMILY.names()
    start = time.process_time()
    for name in names:
        FAMILY.resolve(name).check_available()
    return time.process_time() - start


def main() -> None:
    rounds = 5
    cpu_seconds(["list", "methods", "--all"])  # warm-up: writes the bytecode cache
    listing = min(cpu_seconds(["list", "methods", "--all"]) for _ in range(rounds))
    helping = min(cpu_seconds(["--help"]) for _ in range(rounds))
    print(f"list methods --all: {listing:.3f} s CPU (goal <= 0.3)   --help: {helping:.3f} s CPU (goal < 0.3)   "
          f"ratio {listing / helping:.1f}x   (best of {rounds}, bytecode cached)")
    cold = min(cpu_seconds(["list", "methods", "--all"], bytecode=False) for _ in range(rounds))
    print(f"list methods --all with no bytecode cache (compiled on every start): {cold:.3f} s CPU")
    print(f"pyiqa family availability of every metric: {pyiqa_availability_seconds():.3f} s CPU (goal < 1)")


if __name__ == "__main__":
    main()
