"""`iqabench list methods` answers from presets and files on disk: fast, and without a network."""
from __future__ import annotations

import subprocess
import sys
import textwrap

# Runs the real command in a fresh process with every socket connection refused (and recorded).
GUARDED = textwrap.dedent("""
    import socket, sys
    attempts = []
    def refuse(self, *args, **kwargs):
        attempts.append(args)
        raise OSError("network blocked by the test")
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    from iqabench.cli.main import main
    code = main(["list", "methods", "--all"])
    print("CONNECT ATTEMPTS", len(attempts), file=sys.stderr)
    heavy = sorted(m for m in ("torch", "transformers", "pyiqa", "timm", "sklearn", "peft") if m in sys.modules)
    print("HEAVY IMPORTS", ",".join(heavy) or "none", file=sys.stderr)
    sys.exit(code)
""")


def test_list_methods_is_offline_and_imports_no_model_library():
    """What listing imports, not how long it takes (a timing goal belongs in benchmarks/bench_listing.py,
    which prints its CPU time beside `--help`'s: a unit test must not depend on the machine's load)."""
    done = subprocess.run([sys.executable, "-c", GUARDED], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "CONNECT ATTEMPTS 0" in done.stderr, done.stderr
    assert "HEAVY IMPORTS none" in done.stderr, done.stderr
    for name in ("brisque-svr", "vp-owl2", "dog-iqa", "pyiqa:piqe", "pyiqa:psnr", "q-adapt", "promptiqa"):
        assert name in done.stdout, name
