"""One model trained on several datasets (`--dataset synthetic+mixb`): the union of the members'
train parts, each member's labels made targets by its own card, validation on each member's val
part with selection on their mean; resumable after SIGKILL; scores a third dataset through
`run --train-dataset`; the report row names the mix; the checkpoint key changes with any member's split."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter

from iqabench.cli.main import cli
from iqabench.config import RunConfig, TrainConfig
from iqabench.errors import IqaError
from iqabench.plan import build_run_plan, build_train_plan
from iqabench.run import run
from iqabench.train import train
from iqabench.training import read_state

PLUGINS = Path(__file__).parent / "plugins"
QUIET = {"on_log": lambda m: None}
OPTIONS = {"backbone": "vit_tiny", "prompt_size": 3, "epochs": 3}

# A second small dataset with its own card, on another scale than synthetic's 0-1 FSIM: a DMOS
# on 1..5, lower is better (its targets must still come out higher-better in [0, 1]).
MIXB_CARD = """\
name = "mixb"
title = "test-only blurred textures (DMOS 1-5)"
url = "written by the test"
folder_names = ["mixb"]
layout = ["dmos.csv", "images/"]
label_name = "DMOS"
score_range = [1.0, 5.0]
higher_better = false
default_split = "ratio50-25-25-seed1"

