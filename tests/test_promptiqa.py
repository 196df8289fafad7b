"""PromptIQA (seed 003): the network, the recipe through `iqabench train`, resume, and prompts.

Every model here is the real architecture on the tiny ViT preset (64 px, 32 wide, 4 blocks),
randomly initialised; the paper-size network is only built on the meta device (no memory).
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from iqabench.api import RunContext, Sample, SampleSource
from iqabench.errors import IqaError
from iqabench.methods.promptiqa import PromptIQA, weights
from iqabench.methods.promptiqa import prompt as prompts
from iqabench.methods.promptiqa import train as recipe
from iqabench.methods.promptiqa.model import PRESETS, PromptIQANet, parameter_counts
from iqabench.metrics import srcc
from iqabench.run import RunConfig, run
from iqabench.train import TrainConfig, train
from iqabench.training import read_state

PLUGINS = Path(__file__).parent / "plugins"

TINY = {"backbone": "vit_tiny"}
QUIET = {"on_log": lambda m: None}


# -- the network -------------------------------------------------------------------------------
def _block(d: int, qkv_bias: bool) -> int:
    """A ViT block: 2 LayerNorms, qkv, proj, a 4x MLP."""
    return 12 * d * d + 10 * d + (3 * d if qkv_bias else 0)


def _mal(d: int, views: int, grid: int) -> int:
    channel, pixel = d * views, grid * grid * views
    pixel_attention = 2 * (d * (d // 8) + d // 8) + d * d + d + 1
    return 3 * (channel * channel + channel) + 3 * (pixel * pixel + pixel) + views * pixel_attention


def expected_paper_counts() -> dict[str, int]:
    """The sizes stated by the seed (3 + 3 + 8 ViT blocks of width M = 128, regressor 128-64-1) and by
    the authors' code (timm ViT-B/8 at 224 px, MoNet: 3 MALs over 4 taps, a fusion MAL, a ViT block,
    a 3-conv head to 128), counted by hand from the layer shapes."""
    d, g, m, patch = 768, 28, 128, 8
    vit = 3 * patch * patch * d + d + d + (g * g + 1) * d + 12 * _block(d, True)
    head = d * 256 * 25 + 256 + 2 * 256 + 256 * m * 9 + m + 2 * m + m * m * 9 + m + 2 * m
    monet = 3 * _mal(d, 4, g) + _mal(d, 3, g) + _block(d, False) + head
    fc = m * 64 + 64 + 64 * m + m
    return {"visual encoder: ViT": vit, "visual encoder: MoNet (MALs, fusion MAL, block, conv head)": monet,
            "prompt encoder (3 ViT blocks + FC)": 3 * _block(m, False) + fc,
            "ISPP fusion (3 ViT blocks)": 3 * _block(m, False),
            "image-prompt fusion (8 ViT blocks + norm)": 8 * _block(m, True) + 2 * m,
            "regressor (FC 128-64-1)": m * 64 + 64 + 64 + 1}


def test_paper_size_network_matches_the_seed():
    with torch.device("meta"):
        net = PromptIQANet(PRESETS["vit_b8"])
    counts = parameter_counts(net)
    print("\nPromptIQA paper-size parameters:")
    for part, n in counts.items():
        print(f"  {n:>12,d}  {part}")
    expected = expected_paper_counts()
    assert {k: counts[k] for k in expected} == expected
    assert counts["total"] == sum(expected.values())
    # what the seed states: 3 + 3 + 8 ViT blocks, M = 128, regressor 128 -> 64 -> 1, 10 ISPs
    assert (len(net.i_p_fusion), len(net.prompt_fusion), len(net.blocks)) == (3, 3, 8)
    linears = [mod for mod in net.score_block if isinstance(mod, torch.nn.Linear)]
    assert [(x.in_features, x.out_features) for x in linears] == [(128, 64), (64, 1)]
    assert PromptIQA.Options().prompt_size == 10 and PromptIQA.Options().backbone == "vit_b8"


def test_a_group_scores_each_image_with_the_others_as_prompt():
    torch.manual_seed(0)
    net = PromptIQANet(PRESETS["vit_tiny"]).eval()
    images, scores = torch.randn(5, 3, 64, 64), torch.rand(5)
    with torch.no_grad():
        group = net.forward_group(images, scores)
        for i in range(5):
            others = [j for j in range(5) if j != i]
            alone = net.predict(images[i:i + 1], net.prompt_tokens(images[others], scores[others]))
            torch.testing.assert_close(alone, group[i:i + 1])
        changed = net.predict(images[:1], net.prompt_tokens(images[1:], 1 - scores[1:]))
    assert not torch.allclose(changed, group[:1])  # the prompt's scores reach the prediction
    assert ((group > 0) & (group < 1)).all()


def test_score_augmentations_follow_eq4():
    rng = np.random.default_rng(0)
    s = np.array([0.2, 0.4, 0.5])
    assert np.allclose(recipe.augment_scores(s, rng, 1.0, 0.0)[0], s / 0.5)  # random scaling: S / max(S)
    assert np.allclose(recipe.augment_scores(s, rng, 0.0, 1.0)[0], 1 - s)  # random flipping: alpha - S
    assert np.allclose(recipe.augment_scores(s, rng, 1.0, 1.0)[0], 1 - s / 0.5)
    assert np.allclose(recipe.augment_scores(s, rng, 0.0, 0.0)[0], s)
    draws = [recipe.augment_scores(s, rng, 0.5, 0.1)[1] for _ in range(4000)]
    assert abs(np.mean(["scale" in d for d in draws]) - 0.5) < 0.05
    assert abs(np.mean(["flip" in d for d in draws]) - 0.1) < 0.03


def test_prompt_selection():
    pairs = [(f"i{n}", n / 20) for n in range(21)]
    assert [i for i, _ in prompts.interval(pairs, 5)] == ["i0", "i5", "i10", "i15", "i20"]
    assert prompts.random_ids([i for i, _ in pairs], 4, 3) == prompts.random_ids([i for i, _ in pairs], 4, 3)
    assert prompts.random_ids([i for i, _ in pairs], 4, 3) != prompts.random_ids([i for i, _ in pairs], 4, 4)
    with pytest.raises(IqaError, match="prompt_ids: nope not among"):
        prompts.check_fixed([i for i, _ in pairs], ["i1", "nope"])
    with pytest.raises(IqaError, match="prompt_size=30: only 21"):
        prompts.interval(pairs, 30)
    with pytest.raises(ValueError, match="prompt_ids names 2 images, prompt_size is 3"):
        PromptIQA.Options(prompt_size=3, prompt_ids=("a", "b"))


class Payload:
    """Stands for any pickled object: loading it would run code."""


# -- training through the engine on `tiny` ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_fit(tiny_root, tmp_path_factory):
    """6 epochs on tiny's default split (12 train images of one reference, 12 val of another)."""
    results = tmp_path_factory.mktemp("promptiqa-tiny")
    options = {**TINY, "prompt_size": 3, "epochs": 6, "lr": 3e-4, "random_scale_p": 0.0, "random_flip_p": 0.0,
               "hflip": False}  # no random relabelling: the loss of one epoch compares with another's
    workdir, summary = train(TrainConfig(method="promptiqa", dataset="tiny", data_root=tiny_root, results=results,
                                         options=options, batch_size=1), **QUIET)
    return results, options, workdir, summary


