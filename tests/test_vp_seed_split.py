"""The user's command means the seed's experiment (seed 000): `iqabench run --method vp-owl2 --dataset
agiqa3k` runs on the split the paper published, says so and records it; with neither a trained prompt
nor the base weights on the machine, one line names both and the two ways on."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iqabench.config import RunConfig, TrainConfig
from iqabench.plan import build_run_plan, build_train_plan

SPLITS = Path(__file__).resolve().parents[1] / "datasets" / "agiqa3k" / "splits"


@pytest.fixture(scope="module")
def agiqa_release(tmp_path_factory):
    """A tiny fake AGIQA-3k release as its card reads it: data.csv (name, mos_quality, ...) with the
    images beside it, in the folder the release unpacks to (AGIQA-3K), under ./data."""
    from PIL import Image

    root = tmp_path_factory.mktemp("user")
    folder = root / "data" / "AGIQA-3K"
    folder.mkdir(parents=True)
    published = json.loads((SPLITS / "seed000-vp.json").read_text())
    names = sorted(i for ids in published["parts"].values() for i in ids)
    image = Image.new("RGB", (8, 8), (120, 30, 60))
    with open(folder / "data.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["name", "prompt", "adj1", "adj2", "style", "mos_quality", "std_quality", "mos_align", "std_align"])
        for k, name in enumerate(names):
            out.writerow([name, "a cat", "", "", "", round(1 + 3 * (k % 97) / 97, 3), 0.5, 3.0, 0.5])
            image.save(folder / name)
    return root


def _iqabench(cwd: Path, *args: str, offline: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HOME"] = str(cwd / "empty-hf-home")  # no weights in this cache, whatever the machine holds
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    exe = Path(sys.executable).with_name("iqabench")
    return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("offline", [False, True])
def test_the_literal_command_names_the_split_and_both_missing_things(agiqa_release, offline):
    done = _iqabench(agiqa_release, "run", "--method", "vp-owl2", "--dataset", "agiqa3k", offline=offline)
    assert done.returncode == 2, done.stderr
    assert "split seed000-vp for vp-owl2 on agiqa3k: seed 000's published split" in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, done.stderr  # one message
    line = errors[0]
    assert "checkpoints/agiqa3k/seed000-vp/vp-owl2-" in line and "no trained prompt here" in line
    assert "the owl2 weights MAGAer13/mplug-owl2-llama2-7b are not on this machine" in line
    assert "`iqabench train --method vp-owl2 --dataset agiqa3k -o backend_path=DIR`" in line
    assert "-o prompt_path=FILE" in line


def test_train_refuses_missing_weights_before_it_announces_training(agiqa_release):
    done = _iqabench(agiqa_release, "train", "--method", "vp-owl2", "--dataset", "agiqa3k", offline=True)
    assert done.returncode == 2
    assert "MAGAer13/mplug-owl2-llama2-7b" in done.stderr and "training" not in done.stdout + done.stderr


def test_the_recipe_split_is_the_default_and_recorded(agiqa_release, tmp_path):
    from iqabench.run import _manifest

    data, results = agiqa_release / "data", tmp_path / "results"
    weights = tmp_path / "weights"  # enough for the availability check; nothing is loaded by a plan
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    for method in ("vp-owl2", "vp-llava"):
        plan = build_run_plan(RunConfig(method=method, dataset="agiqa", data_root=data, results=results))
        assert plan.view.split.name == "seed000-vp" and len(plan.ids) == 597
        assert plan.split_note.startswith(f"split seed000-vp for {method} on agiqa3k")
        assert _manifest(plan, "cpu", 1)["split_chosen_by"] == plan.split_note
        assert plan.checkpoint.path.parent.name == "seed000-vp"  # the checkpoint it looks for is trained there too
        train = build_train_plan(TrainConfig(method=method, dataset="agiqa3k", data_root=data, results=results,
                                             options={"backend_path": str(weights)}))
        assert (train.view.split.name, len(train.train_ids), len(train.val_ids)) == ("seed000-vp", 1789, 596)
        assert train.split_note == plan.split_note
    given = build_run_plan(RunConfig(method="vp-owl2", dataset="agiqa3k", split="ratio60-20-20-seed42",
                                     data_root=data, results=results))
    assert given.view.split.name == "ratio60-20-20-seed42" and given.split_note is None
    other = build_run_plan(RunConfig(method="pyiqa:piqe", dataset="agiqa3k", data_root=data, results=results))
    assert other.view.split.name == "ratio60-20-20-seed42" and other.split_note is None  # no recipe: the card's


def test_train_loads_the_weights_before_it_announces_training(agiqa_release, tmp_path):
    """A weights folder that passes the cheap check (it has a config.json) but cannot be loaded: the
    error comes before the "training ..." line, not after it."""
    from iqabench.errors import IqaError
    from iqabench.train import train

    weights = tmp_path / "broken-weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    lines: list[str] = []
    cfg = TrainConfig(method="vp-owl2", dataset="agiqa3k", data_root=agiqa_release / "data", results=tmp_path / "r",
                      options={"backend_path": str(weights)})
    with pytest.raises(IqaError):
        train(cfg, on_log=lines.append)
    assert lines and lines[0].startswith("split seed000-vp for vp-owl2") and not any(
        line.startswith("training") for line in lines), lines
