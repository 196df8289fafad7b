"""The seeds' figures, written by commands on tiny random models and opened here: a trained visual prompt
on images (seed 000 Fig. 2), a Dog-IQA image with its segments and their scores (seed 004 Fig. 5), the
cost of runs (seed 002 Table 4) and the K-level bound of labels (seed 004 Table 1)."""
import csv
import json
import os

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (a test dependency: a missing one fails, never skips)
from PIL import Image

from iqabench.report import levels as levels_mod


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)


def _not_blank(path, min_colours=16):
    image = Image.open(path)
    image.load()
    pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 10, f"{path} is (nearly) one colour"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) >= min_colours, f"{path} holds too few colours"
    return image, pixels


def test_quantise_follows_eq1_by_hand():
    labels = [0.0, 1.0, 2.5, 3.75, 5.0]  # scaled: 0, .2, .5, .75, 1
    assert levels_mod.quantise(labels, 3).tolist() == [0, 0, 1, 2, 2]  # round(x * 2): halves round up
    assert levels_mod.quantise(labels, 5).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(Exception, match="same"):
        levels_mod.quantise([2.0, 2.0], 3)


def test_level_bound_equals_a_plain_scipy_computation():
    from scipy import stats

    y = np.random.default_rng(3).normal(50, 15, 500)
    bound = levels_mod.level_bound("x", y, 5)
    q = np.floor((y - y.min()) / (y.max() - y.min()) * 4 + 0.5)
    assert bound.srcc == pytest.approx(stats.spearmanr(q, y)[0], abs=1e-12)
    assert bound.plcc == pytest.approx(np.corrcoef(q, y)[0, 1], abs=1e-12)
    assert 0 < bound.mean < 1
    bounds = [levels_mod.level_bound("x", y, k) for k in (3, 5, 9)]
    assert bounds[0].mean < bounds[1].mean < bounds[2].mean  # more levels carry more of the labels


def test_figures_levels_command(tiny_root, tmp_path, capsys):
    from iqabench.cli.main import main

    code = main(["--data-root", str(tiny_root), "--results", str(tmp_path), "figures", "levels", "--dataset", "tiny",
                 "--levels", "3,7"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| K | tiny |" in out
    rows = list(csv.DictReader(open(tmp_path / "figures" / "levels.csv")))
    assert [(r["dataset"], r["levels"], r["n"]) for r in rows] == [("tiny", "3", "36"), ("tiny", "7", "36")]
    assert float(rows[1]["mean"]) == pytest.approx((float(rows[1]["srcc"]) + float(rows[1]["plcc"])) / 2, abs=1e-6)


def test_visual_prompt_figure_and_cost_table(tiny_root, tmp_path, capsys):
    """Train a tiny vp-owl2 prompt, score it and a zero-shot method, then draw the prompt on 3 images and
    tabulate both runs: the prompt's parameters are counted from its checkpoint, the zero-shot run's are 0."""
    from iqabench.cli.main import main
    from iqabench.methods.vp_owl2 import VpOwl2
    from iqabench.report.figures import draw_method_figure
    from iqabench.run import RunConfig, run
    from iqabench.train import TrainConfig, train

    options = VpOwl2.contract_options(tmp_path)
    options["lr"] = 40.0  # a prompt that visibly differs from zero after two steps
    results = tmp_path / "results"
    common = dict(method="vp-owl2", dataset="tiny", data_root=tiny_root, results=results, options=options)
    train(TrainConfig(**common, limit=6, progress=False), on_log=lambda m: None)  # at the recipe batch: run finds it
    run(RunConfig(**common, batch_size=2, limit=6, progress=False, n_boot=0), on_log=lambda m: None)
    run(RunConfig(method="slow-sharpness", dataset="tiny", data_root=tiny_root, results=results, limit=4,
                  progress=False, n_boot=0), on_log=lambda m: None)  # zero-shot: nothing trained
    figure = draw_method_figure(RunConfig(**common, batch_size=2, limit=6, device="cpu"), 3, tmp_path / "fig",
                                on_log=lambda m: None)
    assert len(figure.files) == 1 and figure.files[0].name.startswith("vp-owl2_tiny_")
    image, pixels = _not_blank(figure.files[0])
    # one row for the prompt, one per image, each panel 160 px wide plus its caption: 2 panels side by side
    assert image.width >= 160 * 2 + 6 * 3 and image.height > 4 * 160  # wider when the title is
    left, right = pixels[:, 6:166], pixels[:, 172:332]
    assert not np.array_equal(left[200:], right[200:])  # the prompted images differ from the plain ones

    assert main(["--results", str(results), "figures", "cost"]) == 0
    out = capsys.readouterr().out
    rows = {r["method"].split(" ")[0]: r for r in csv.DictReader(open(results / "figures" / "cost.csv"))}
    assert set(rows) == {"vp-owl2", "slow-sharpness"}
    saved = json.loads(next((results / "checkpoints").rglob("prompt.json")).read_text())["config"]
    # a padding prompt of p px on an S px image: 2 bands of p x S and 2 of (S - 2p) x p, 3 channels each
    p, s = options["vp_size"], saved["image_size"]
    assert int(rows["vp-owl2"]["trainable_parameters"]) == 3 * (2 * p * s + 2 * (s - 2 * p) * p)
    assert rows["slow-sharpness"]["trainable_parameters"] == "0"
    assert all(float(r["seconds_per_image"]) > 0 for r in rows.values()) and "trainable parameters" in out
    _not_blank(results / "figures" / "cost.png", min_colours=2)


def test_dog_iqa_segments_figure_by_the_command(tiny_root, tmp_path, capsys):
    import json

    from iqabench.cli.main import main
    from iqabench.methods.dog_iqa import DogIqa

    os.environ["HF_HUB_OFFLINE"] = "1"
    options = DogIqa.contract_options(tmp_path)
    options.update(judge_mode="logits", min_area_fraction=0.02)
    pairs = [a for k, v in options.items() for a in ("-o", f"{k}={v if isinstance(v, str) else json.dumps(v)}")]
    code = main(["--data-root", str(tiny_root), "--results", str(tmp_path / "r"), "figures", "method", "--method",
                 "dog-iqa", "--dataset", "tiny", *pairs, "--n", "2", "--batch-size", "2", "--device", "cpu"])
    assert code == 0
    written = [line.split(" ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    assert len(written) == 1 and written[0].endswith("dog-iqa_tiny_byref-ratio34-33-33-seed0_segments.png")
    assert written[0].startswith(str(tmp_path / "r" / "figures"))
    image, _ = _not_blank(written[0])
    # two rows (images) of the image, its segments and up to three crops, each panel 160 px wide
    assert image.width >= 160 * 3 + 6 * 4 and image.height > 2 * 160


def test_figure_refusals_are_one_line(tiny_root, tmp_path, capsys):
    from iqabench.cli.main import main

    args = ["--data-root", str(tiny_root), "--results", str(tmp_path)]
    assert main([*args, "figures", "method", "--method", "slow-sharpness", "--dataset", "tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["iqabench: error: method slow-sharpness draws no figure of its own"]
    assert main([*args, "figures", "cost"]) == 2
    assert "no finished runs to tabulate" in capsys.readouterr().err
    assert main([*args, "figures", "levels", "--dataset", "tiny", "--levels", "3,x"]) == 2
    assert "expected integers" in capsys.readouterr().err
