"""CPU time of `iqabench list methods --all` beside `iqabench --help`, each in a fresh process,
best of five (CPU time, so a busy machine inflates both alike). Goal (issue 19): listing <= 0.3 s."""
from __future__ import annotations

import resource
import subprocess
import sys


def cpu_seconds(args: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "iqabench.cli.main", *args], capture_output=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    rounds = 5
    listing = min(cpu_seconds(["list", "methods", "--all"]) for _ in range(rounds))
    helping = min(cpu_seconds(["--help"]) for _ in range(rounds))
    print(f"list methods --all: {listing:.3f} s CPU   --help: {helping:.3f} s CPU   ratio {listing / helping:.1f}x"
          f"   (best of {rounds})")


if __name__ == "__main__":
    main()
