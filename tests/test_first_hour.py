"""A researcher's first hour (issue 12): scoring one's own images, feedback while training, and
errors that say what to do, each checked on the line the user sees.

Runs go through the CLI in this process (`main([...])`), on the `tiny` set and the
`slow-sharpness` test plugin that conftest registers, and on a folder of generated images.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from iqabench import registry
from iqabench.cli.main import main
from iqabench.errors import IqaError, NotAvailable
from iqabench.run import RunConfig, run

IMAGE_IDS = ["broken.png", "img0.png", "img1.png", "img2.png", "sub/photo.jpg"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Five image files (one corrupt) below a folder, with a text file and a hidden file beside them."""
    folder = tmp_path_factory.mktemp("my-photos")
    rng = np.random.default_rng(0)
    noise = Image.fromarray((rng.random((72, 96, 3)) * 255).astype("uint8"))
    for i, radius in enumerate((0, 1, 3)):  # sharper to blurrier: different scores
        noise.filter(ImageFilter.GaussianBlur(radius)).save(folder / f"img{i}.png")
    (folder / "sub").mkdir()
    noise.filter(ImageFilter.GaussianBlur(2)).save(folder / "sub" / "photo.jpg", quality=80)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.txt").write_text("not an image")
    noise.save(folder / ".hidden.png")
    return folder


