"""Hardening, round three, continued (issue 20): the documented launch commands import nothing from
the working folder, run folders are checked before they are scored, option files name files inside
their own folder, and every refusal is one line naming the file and the problem."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from iqabench.errors import IqaError

ROOT = Path(__file__).resolve().parents[1]


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


# -- the data-parallel launch commands -----------------------------------------------------------

HOSTILE = "from pathlib import Path\nPath(__file__).with_name('ran').write_text('imported')\n" \
          "raise SystemExit('hostile module imported from the working folder')\n"


def test_python_dash_m_main_imports_nothing_from_the_working_folder(tmp_path):
    # torchrun and `accelerate launch -m` run `python -m iqabench.cli.main`, which puts cwd first on sys.path
    for name in ("filelock", "click"):  # filelock: imported by `list methods`; click: by main.py itself
        (tmp_path / f"{name}.py").write_text(HOSTILE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    done = subprocess.run([sys.executable, "-m", "iqabench.cli.main", "--results", str(tmp_path / "r"), "list",
                           "methods"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "ran").exists()
    assert "piqe" in done.stdout


def test_the_readme_launch_commands_do_not_use_python_dash_m():
    text = (ROOT / "README.md").read_text()
    launches = [line.strip() for line in text.splitlines() if line.strip().startswith(("torchrun ", "accelerate "))]
    assert len(launches) == 2 and not any(" -m " in line for line in launches), launches
    assert "torchrun --standalone --nproc_per_node 4 --no-python iqabench run" in text
    assert "accelerate launch --multi_gpu --num_processes 4 --no_python iqabench run" in text
