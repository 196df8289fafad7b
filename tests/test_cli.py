"""The command line: errors are one line with no traceback; listings tell what can run here."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).parent / "plugins"


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "iqabench.cli.main", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_help_does_not_import_torch():
    code = ("import sys; from iqabench.cli.main import build_parser; build_parser(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_list_methods_shows_kind_needs_and_availability():
    out = cli("list", "methods")
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[1:] if line.strip()}
    assert "trainable" in lines["brisque-svr"] and lines["brisque-svr"].rstrip().endswith("yes")
    assert "classic" in lines["piqe"] and lines["piqe"].rstrip().endswith("yes")


def test_list_methods_check_names_missing_weight_file():
    out = cli("list", "methods")
    assert out.returncode == 0, out.stderr
    niqe = next(line for line in out.stdout.splitlines() if line.startswith("niqe"))
    assert "no: needs weight file" in niqe and ".mat" in niqe


def test_run_missing_weights_fails_at_once_in_one_line(tmp_path):
    out = cli("run", "--method", "niqe", "--dataset", "synthetic", "--data-root", str(tmp_path), "--results",
              str(tmp_path / "r"))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "needs weight file" in out.stderr and "put it in" in out.stderr


def test_missing_dataset_explains_the_layout(tmp_path):
    out = cli("run", "--method", "piqe", "--dataset", "koniq10k", "--data-root", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "koniq10k_distributions_sets.csv" in out.stderr and "published at" in out.stderr
    listing = cli("datasets", "--data-root", str(tmp_path))
    assert listing.returncode == 0
    assert "missing" in listing.stdout and "built on first use" in listing.stdout


def test_unknown_method_and_bad_option_are_one_line(tmp_path):
    out = cli("run", "--method", "brisque-svm", "--dataset", "synthetic", "--data-root", str(tmp_path))
    assert out.returncode == 2 and "did you mean brisque-svr" in out.stderr and out.stderr.count("\n") == 1
    out = cli("train", "--method", "brisque-svr", "--dataset", "synthetic", "-o", "c_gird=[1]", "--data-root", str(tmp_path))
    assert out.returncode == 2 and "c_gird" in out.stderr and out.stderr.count("\n") == 1


def test_n_split_protocol_runs_each_seed_and_reports_the_median(tiny_root, tmp_path):
    results = tmp_path / "r"
    out = cli("--plugin", str(PLUGINS / "tiny_dataset_plugin.py"), "--plugin", str(PLUGINS / "slow_method.py"),
              "run", "--method", "slow-sharpness", "--dataset", "tiny", "--split", "ratio80-0-20-seed{1..3}",
              "--data-root", str(tiny_root), "--results", str(results), "--no-progress")
    assert out.returncode == 0, out.stderr
    import json
    import statistics

    srcc = [json.loads(p.read_text())["srcc"] for p in sorted(results.rglob("metrics.json"))]
    assert len(srcc) == 3
    assert f"median SRCC over 3 splits: {statistics.median(srcc):.4f}" in out.stdout
    report = cli("report", "--results", str(results))
    assert report.returncode == 0, report.stderr
    assert "median over 3 split(s), seeds 1-3" in report.stdout
