"""What every result records about the software that produced it."""
from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
from pathlib import Path

PACKAGES = ("iqabench", "torch", "torchvision", "transformers", "pyiqa", "numpy", "scipy", "pandas", "pillow", "sam2")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return result.stdout.strip() + ("-dirty" if dirty else "")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def environment() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": package_versions(),
            "git_commit": git_commit()}


def command_line() -> str:
    """The command as typed (program name shortened to `iqabench` when it is the console script)."""
    import shlex
    import sys

    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("iqabench", "main.py", "__main__.py"):
        argv[0] = "iqabench"
    return shlex.join(argv)


def torch_threads() -> int | None:
    """torch's intra-op thread count, which can move float32 scores (None: torch never imported, so
    nothing this process scored used it)."""
    import sys

    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None
