"""The wheel works outside the checkout: it carries the LICENSE, the dataset cards and committed
split files, the suites and every file an error message points to, and an installed copy lists
every built-in method and dataset from its own package data.

The sources are copied first, so building never writes into the checkout (no build/ or egg-info
there) and a build running beside other work sees one consistent tree.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "iqabench", "methods", "datasets", "suites")
# files that error messages name (e.g. "see .../owl3_worker/README.md"): they must be installed
POINTED_TO = ("iqabench/models/owl3_worker/README.md", "iqabench/models/owl3_worker/requirements.txt")


def _pip(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> dict:
    import importlib.metadata

    version = importlib.metadata.version("setuptools")
    # the SPDX `license` string and `license-files` (PEP 639) need setuptools 77; the build runs
    # without isolation, with the environment's setuptools
    assert tuple(int(p) for p in version.split(".")[:2]) >= (77, 0), \
        f"setuptools {version} cannot build this pyproject (PEP 639 needs >= 77): pip install 'setuptools>=77,<81'"
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        assert path.exists(), f"{path} is missing from the checkout"
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"), str(src), cwd=work)
    (whl,) = (work / "dist").glob("iqabench-*.whl")
    _pip("install", "--no-deps", "-q", "--target", str(work / "site"), str(whl), cwd=work)
    outside = work / "elsewhere"  # no checkout, no pyproject.toml, no datasets/ here
    outside.mkdir()
    return {"whl": whl, "site": work / "site", "cwd": outside}


def _run(wheel: dict, *args: str) -> subprocess.CompletedProcess:
    """Python with the installed wheel first and the environment's packages (the dependencies) after.
    `-S` skips the .pth files, among them an editable install's finder, which would otherwise
    answer for any module the wheel lacks from the checkout itself."""
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(wheel["site"]), *deps]), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-S", *args], cwd=wheel["cwd"], env=env, capture_output=True,
                          text=True, timeout=120)


def _built_in_methods() -> list[str]:
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    return sorted(entry_points["iqabench.methods"])


def _built_in_datasets() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "datasets").glob("*/card.toml"))


def test_wheel_holds_license_data_and_pointed_to_files(wheel):
    names = set(zipfile.ZipFile(wheel["whl"]).namelist())
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "LICENSE is not in the wheel"
    expected = [f"iqabench/{p.relative_to(ROOT).as_posix()}" for p in sorted((ROOT / "datasets").glob("*/card.toml"))]
    expected += [f"iqabench/{p.relative_to(ROOT).as_posix()}" for p in sorted((ROOT / "datasets").glob("*/splits/*"))
                 if p.is_file() and not p.name.startswith(".")]
    expected += [f"iqabench/{p.relative_to(ROOT).as_posix()}" for p in sorted((ROOT / "suites").glob("*.toml"))]
    expected += list(POINTED_TO)
    # every module of the engine and of the built-in methods (a subpackage missing from
    # pyproject's package list would be dropped silently)
    for folder, installed in (("iqabench", "iqabench"), ("methods", "iqabench/methods")):
        expected += [f"{installed}/{p.relative_to(ROOT / folder).as_posix()}"
                     for p in sorted((ROOT / folder).rglob("*.py")) if "__pycache__" not in p.parts]
    assert len(expected) > 20  # cards, split files and suites were found in the checkout at all
    missing = [n for n in expected if n not in names]
    assert not missing, f"not in the wheel: {missing}"


def test_installed_wheel_lists_every_method_and_dataset_outside_the_checkout(wheel):
    where = _run(wheel, "-c", "import iqabench, iqabench.locations as l; "
                              "print(iqabench.__file__); print(l.shipped_folder('datasets')); "
                              "print(l.shipped_folder('suites'))")
    assert where.returncode == 0, where.stderr
    site = wheel["site"].resolve()
    for line in where.stdout.split():
        assert Path(line).resolve().is_relative_to(site), f"{line} is not inside the installed wheel {site}"

    methods = _run(wheel, "-m", "iqabench.cli.main", "list", "methods")
    assert methods.returncode == 0, methods.stderr
    assert "failed to import" not in methods.stderr, methods.stderr
    shown = {line.split()[0] for line in methods.stdout.splitlines()[1:] if line.strip()}
    for name in _built_in_methods():
        # a family (pyiqa) is listed as `pyiqa:<name>`
        assert name in shown or f"{name}:<name>" in shown, f"method {name} is not listed by the installed wheel"

    datasets = _run(wheel, "-m", "iqabench.cli.main", "list", "datasets")
    assert datasets.returncode == 0, datasets.stderr
    listed = {line.split()[0] for line in datasets.stdout.splitlines()[1:] if line.strip()}
    assert set(_built_in_datasets()) <= listed, f"missing: {set(_built_in_datasets()) - listed}"


def test_installed_wheel_scores_and_trains_outside_the_checkout(wheel, tiny_root, tmp_path):
    """The wheel runs the flow, not only lists it: a weight-free classic, and a trainable one trained
    then scored (the contract test runs every registered method in the checkout's install)."""
    plugin = str(Path(__file__).parent / "plugins" / "tiny_dataset_plugin.py")
    common = ["--plugin", plugin, "--data-root", str(tiny_root), "--results", str(tmp_path)]
    for args in (["run", "--method", "piqe", "--dataset", "tiny", "--no-progress", "--device", "cpu"],
                 ["train", "--method", "brisque-svr", "--dataset", "tiny", "--no-progress", "--device", "cpu"],
                 ["run", "--method", "brisque-svr", "--dataset", "tiny", "--no-progress", "--device", "cpu"]):
        done = _run(wheel, "-m", "iqabench.cli.main", *common, *args)
        assert done.returncode == 0, (args, done.stderr)
    metrics = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("metrics.json")]
    assert sorted(m["method"] for m in metrics) == ["brisque-svr", "pyiqa:piqe"]
    assert all(m["n_failed"] == 0 and m["status"] == "complete" for m in metrics)
