"""The MLLM methods through `iqabench train` / `iqabench run` on the embedded `synthetic` set, tiny models.

Scores of random tiny models mean nothing; these tests check the whole path: options, training stage,
safetensors checkpoints, the runner's records, and the per-method statistics in metrics.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from safetensors import safe_open

from iqabench.cli.main import main
from iqabench.models.tiny import tiny_model_path


def _metrics(results):
    return [json.loads(p.read_text()) for p in sorted(results.rglob("metrics.json"))]


@pytest.mark.parametrize("method,arch", [("vp-owl2", "owl2"), ("vp-llava", "llava")])
def test_train_then_run_visual_prompt(method, arch, synthetic_root, tmp_path):
    model = tiny_model_path(arch, tmp_path / "models")
    opts = ["-o", f"backend_path={model}", "-o", "vp_size=4", "-o", "epochs=3", "-o", "max_steps=3",
            "--batch-size", "4", "-o", "flip=false", "-o", "lr=20"]
    common = ["--dataset", "synthetic", "--data-root", str(synthetic_root), "--results", str(tmp_path / "r")]
    assert main(["train", "--method", method, *common, *opts, "--limit", "12"]) == 0
    workdir = next((tmp_path / "r" / "checkpoints").rglob("prompt.safetensors")).parent
    summary = json.loads((workdir / "train_summary.json").read_text())
    assert len(summary["train_loss"]) >= 2
    with safe_open(str(workdir / "prompt.safetensors"), "pt") as f:
        assert len(list(f.keys())) >= 1
    # a smoke run of 6 images finds no checkpoint trained with --limit 6 nor a full one: name it
    assert main(["run", "--method", method, *common, *opts, "--limit", "6", "--no-progress",
                 "--checkpoint", str(workdir)]) == 0
    (m,) = _metrics(tmp_path / "r")
    assert m["method"] == method and m["n"] == 6 and m["n_failed"] == 0
    manifest = json.loads((tmp_path / "r").joinpath(m["run_dir"]).joinpath("manifest.json").read_text())
    assert manifest["checkpoint"]["dir"] == str(workdir)


def test_softmax_owl2_runs_on_synthetic(synthetic_root, tmp_path):
    model = tiny_model_path("owl2", tmp_path / "models")
    assert main(["run", "--method", "softmax-owl2", "--dataset", "synthetic", "--data-root", str(synthetic_root),
                 "--results", str(tmp_path / "r"), "-o", f"backend_path={model}", "--limit", "6", "--batch-size", "3",
                 "--no-progress"]) == 0
    (m,) = _metrics(tmp_path / "r")
    assert m["n"] == 6 and m["n_failed"] == 0 and m["srcc"] is not None


def test_dog_iqa_records_masks_calls_and_reuses_masks_with_another_judge(synthetic_root, tmp_path):
    sam = tiny_model_path("sam2", tmp_path / "models")
    seg = json.dumps({"model": sam, "points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0})
    results = tmp_path / "r"
    for seed in (0, 1):  # two different judges
        judge = json.dumps({"backend": "llava", "backend_path": tiny_model_path("llava", tmp_path / "models", seed=seed)})
        assert main(["run", "--method", "dog-iqa", "--dataset", "synthetic", "--data-root", str(synthetic_root),
                     "--results", str(results), "-o", f"segmenter={seg}", "-o", f"judge={judge}", "--limit", "4",
                     "--batch-size", "2", "--no-progress"]) == 0
    by_judge = {json.loads((Path(m["run_dir"]) / "manifest.json").read_text())["options"]["judge"]["backend_path"]: m
                for m in _metrics(results)}
    first, second = (by_judge[tiny_model_path("llava", tmp_path / "models", seed=s)] for s in (0, 1))
    assert first["run_dir"] != second["run_dir"]
    assert first["runtime"]["segmentations"] > 0 and first["runtime"]["judge_calls"] > 0
    assert first["runtime"]["c_max"] >= 1 and "parse_failures" in first["runtime"]
    assert second["runtime"]["segmentations"] == 0 and second["runtime"]["mask_cache_hits"] >= 4
    preds = pd.read_csv(f"{first['run_dir']}/predictions.csv")
    assert {"masks", "regions", "judge_views", "parse_failures"} <= set(preds.columns)
    assert (preds["masks"] >= 0).all() and (preds["judge_views"] >= 1).all()


def test_more_epochs_continue_the_same_checkpoint(tiny_root, tmp_path):
    from iqabench.train import TrainConfig, train

    model = tiny_model_path("llava", tmp_path / "models")
    base = {"backend_path": model, "vp_size": 4, "max_steps": 1, "flip": False}
    common = dict(method="vp-llava", dataset="tiny", data_root=tiny_root, results=tmp_path / "r", limit=6, batch_size=2)
    first, s1 = train(TrainConfig(**common, options={**base, "epochs": 1}), on_log=lambda m: None)
    second, s2 = train(TrainConfig(**common, options={**base, "epochs": 3}), on_log=lambda m: None)
    assert first == second
    assert len(s1["train_loss"]) == 1 and len(s2["train_loss"]) == 3
    assert s2["train_loss"][0] == s1["train_loss"][0]  # epoch 1 was not redone