def test_training_on_tiny_lowers_the_loss_and_run_scores_with_it(tiny_fit, tiny_root):
    results, options, workdir, summary = tiny_fit
    losses = summary["train_loss"]
    print(f"\ntiny: train loss {[round(x, 4) for x in losses]}; val SRCC untrained {summary['history'][0]['val_srcc']:.3f}, "
          f"selected epoch {summary['best_epoch']} {summary['best_val']['val_srcc']:.3f}")
    assert np.mean(losses[-3:]) < losses[0]
    assert summary["criterion"] == "val SRCC" and summary["n_failed_images"] == 0
    assert [r["epoch"] for r in summary["history"]] == list(range(7))
    meta = json.loads((workdir / "checkpoint.json").read_text())
    assert meta["selected"]["epoch"] == summary["best_epoch"]
    assert meta["init"] == {"backbone": "vit_tiny", "init": "random"}
    assert meta["prompt"]["size"] == 3 and meta["prompt"]["selection"] == "interval"

    # trained with --batch-size 1, not the recipe's 6: `run` is given that checkpoint folder
    result = run(RunConfig(method="promptiqa", dataset="tiny", data_root=tiny_root, results=results, options=options,
                           batch_size=4, progress=False, n_boot=20, checkpoint=workdir), **QUIET)
    assert result.metrics["n"] == 12 and result.metrics["n_failed"] == 0
    runtime = [json.loads(x) for x in next(result.run_dir.glob("runtime.rank*.jsonl")).read_text().splitlines()]
    prompt = runtime[-1]["prompt"]
    # the runner gives the method the scored split's train part (the engine hook): same draw as training's
    assert prompt["source"] == "engine" and prompt["ids"] == meta["prompt"]["ids"]
    assert runtime[-1]["fingerprint"]["init"]["init"] == "random"