[reader]
format = "csv"
file = "dmos.csv"
id = "{name}"
label = "dmos"
images = { folders = ["images"] }
"""


def write_mixb(root: Path) -> Path:
    """24 random textures, each blurred by a level 0..5; DMOS = 1 + 0.8 * level (higher is worse)."""
    folder = root / "mixb"
    (folder / "images").mkdir(parents=True)
    rows = ["name,dmos"]
    for t in range(4):
        base = Image.fromarray(np.random.default_rng(t).integers(0, 256, (48, 48, 3), dtype=np.uint8))
        for level in range(6):
            name = f"t{t}-b{level}.png"
            base.filter(ImageFilter.GaussianBlur(0.6 * level)).save(folder / "images" / name)
            rows.append(f"{name},{1 + 0.8 * level:.2f}")
    (folder / "dmos.csv").write_text("\n".join(rows) + "\n")
    card = root / "mixb-card.toml"
    card.write_text(MIXB_CARD)
    plugin = root / "mixb_plugin.py"
    plugin.write_text(f"from iqabench import registry\nregistry.register_dataset_file({str(card)!r})\n")
    return plugin


@pytest.fixture
def mix_root(tmp_path, synthetic_root, tiny_root, scratch_registry):
    root = tmp_path / "data"
    root.mkdir()
    (root / "synthetic").symlink_to(synthetic_root / "synthetic")
    (root / "tiny").symlink_to(tiny_root / "tiny")
    plugin = write_mixb(root)
    scratch_registry.register_dataset_file(root / "mixb-card.toml")
    return root, plugin


def _cfg(root, results, **extra):
    return TrainConfig(**{"method": "promptiqa", "dataset": "synthetic+mixb", "data_root": root, "results": results,
                          "options": OPTIONS, "limit": 8, "progress": False, **extra})


def _sigkill_once_state_exists(args: list[str], state: Path, timeout: float = 180.0) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "iqabench.cli.main", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    start = time.monotonic()
    while not state.is_file() and proc.poll() is None and time.monotonic() - start < timeout:
        time.sleep(0.002)
    proc.kill()
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"training ended before it was killed: {err[-2000:]}"


def test_a_mix_trains_resumes_scores_another_dataset_and_names_itself(mix_root, tmp_path):
    import torch

    root, plugin = mix_root
    straight, summary = train(_cfg(root, tmp_path / "a"), **QUIET)
    manifest = json.loads((straight / "train_manifest.json").read_text())
    assert manifest["dataset"] == "synthetic+mixb"
    assert [(m["dataset"], m["split"], m["n_train"], m["n_val"]) for m in manifest["members"]] == [
        ("synthetic", "byref-ratio60-20-20-seed42", 8, 8), ("mixb", "ratio50-25-25-seed1", 8, 6)]
    assert manifest["identity"]["members"] == [{k: m[k] for k in ("dataset", "split", "split_hash")}
                                               for m in manifest["members"]]
    # validated on each member's val part, selected on the mean of their criteria
    last = summary["history"][-1]
    assert set(last["val_sets"]) == {"synthetic", "mixb"}
    assert last["val_srcc"] == pytest.approx(np.mean([v["val_srcc"] for v in last["val_sets"].values()]))
    assert summary["criterion"] == "val SRCC" and summary["selected_on_mean_of"] == ["mixb", "synthetic"]
    # each member validated with a prompt of its own train images, as at test time
    assert {m: {i.split(":")[0] for i in p["ids"]} for m, p in summary["val_prompts"].items()} == {
        "synthetic": {"synthetic"}, "mixb": {"mixb"}}

    # each member's targets come from its own card: mixb's DMOS 1..5 (lower better) -> (5 - y) / 4
    targets = dict(json.loads(line).values() for line in (straight / "targets.train.jsonl").read_text().splitlines())
    mixb = {k: v for k, v in targets.items() if k.startswith("mixb:")}
    synthetic = {k: v for k, v in targets.items() if k.startswith("synthetic:")}
    assert len(mixb) == len(synthetic) == 8
    labels = dict(line.split(",") for line in (root / "mixb" / "dmos.csv").read_text().splitlines()[1:])
    assert all(v == pytest.approx((5 - float(labels[k.split(":", 1)[1]])) / 4) for k, v in mixb.items())

    # killed mid-training, resumed: the same checkpoint as the uninterrupted fit
    workdir = tmp_path / "b" / straight.relative_to(tmp_path / "a")
    args = ["--plugin", str(plugin), "train", "--method", "promptiqa", "--dataset", "synthetic+mixb",
            "--data-root", str(root), "--results", str(tmp_path / "b"), "--limit", "8", "--no-progress"] + [a for k, v in OPTIONS.items() for a in ("-o", f"{k}={v}")]
    _sigkill_once_state_exists(args, workdir / "state.safetensors")
    _, killed = read_state(workdir / "state.safetensors")
    assert killed["epoch"] < 3
    resumed, again = train(_cfg(root, tmp_path / "b"), **QUIET)
    assert resumed == workdir and again["resumed_from"] == {"epoch": killed["epoch"], "step_in_epoch": 0}
    from iqabench.methods.promptiqa import weights

    a, b = weights.read_tensors_with_meta(straight / "checkpoint.safetensors")[0], \
        weights.read_tensors_with_meta(resumed / "checkpoint.safetensors")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # a third dataset scored with the mixed model; its row reads "trained on synthetic+mixb"
    result = run(RunConfig(method="promptiqa", dataset="tiny", data_root=root, results=tmp_path / "a",
                           options=OPTIONS, train_dataset="synthetic+mixb", limit=8, progress=False, n_boot=20), **QUIET)
    ckpt = json.loads((result.run_dir / "manifest.json").read_text())["checkpoint"]
    assert ckpt["kind"] == "trained" and Path(ckpt["dir"]) == straight
    assert [m["dataset"] for m in ckpt["trained_on"]["members"]] == ["synthetic", "mixb"]
    # beside a model trained on mixb alone, the report's rows tell them apart by their training
    train(_cfg(root, tmp_path / "a", dataset="mixb"), **QUIET)
    run(RunConfig(method="promptiqa", dataset="tiny", data_root=root, results=tmp_path / "a", options=OPTIONS,
                  train_dataset="mixb", limit=8, progress=False, n_boot=20), **QUIET)
    out = CliRunner().invoke(cli, ["--plugin", str(plugin), "report", "--results", str(tmp_path / "a"),
                                   "--data-root", str(root)])
    assert out.exit_code == 0, out.output
    runs = (tmp_path / "a" / "report" / "runs.md").read_text()
    assert "promptiqa (trained on synthetic+mixb)" in runs and "promptiqa (trained on mixb/ratio50-25-25)" in runs


def test_the_key_holds_every_member_and_changes_with_any_members_split(mix_root, tmp_path):
    root, _ = mix_root
    base = build_train_plan(_cfg(root, tmp_path))
    key = base.identity
    assert key["dataset"] == "synthetic+mixb" and key["split"] == "byref-ratio60-20-20-seed42+ratio50-25-25-seed1"
    assert [m["dataset"] for m in key["members"]] == ["synthetic", "mixb"]
    assert all(m["split"] and m["split_hash"] for m in key["members"])
    same = build_train_plan(_cfg(root, tmp_path, split="byref-ratio60-20-20-seed42+ratio50-25-25-seed1"))
    assert same.workdir == base.workdir  # the default splits, spelt out
    for split in ("byref-ratio60-20-20-seed42+ratio50-25-25-seed2", "byref-ratio60-20-20-seed7+ratio50-25-25-seed1"):
        other = build_train_plan(_cfg(root, tmp_path, split=split))
        assert other.workdir != base.workdir and other.identity["members"] != key["members"]
    # one name for every member; the mix's split name is then that name
    both = build_train_plan(_cfg(root, tmp_path, split="ratio50-25-25-seed3"))
    assert both.identity["split"] == "ratio50-25-25-seed3"
    assert {m["split"] for m in both.identity["members"]} == {"ratio50-25-25-seed3"}


def test_mix_names_are_checked_in_one_line(mix_root, tmp_path):
    root, _ = mix_root
    for dataset, message in (("synthetic+", "an empty member"), ("synthetic+synthetic", "synthetic is named twice"),
                             ("synthetic+nosuch", "nosuch")):
        with pytest.raises(IqaError, match=message):
            build_train_plan(_cfg(root, tmp_path, dataset=dataset))
    with pytest.raises(IqaError, match="names 3 splits for 2 datasets"):
        build_train_plan(_cfg(root, tmp_path, split="a+b+c"))
    with pytest.raises(IqaError, match="a mix of datasets is trained on, not scored"):
        build_run_plan(RunConfig(method="promptiqa", dataset="synthetic+mixb", data_root=root, results=tmp_path))


def test_promptiqa_groups_a_mix_within_each_dataset():
    from iqabench.methods.promptiqa.train import make_groups

    members = {"a": [f"a:{i}" for i in range(9)], "b": [f"b:{i}" for i in range(7)]}
    groups = make_groups([i for ids in members.values() for i in ids], 3, np.random.default_rng(0), members)
    assert len(groups) == 3 + 2 and all(len(g) == 3 for g in groups)
    assert all(len({i.split(":")[0] for i in g}) == 1 for g in groups)  # each prompt from one dataset
    assert {g[0].split(":")[0] for g in groups} == {"a", "b"}


def test_brisque_svr_on_a_mix_selects_on_the_mean_of_the_members_val(tmp_path, tiny_root, scratch_registry):
    """A trainer without epochs (a grid search) gets the members' val sources by name too."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "tiny").symlink_to(tiny_root / "tiny")
    write_mixb(root)
    scratch_registry.register_dataset_file(root / "mixb-card.toml")
    cfg = TrainConfig(method="brisque-svr", dataset="tiny+mixb", data_root=root, results=tmp_path / "r",
                      options={"c_grid": [1.0, 8.0], "gamma_grid": [0.1]}, progress=False)
    workdir, summary = train(cfg, **QUIET)
    assert summary["selected_on_mean_of"] == ["mixb", "tiny"]
    for point in summary["grid"]:
        sets = point["val_sets"]
        assert set(sets) == {"tiny", "mixb"}
        assert point["criterion"] == pytest.approx(np.mean([v["val_selection"] for v in sets.values()]))
    # each member's val SRCC is its own images' against its own targets
    from iqabench.io import JsonlLog

    feats = {r["id"]: r for r in JsonlLog(workdir / "features.val.mixb.jsonl").read()}
    assert feats and all(k.startswith("mixb:") for k in feats)
    assert (workdir / "features.val.tiny.jsonl").is_file()
    best = summary["grid"][max(range(len(summary["grid"])), key=lambda i: summary["grid"][i]["criterion"])]
    assert best["val_srcc"] == pytest.approx(np.mean([v["val_srcc"] for v in best["val_sets"].values()]))
