"""CPU time of `iqabench list methods --all` beside `iqabench --help`, each in a fresh process,
best of five (CPU time, so a busy machine inflates both alike), and the time the pyiqa family takes
to say which of its metrics can run. Goals (issues 19, 21): listing <= 0.3 s, --help < 0.3 s of CPU,
every pyiqa metric's availability < 1 s. These goals live here, not in the unit tests, whose
results must not depend on the machine's load."""
from __future__ import annotations

import resource
import subprocess
import sys


def cpu_seconds(args: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "iqabench.cli.main", *args], capture_output=True, check=True)
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
    listing = min(cpu_seconds(["list", "methods", "--all"]) for _ in range(rounds))
    helping = min(cpu_seconds(["--help"]) for _ in range(rounds))
    print(f"list methods --all: {listing:.3f} s CPU   --help: {helping:.3f} s CPU (goal < 0.3)   "
          f"ratio {listing / helping:.1f}x   (best of {rounds})")
    print(f"pyiqa family availability of every metric: {pyiqa_availability_seconds():.3f} s CPU (goal < 1)")


if __name__ == "__main__":
    main()