def _sigkill_once_state_exists(args: list[str], state: Path, timeout: float = 120.0) -> None:
    """Start `iqabench train`, SIGKILL it as soon as its first state file is written (mid-training)."""
    cmd = [sys.executable, "-m", "iqabench.cli.main", "--plugin", str(PLUGINS / "tiny_dataset_plugin.py"), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    start = time.monotonic()
    while not state.is_file() and proc.poll() is None and time.monotonic() - start < timeout:
        time.sleep(0.002)
    proc.kill()
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"training ended before it was killed: {err[-2000:]}"


def test_sigkill_mid_training_resumes_to_the_uninterrupted_checkpoint(tiny_root, tmp_path):
    options = {**TINY, "prompt_size": 3, "epochs": 3}
    config = {"method": "promptiqa", "dataset": "tiny", "data_root": tiny_root, "options": options, "limit": 8,
              "batch_size": 1}
    straight, _ = train(TrainConfig(**config, results=tmp_path / "a"), **QUIET)
    workdir = tmp_path / "b" / straight.relative_to(tmp_path / "a")
    args = ["train", "--method", "promptiqa", "--dataset", "tiny", "--data-root", str(tiny_root), "--results",
            str(tmp_path / "b"), "--limit", "8", "--batch-size", "1", "--no-progress"]
    for key, value in options.items():
        args += ["-o", f"{key}={value}"]
    _sigkill_once_state_exists(args, workdir / "state.safetensors")
    _, killed = read_state(workdir / "state.safetensors")
    assert killed["epoch"] < 3  # killed inside the training
    resumed, summary = train(TrainConfig(**config, results=tmp_path / "b"), **QUIET)
    assert resumed == workdir and summary["resumed_from"] == {"epoch": killed["epoch"], "step_in_epoch": 0}
    assert [r["epoch"] for r in summary["history"]] == [0, 1, 2, 3] and summary["epochs_run"] == 3
    for read, file in ((read_state, "state.safetensors"), (weights.read_tensors_with_meta, "checkpoint.safetensors")):
        a, b = read(straight / file)[0], read(resumed / file)[0]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file  # as if never killed

    longer, summary = train(TrainConfig(**{**config, "options": {**options, "epochs": 4}}, results=tmp_path / "b"),
                            **QUIET)  # epochs is a schedule option: more of them continue the same fit
    assert longer == resumed and summary["resumed_from"] == {"epoch": 3, "step_in_epoch": 0} and summary["epochs_run"] == 4
    with pytest.raises(IqaError, match="-o groups_per_step is not an option; the groups per step are the training "
                                       "batch, `iqabench train --batch-size N`"):
        PromptIQA.Options(groups_per_step=2)


def test_a_split_without_val_keeps_the_last_epoch(tiny_root, tmp_path):
    workdir, summary = train(TrainConfig(method="promptiqa", dataset="tiny", split="ratio67-0-33-seed0",
                                         data_root=tiny_root, results=tmp_path, limit=8, batch_size=1,
                                         options={**TINY, "prompt_size": 3, "epochs": 2}), **QUIET)
    assert summary["criterion"] == "last epoch (no val part)" and summary["best_epoch"] == 2
    assert json.loads((workdir / "checkpoint.json").read_text())["selected"]["epoch"] == 2


# -- learning a quality signal, judged on images never used for training or selection -------------
def blur_source(textures, prefix: str) -> SampleSource:
    """Random textures blurred at 6 levels; target = sharpness in [0, 1] (content varies, quality is blur)."""
    samples = {}
    for t in textures:
        rng = np.random.default_rng(t)
        base = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(1))
        for level in range(6):
            sid = f"{prefix}{t}-{level}"
            samples[sid] = Sample(sid, base.filter(ImageFilter.GaussianBlur(0.5 * level)), label=level,
                                  target=1 - level / 5)
    return SampleSource(list(samples), samples.__getitem__)