def _one_error_line(err: str) -> str:
    """The CLI's error: exactly one `iqabench: error:` line and no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("iqabench: error")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def _only_run(results: Path) -> Path:
    (manifest,) = results.glob("runs/*/*/*/manifest.json")
    return manifest.parent


# -- 1. score your own images ---------------------------------------------------------------------

def test_images_are_scored_without_labels_in_a_run_folder(images, tmp_path, capsys):
    results = tmp_path / "r"
    assert main(["run", "--method", "slow-sharpness", "--images", str(images), "--results", str(results),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    run_dir = _only_run(results)
    assert run_dir.relative_to(results).parts[0] == "runs"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["labels"] is False and metrics["status"] == "complete"
    assert (metrics["n"], metrics["n_scored"], metrics["n_failed"]) == (5, 4, 1)
    assert not {"srcc", "krcc", "plcc", "plcc_raw", "rmse", "ci95"} & set(metrics)  # never a made-up correlation
    inputs = json.loads((run_dir / "inputs.json").read_text())
    assert [r["id"] for r in inputs["images"]] == IMAGE_IDS  # recursive, by suffix, sorted relative paths
    assert all(r["label"] is None and len(r["sha256"]) == 16 for r in inputs["images"])
    records = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == IMAGE_IDS
    by_id = {r["id"]: r for r in records}
    assert by_id["broken.png"]["score"] is None and by_id["broken.png"]["error"].startswith("decode:")
    sharp, blurred = by_id["img0.png"]["score"], by_id["img2.png"]["score"]
    assert sharp > blurred > 0  # real scores of the real images
    csv = (run_dir / "predictions.csv").read_text().splitlines()
    assert csv[0].startswith("id,score,label,error") and len(csv) == 6
    assert "no labels" in out and "SRCC" not in out


def test_pyiqa_piqe_scores_a_folder(images, tmp_path, capsys):
    results = tmp_path / "r"
    assert main(["run", "--method", "piqe", "--images", str(images), "--results", str(results), "--no-progress"]) == 0
    metrics = json.loads((_only_run(results) / "metrics.json").read_text())
    assert metrics["method"] == "pyiqa:piqe" and metrics["n_scored"] == 4 and metrics["n_failed"] == 1
    summary = metrics["score_summary"]
    assert summary["min"] < summary["max"]


def test_an_interrupted_images_run_resumes_and_scores_nothing_twice(images, tmp_path, monkeypatch):
    log = tmp_path / "scored.txt"
    cfg = RunConfig(method="slow-sharpness", images=images, results=tmp_path / "r", options={"log": str(log)},
                    progress=False)
    cls = registry.methods.get("slow-sharpness")
    original, calls = cls.score, []

    def interrupted(self, samples):  # Ctrl-C after two images
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(samples[0].id)
        return original(self, samples)

    monkeypatch.setattr(cls, "score", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, on_log=lambda m: None)
    monkeypatch.setattr(cls, "score", original)
    assert log.read_text().split() == calls
    result = run(cfg, on_log=lambda m: None)
    scored = log.read_text().split()
    assert sorted(scored) == sorted(set(scored)) == [i for i in IMAGE_IDS if i != "broken.png"]
    # broken.png (a recorded failure) and the two scored before the interruption are not done again
    assert result.scored_now == 2
    assert result.metrics["status"] == "complete" and result.metrics["n_failed"] == 1


def test_a_changed_folder_is_another_run(images, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("img0.png", "img1.png"):
        (folder / name).write_bytes((images / name).read_bytes())
    cfg = RunConfig(method="slow-sharpness", images=folder, results=tmp_path / "r", progress=False)
    first = run(cfg, on_log=lambda m: None)
    (folder / "img1.png").write_bytes((images / "img2.png").read_bytes())
    second = run(cfg, on_log=lambda m: None)
    assert first.run_dir != second.run_dir and second.scored_now == 2
    assert first.metrics["score_summary"] != second.metrics["score_summary"]


def test_the_report_keeps_label_less_runs_out_of_the_tables(images, tiny_root, tmp_path):
    from iqabench.report.build import build_report
    from iqabench.report.options import ReportOptions

    results = tmp_path / "r"
    run(RunConfig(method="slow-sharpness", images=images, results=results, progress=False), on_log=lambda m: None)
    run(RunConfig(method="slow-sharpness", dataset="tiny", data_root=tiny_root, results=results, progress=False,
                  n_boot=50), on_log=lambda m: None)
    build_report(results, results / "report", ReportOptions(plots=False, progress=False))
    table = (results / "report" / "table.md").read_text()
    assert "tiny" in table and "images:" not in table
    runs = (results / "report" / "runs.md").read_text()
    assert "images:my-photos" in runs  # listed (never dropped), not tabulated


def test_a_trainable_method_on_images_needs_a_checkpoint(images, tmp_path, capsys):
    results = tmp_path / "r"
    assert main(["run", "--method", "brisque-svr", "--images", str(images), "--results", str(results)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--checkpoint DIR" in line and "brisque-svr" in line
    assert not results.exists()


def test_images_and_a_dataset_are_refused_together(images, tmp_path, capsys):
    code = main(["run", "--method", "slow-sharpness", "--images", str(images), "--dataset", "tiny",
                 "--results", str(tmp_path / "r")])
    assert code == 2
    assert "--dataset" in _one_error_line(capsys.readouterr().err)


# -- 2. feedback while training -------------------------------------------------------------------

def test_train_brisque_svr_logs_each_grid_step_and_prints_a_short_summary(tiny_root, tmp_path, capsys):
    results = tmp_path / "r"
    assert main(["train", "--method", "brisque-svr", "--dataset", "tiny", "--data-root", str(tiny_root),
                 "--results", str(results), "-o", "c_grid=[1, 8]", "-o", "gamma_grid=[0.05, 0.5]",
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    steps = re.findall(r"brisque-svr: grid (\d+)/4 C=\S+ gamma=\S+: loss [0-9.]+ \(train MSE\), "
                       r"val SRCC (-?[0-9.]+|n/a) PLCC", captured.err)
    assert [int(s) for s, _ in steps] == [1, 2, 3, 4]
    assert any(v != "n/a" for _, v in steps)
    assert re.search(r"train features: 12 of 12 images", captured.err)
    assert "selected C=" in captured.err
    out = captured.out.splitlines()
    assert not any(line.lstrip().startswith(("{", "}", '"')) for line in out)  # no JSON dump
    assert any(line.startswith("val SRCC ") for line in out)
    (ckpt_line,) = [line for line in out if line.startswith("checkpoint: ")]
    summary = json.loads((Path(ckpt_line.split(": ", 1)[1]) / "train_summary.json").read_text())
    assert len(summary["grid"]) == 4 and summary["best_val"]["val_srcc"] is not None


def test_train_tiny_owl2_visual_prompt_logs_each_epoch(tiny_root, tmp_path, capsys):
    from iqabench.models.tiny import tiny_model_path

    model = tiny_model_path("owl2", tmp_path / "models")
    assert main(["train", "--method", "vp-owl2", "--dataset", "tiny", "--data-root", str(tiny_root),
                 "--results", str(tmp_path / "r"), "-o", f"backend_path={model}", "-o", "vp_size=4",
                 "-o", "epochs=2", "-o", "max_steps=2", "--batch-size", "4", "-o", "flip=false", "-o", "lr=20",
                 "--limit", "8", "--no-progress"]) == 0
    captured = capsys.readouterr()
    epochs = re.findall(r"vp-owl2: epoch (\d+)/2 loss [0-9.]+ val SRCC (\S+) PLCC raw (\S+)", captured.out)
    assert [int(e) for e, _, _ in epochs] == [1, 2]
    assert "best epoch" in captured.out and "val SRCC" in captured.out and "checkpoint: " in captured.out


# -- 3. errors that say what to do ------------------------------------------------------------------

def test_a_bad_option_names_the_valid_ones_and_creates_nothing(tiny_root, tmp_path, capsys):
    results = tmp_path / "r"
    assert main(["run", "--method", "slow-sharpness", "--dataset", "tiny", "--data-root", str(tiny_root),
                 "--results", str(results), "-o", "delai=0.1"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "unknown option 'delai'" in line and "did you mean 'delay'?" in line
    assert "valid options: delay, log, fail_on, nan_on, prepare_log" in line
    assert "iqabench options slow-sharpness" in line
    assert not results.exists()


def test_a_bad_option_value_is_one_line(tmp_path, capsys):
    assert main(["run", "--method", "brisque-svr", "--dataset", "tiny", "--results", str(tmp_path / "r"),
                 "-o", "c_grid=many"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "option c_grid:" in line and "'many'" in line and "valid options: c_grid, gamma_grid, epsilon" in line


def test_a_bad_pyiqa_metric_option_is_one_line_and_creates_nothing(images, tmp_path, capsys):
    results = tmp_path / "r"
    assert main(["run", "--method", "piqe", "--images", str(images), "--results", str(results),
                 "-o", 'metric_options={"bogus": 1}']) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "pyiqa:piqe" in line and "bogus" in line
    assert not results.exists()


def test_an_unknown_method_suggests_the_closest_and_lists_aliases(tmp_path, capsys):
    assert main(["run", "--method", "piqee", "--dataset", "tiny", "--results", str(tmp_path / "r")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "did you mean piqe (= pyiqa:piqe)" in line
    assert "vp-owl2 (aliases pixelprompt, vp-mplug-owl2)" in line and "pyiqa:<name> (aliases " in line
    with pytest.raises(IqaError, match=r"did you mean pixelprompt \(= vp-owl2\)"):
        registry.methods.get("pixelprompts")


def test_the_missing_checkpoint_hint_repeats_the_whole_command(tiny_root, tmp_path, capsys):
    results, split = tmp_path / "r", "ratio50-25-25-seed3"
    command = ["--results", str(results), "--data-root", str(tiny_root), "run", "--method", "brisque-svr",
               "--dataset", "tiny", "--split", split, "-o", "c_grid=[1, 8]", "-o", "gamma_grid=[0.1]",
               "--seed", "7", "--no-progress"]
    assert main(command) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert not list(results.glob("runs/*/*/*"))  # no run folder for a run that cannot start
    hint = line.split("train it first: ", 1)[1]
    assert hint == shlex.join(["iqabench", "train", "--method", "brisque-svr", "--dataset", "tiny", "--split", split,
                               "-o", "c_grid=[1, 8]", "-o", "gamma_grid=[0.1]", "--seed", "7",
                               "--results", str(results), "--data-root", str(tiny_root)])
    assert main(shlex.split(hint)[1:] + ["--no-progress"]) == 0  # the hint as given trains what the run needs
    assert main(command) == 0


def test_absent_mllm_weights_name_the_backend_path_option(images, tmp_path, capsys, monkeypatch):
    from iqabench.models.owl2.weights import resolve_folder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NotAvailable) as info:
        resolve_folder("iqabench-tests/no-such-model")
    message = str(info.value)
    assert "\n" not in message and "-o backend_path=DIR" in message and "iqabench-tests/no-such-model" in message
    results = tmp_path / "r"
    assert main(["run", "--method", "vp-owl2", "--images", str(images), "--results", str(results),
                 "-o", "backend_path=iqabench-tests/no-such-model", "--checkpoint", str(tmp_path)]) == 2
    assert "backend_path" in _one_error_line(capsys.readouterr().err)
    assert not results.exists()