@pytest.fixture(scope="module")
def blur_fit(tmp_path_factory):
    """The paper's recipe (scaling, flipping, h-flips) for 3 epochs on 24 images; the same code
    `iqabench train` calls."""
    options = PromptIQA.Options(**TINY, prompt_size=5, epochs=3, lr=1e-4)
    method = PromptIQA(options)
    method.setup(RunContext(batch_size=1))
    train_part, val_part = blur_source(range(4), "t"), blur_source(range(10, 12), "v")
    summary = method.fit(train_part, val_part, tmp_path_factory.mktemp("blur"), seed=0)
    return method, summary


def test_training_beats_the_untrained_network_on_held_out_images(blur_fit):
    method, summary = blur_fit
    test_part = blur_source(range(20, 22), "x")
    samples = [test_part.load(i) for i in test_part.ids]
    targets = [s.target for s in samples]

    untrained = PromptIQA(method.options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the fit's seed: the network it started from
        untrained._install(untrained._initial_net())
    untrained.stored_prompt = method.stored_prompt
    trained_srcc = srcc(np.array(method.score(samples)), np.array(targets))
    untrained_srcc = srcc(np.array(untrained.score(samples)), np.array(targets))
    print(f"\nblur: train loss {[round(x, 4) for x in summary['train_loss']]}; val SRCC untrained "
          f"{summary['history'][0]['val_srcc']:.3f} -> selected {summary['best_val']['val_srcc']:.3f}; "
          f"held-out SRCC untrained {untrained_srcc:.3f} -> trained {trained_srcc:.3f}")
    assert summary["best_val"]["val_srcc"] > summary["history"][0]["val_srcc"]
    assert trained_srcc > untrained_srcc


# -- prompts at scoring time -----------------------------------------------------------------
def test_prompt_from_the_engine_hook_or_a_file(blur_fit, tmp_path):
    method, _ = blur_fit
    new_set = blur_source(range(30, 32), "n")
    samples = [new_set.load(i) for i in new_set.ids]

    hooked = PromptIQA(method.options.model_copy(update={"prompt_select": "random", "prompt_seed": 5}))
    # the train part of the set being scored, as the engine gives it
    hooked.setup(RunContext(cache_dir=tmp_path / "cache", prompt_source=blur_source(range(40, 42), "p")))
    hooked.load_checkpoint(_checkpoint_of(method, tmp_path))
    hooked.score(samples[:2])
    described = hooked.fingerprint()["prompt"]
    assert described["source"] == "engine" and described["selection"] == "random (seed 5)"
    assert described["ids"] == prompts.random_ids(hooked.ctx.prompt_source.ids, 5, 5)
    assert hooked.runtime_stats()["prompt"] == described

    folder = tmp_path / "prompt"
    folder.mkdir()
    rows = []
    for sid in ["p40-0", "p40-2", "p41-3", "p41-5", "p40-4"]:
        sample = hooked.ctx.prompt_source.load(sid)
        sample.image.save(folder / f"{sid}.png")
        rows.append({"image": f"{sid}.png", "score": sample.target})
    with open(folder / "prompt.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["image", "score"])
        writer.writeheader()
        writer.writerows(rows)
    from_file = PromptIQA(method.options.model_copy(update={"prompt_file": str(folder / "prompt.csv")}))
    from_file.load_checkpoint(_checkpoint_of(method, tmp_path))
    scores = from_file.score(samples)
    assert from_file.fingerprint()["prompt"]["source"] == "file" and len(scores) == len(samples)

    inverted = [{**r, "score": 1 - r["score"]} for r in rows]
    with open(folder / "inverted.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["image", "score"])
        writer.writeheader()
        writer.writerows(inverted)
    flipped = PromptIQA(method.options.model_copy(update={"prompt_file": str(folder / "inverted.csv")}))
    flipped.load_checkpoint(_checkpoint_of(method, tmp_path))
    assert not np.allclose(flipped.score(samples), scores)  # the prediction follows the prompt


def _checkpoint_of(method, tmp_path):
    """A checkpoint folder holding the fitted network and its prompt."""
    folder = tmp_path / "ckpt"
    if not (folder / recipe.CHECKPOINT).is_file():
        folder.mkdir(exist_ok=True)
        recipe.save_checkpoint(folder, method.net, method.stored_prompt, {"epoch": None},
                               {"net": PRESETS["vit_tiny"].to_dict(), "backbone": "vit_tiny", "init": {}})
    return folder


def test_published_weights_load_as_tensors_only(blur_fit, tmp_path):
    method, _ = blur_fit
    samples = next(iter(blur_source(range(50, 51), "w").batches(6)))
    state = {f"module.{k}": v for k, v in method.net.state_dict().items()}  # the authors' DDP layout
    torch.save({"state_dict": state, "prompt_num": 5}, tmp_path / "best_model.pth.tar")
    csv_path = tmp_path / "p.csv"  # the same prompt as the checkpoint's, as a user would give it
    rows = []
    for i, (pixels, score) in enumerate(zip(method.stored_prompt.pixels, method.stored_prompt.scores)):
        Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(tmp_path / f"p{i}.png")
        rows.append(f"p{i}.png,{score!r}\n")
    csv_path.write_text("image,score\n" + "".join(rows))
    options = method.options.model_copy(update={"weights": str(tmp_path / "best_model.pth.tar"),
                                                "prompt_file": str(csv_path)})
    assert PromptIQA.external_weights(options) == tmp_path / "best_model.pth.tar"
    published = PromptIQA(options)
    published.setup(RunContext())
    np.testing.assert_allclose(published.score(samples), method.score(samples), rtol=1e-5, atol=1e-6)
    assert published.fingerprint()["init"]["init"] == "weights"

    torch.save({"state_dict": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(IqaError, match=r"evil.pth: refused, not a plain tensor file") as err:
        PromptIQA(method.options.model_copy(update={"backbone_weights": str(tmp_path / "evil.pth")}))._initial_net()
    assert "\n" not in str(err.value)
    with pytest.raises(IqaError, match="not a timm ViT weights file matching this backbone"):
        torch.save({"foo": torch.zeros(2)}, tmp_path / "foreign.pth")
        weights.load_backbone(PromptIQANet(PRESETS["vit_tiny"]), tmp_path / "foreign.pth")


def test_backbone_weights_initialise_the_vit(tmp_path):
    source = PromptIQANet(PRESETS["vit_tiny"])
    timm_layout = {**source.vit.state_dict(), "head.weight": torch.zeros(10, 32), "norm.weight": torch.ones(32)}
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in timm_layout.items()}, str(tmp_path / "vit.safetensors"))
    method = PromptIQA(PromptIQA.Options(**TINY, backbone_weights=str(tmp_path / "vit.safetensors")))
    net = method._initial_net()
    assert all(torch.equal(v, source.vit.state_dict()[k]) for k, v in net.vit.state_dict().items())
    assert method.init_info["init"] == "file" and len(method.init_info["sha256"]) == 16
