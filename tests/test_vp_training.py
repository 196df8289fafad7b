"""Training visual prompts (vp-llava, vp-owl2) on tiny random models built here: the loss goes
down, the selected prompt is saved and restored bit-exactly, a stopped training resumes to the
same result as an uninterrupted one, scoring follows the seed's order of operations, training
fits the engine's targets (never the raw labels), and a published prompt scores without training."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import transformers  # noqa: F401

torch.set_num_threads(1)
os.environ["HF_HUB_OFFLINE"] = "1"

from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from iqabench.api import RunContext, Sample, SampleSource  # noqa: E402
from iqabench.errors import IqaError  # noqa: E402
from iqabench.methods import softmax, vp_owl2  # noqa: E402
from iqabench.methods.visual_prompt import VisualPrompt  # noqa: E402
from iqabench.models.scoring import IMAGENET_MEAN, IMAGENET_STD, word_set_score  # noqa: E402
from iqabench.models.tiny_llava import build_tiny_llava  # noqa: E402


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"), seed=2)


@pytest.fixture(scope="module")
def owl2_dir(tmp_path_factory):
    from iqabench.models import tiny_owl2  # a broken Owl2 module must fail here, not skip
    return tiny_owl2.build_tiny_owl2(tmp_path_factory.mktemp("tiny_owl2"), seed=2)


def _source(n=8, seed=0, label=lambda target: 10.0 * target) -> SampleSource:
    """Images whose brightness sets the target, so the prompt has something to learn. Targets are
    what the engine computes (higher is better, in [0, 1]); `label` is the raw score beside it."""
    rng = np.random.default_rng(seed)
    samples = {}
    for i in range(n):
        level = (i % 4) / 3.0
        pixels = np.clip(rng.normal(level * 200 + 20, 30, (48, 60, 3)), 0, 255).astype(np.uint8)
        target = 0.1 + 0.8 * level
        samples[f"im{i}"] = Sample(id=f"im{i}", image=Image.fromarray(pixels), label=label(target), target=target)
    return SampleSource(list(samples), samples.__getitem__)


BACKENDS = ["llava", "owl2"]


def _method(kind, folder, dataset="toy", **options):
    if kind == "llava":
        cls, defaults = vp_owl2.VpLlava, {"vp_size": 8}
    else:
        cls, defaults = vp_owl2.VpOwl2, {"vp_size": 4}
    opts = cls.Options(backend_path=str(folder), **{**defaults, **options})
    method = cls(opts)
    method.ctx = RunContext(batch_size=4, dataset=dataset)  # what the engine's setup(ctx) gives
    return method


@pytest.fixture(params=BACKENDS)
def model(request):
    return request.param, request.getfixturevalue(f"{request.param}_dir")


def _mse(method, prompt, source):
    samples = [source.load(i) for i in source.ids]
    pixels = method.scorer.pixels([s.image for s in samples])
    targets = torch.tensor([s.target for s in samples])
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(method._prompted_scores(prompt, pixels), targets))


def test_training_lowers_the_loss_and_saves_a_restorable_prompt(model, tmp_path):
    kind, folder = model
    source = _source()
    method = _method(kind, folder, epochs=3, flip=False)
    method.setup(method.ctx)
    before = _mse(method, VisualPrompt(method.prompt_config(), seed=42), source)
    summary = method.fit(source, source, tmp_path, seed=42)
    assert summary["epochs_run"] == 3 and len(summary["train_loss"]) == 3
    assert summary["stopped"] == "epochs" and summary["resumed_from"] is None

    last = VisualPrompt(method.prompt_config())
    last.load_state_dict(load_file(str(tmp_path / "state.safetensors")))
    after = _mse(method, last, source)
    assert after < before, (before, after)

    saved = load_file(str(tmp_path / "prompt.safetensors"))
    info = json.loads((tmp_path / "prompt.json").read_text())
    assert info["epoch"] == summary["best_epoch"] and info["config"]["type"] == "padding"
    fresh = _method(kind, folder, epochs=3, flip=False)
    fresh.load_checkpoint(tmp_path)
    fresh.setup(fresh.ctx)
    assert set(fresh.prompt.tensors) == set(saved)
    for name, value in saved.items():
        assert torch.equal(fresh.prompt.tensors[name].detach(), value)
    assert fresh.fingerprint()["prompt_sha"] == method.fingerprint()["prompt_sha"]
    scores = fresh.score([source.load("im0"), source.load("im3")])
    assert scores == pytest.approx(method.score([source.load("im0"), source.load("im3")]), abs=1e-6)


def test_a_stopped_training_resumes_to_the_uninterrupted_result(model, tmp_path):
    kind, folder = model
    source = _source(6)
    whole = _method(kind, folder, epochs=3)
    whole_summary = whole.fit(source, source, tmp_path / "whole", seed=7)

    first = _method(kind, folder, epochs=1)
    first.fit(source, source, tmp_path / "split", seed=7)  # "killed" after epoch 1
    state = json.loads((tmp_path / "split" / "state.json").read_text())
    assert state["epoch"] == 1 and state["seed"] == 7
    rest = _method(kind, folder, epochs=3)
    rest_summary = rest.fit(source, source, tmp_path / "split", seed=7)
    assert rest_summary["resumed_from"] == {"epoch": 1, "step_in_epoch": 0} and rest_summary["epochs_run"] == 3
    assert rest_summary["history"] == whole_summary["history"]
    a = load_file(str(tmp_path / "whole" / "state.safetensors"))
    b = load_file(str(tmp_path / "split" / "state.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    again = _method(kind, folder, epochs=3).fit(source, source, tmp_path / "split", seed=7)
    assert again["epochs_run"] == 3 and again["history"] == rest_summary["history"]  # nothing left to do
    with pytest.raises(IqaError, match="lr"):
        _method(kind, folder, epochs=4, lr=5.0).fit(source, source, tmp_path / "split", seed=7)


def test_scoring_order_prompt_clamp_then_imagenet_normalisation(llava_dir, tmp_path):
    method = _method("llava", llava_dir, epochs=1, normalization="imagenet")
    method.setup(method.ctx)
    prompt = VisualPrompt(method.prompt_config(), seed=3)
    with torch.no_grad():
        for p in prompt.parameters():
            p.mul_(200)  # saturate tanh so the clamp matters
    method.prompt = prompt
    samples = [source_sample for source_sample in (_source(2).load("im0"), _source(2).load("im1"))]
    backend = method.scorer.backend
    x = backend.to_pixels([s.image for s in samples])
    prompted = torch.clamp(x + prompt.additive().detach(), 0, 1)
    normed = (prompted - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = backend.next_token_logits(normed, method.options.prompt)
    ids = method.scorer.token_ids
    expected = word_set_score(logits, ids["positive"], ids["negative"]).tolist()
    assert method.score(samples) == pytest.approx(expected, abs=1e-6)
    # the model's own normalisation is a different input, hence a different score
    model_norm = _method("llava", llava_dir, normalization="model")
    model_norm.setup(model_norm.ctx)
    model_norm.prompt = prompt
    assert model_norm.score(samples) != pytest.approx(expected, abs=1e-6)


def test_training_gradient_reaches_only_the_prompt(llava_dir):
    method = _method("llava", llava_dir)
    method.setup(method.ctx)
    prompt = VisualPrompt(method.prompt_config(), seed=0)
    source = _source(2)
    pixels = method.scorer.pixels([source.load(i).image for i in source.ids])
    method._prompted_scores(prompt, pixels).sum().backward()
    assert all(float(p.grad.abs().sum()) > 0 for p in prompt.parameters())
    assert all(p.grad is None and not p.requires_grad for p in method.scorer.backend.model.parameters())


def test_published_prompt_file_is_loaded_and_shape_checked(llava_dir, tmp_path):
    probe = _method("llava", llava_dir)
    probe.setup(probe.ctx)
    published = VisualPrompt(probe.prompt_config(), seed=11)
    torch.save({k: v.detach() for k, v in published.tensors.items()}, tmp_path / "visual_prompt.pth")
    method = _method("llava", llava_dir, prompt_path=str(tmp_path / "visual_prompt.pth"))
    assert vp_owl2.VpLlava.check_available(method.options) is None
    method.setup(method.ctx)
    assert method.prompt.digest() == published.digest()
    wrong = _method("llava", llava_dir, vp_size=5, prompt_path=str(tmp_path / "visual_prompt.pth"))
    with pytest.raises(IqaError, match="shape"):
        wrong.setup(wrong.ctx)
    missing = vp_owl2.VpLlava.Options(backend_path=str(llava_dir), prompt_path=str(tmp_path / "none.pth"))
    assert "not found" in vp_owl2.VpLlava.check_available(missing)
    with pytest.raises(IqaError, match="no visual prompt"):
        _method("llava", llava_dir).score([_source(1).load("im0")])
    # the file's bytes are in the fingerprint before setup (the engine keys runs on it)
    fp = _method("llava", llava_dir, prompt_path=str(tmp_path / "visual_prompt.pth")).fingerprint()
    assert len(fp["prompt_file_sha256"]) == 16
    # a published file becomes a checkpoint folder that load_checkpoint restores exactly
    folder = vp_owl2.import_prompt(tmp_path / "visual_prompt.pth", tmp_path / "ckpt", "padding", 8,
                                   probe.scorer.backend.image_size, "vp-llava")
    loaded = _method("llava", llava_dir)
    loaded.load_checkpoint(folder)
    loaded.setup(loaded.ctx)
    assert loaded.prompt.digest() == published.digest()
    with pytest.raises(IqaError, match="shape"):
        vp_owl2.import_prompt(tmp_path / "visual_prompt.pth", tmp_path / "bad", "padding", 6, 56)


def test_recipes_follow_the_dataset_name_the_engine_passes():
    # the published recipes: tests/test_presets.py; here, how the dataset name selects one
    for name, expected in [("koniq10k-512x384", vp_owl2.RECIPES["koniq10k"]), ("spaq", vp_owl2.DEFAULT_RECIPE),
                           (None, vp_owl2.DEFAULT_RECIPE)]:
        m = vp_owl2.VpOwl2()
        m.ctx = RunContext(dataset=name)
        assert m.recipe()[:2] == expected
    m = vp_owl2.VpOwl2(vp_owl2.VpOwl2.Options(epochs=2))
    m.ctx = RunContext(batch_size=3, dataset="kadid10k")
    assert m.recipe()[:2] == (3, 2)
    assert vp_owl2.VpOwl2.default_batch_size(vp_owl2.VpOwl2.Options(), "kadid10k") == 32
    with pytest.raises(IqaError, match="-o batch_size is not an option; the training batch is `iqabench train --batch-size N`"):
        vp_owl2.VpOwl2.Options(batch_size=4)
    o = vp_owl2.VpOwl2.Options()
    assert (o.patience, o.normalization) == (6, "imagenet") and o.backend == "owl2"
    assert vp_owl2.VpOwl2.info.kind == "trainable"
    assert vp_owl2.VpOwl2.checkpoint_files() == ("prompt.safetensors", "prompt.json")
    with pytest.raises(ValueError):
        vp_owl2.VpOwl2.Options(vp_type="ring")
    with pytest.raises(ValueError, match="label_scale"):
        vp_owl2.VpOwl2.Options(label_scale=5.0)  # the engine scales labels, not the method


def test_training_fits_targets_and_ignores_raw_labels(llava_dir, tmp_path):
    """The same targets with wildly different raw labels (another scale, reversed) train the same prompt."""
    runs = []
    for i, label in enumerate([lambda t: 10.0 * t, lambda t: 100.0 - 37.0 * t]):
        source = _source(4, label=label)
        method = _method("llava", llava_dir, epochs=1, max_steps=1, flip=False)
        runs.append(method.fit(source, source, tmp_path / str(i), seed=3))
    assert runs[0]["history"] == runs[1]["history"]
    no_targets = {k: Sample(k, _source(4).load(k).image, label=1.0) for k in _source(4).ids}
    bare = SampleSource(list(no_targets), no_targets.__getitem__)
    with pytest.raises(IqaError, match="no training target"):
        _method("llava", llava_dir, epochs=1, max_steps=1).fit(bare, bare, tmp_path / "bare", seed=3)


def test_early_stop_after_patience_epochs_without_gain(llava_dir, tmp_path):
    train = _source(4)
    flat = {f"v{i}": Sample(id=f"v{i}", image=train.load(f"im{i}").image, label=5.0, target=0.5) for i in range(4)}
    val = SampleSource(list(flat), flat.__getitem__)  # constant labels: the criterion never improves
    summary = _method("llava", llava_dir, epochs=5, patience=2).fit(train, val, tmp_path, seed=1)
    assert summary["stopped"] == "early_stop" and summary["epochs_run"] == 3 and summary["best_epoch"] == 1
    assert (tmp_path / "prompt.safetensors").is_file()
    again = _method("llava", llava_dir, epochs=8, patience=2).fit(train, val, tmp_path, seed=1)
    assert again["epochs_run"] == 3  # an early-stopped training stays stopped


def _odd_images():
    """Sizes whose centre crop starts at a different pixel under floor and torchvision rounding
    (the tiny Owl2 takes 28 px: 28 x 31 and 28 x 59 leave 3 and 31 pixels to crop)."""
    rng = np.random.default_rng(4)
    return [Sample(id=f"o{i}", image=Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
            for i, (h, w) in enumerate([(28, 31), (59, 28), (45, 80)])]


def _zero_prompt(method):
    return {name: torch.zeros(shape) for name, shape in method.prompt_config().shapes().items()}


def test_unprompted_vp_owl2_scores_exactly_as_softmax_owl2(owl2_dir):
    """softmax-owl2 is seed 000's "without visual prompt" baseline: the same pipeline, no prompt."""
    samples = _odd_images()
    vp = _method("owl2", owl2_dir)
    vp.setup(vp.ctx)
    vp._install(_zero_prompt(vp), "zeros")
    baseline = softmax.SoftmaxOwl2(softmax.SoftmaxOwl2.Options(backend_path=str(owl2_dir)))
    assert vp.score(samples) == baseline.score(samples)
    shared = softmax.SoftmaxOwl2.Options().model_dump()
    assert {k: v for k, v in vp_owl2.VpOwl2.Options().model_dump().items() if k in shared} == shared
    # the check can fail: the model's own normalisation or the processor's crop offset moves the scores
    for other in ({"normalization": "model"}, {"resize": "model"}):
        changed = softmax.SoftmaxOwl2(softmax.SoftmaxOwl2.Options(backend_path=str(owl2_dir), **other))
        assert changed.score(samples) != pytest.approx(vp.score(samples), abs=1e-7), other


def test_a_published_prompt_scores_without_training(owl2_dir, tmp_path):
    from safetensors.torch import save_file

    probe = _method("owl2", owl2_dir)
    probe.setup(probe.ctx)
    published = VisualPrompt(probe.prompt_config(), seed=5)
    with torch.no_grad():
        for p in published.parameters():
            p.mul_(100)  # a trained prompt sits far from its 0.01-scale initialisation
    pth = tmp_path / "visual_prompt.pth"
    torch.save(published.state_dict(), pth)  # the public trainer saves visual_prompter.state_dict() so
    sft = tmp_path / "published.safetensors"
    save_file(published.state_dict(), str(sft))
    samples = _odd_images()
    probe._install(_zero_prompt(probe), "zeros")
    unprompted = probe.score(samples)
    probe._install(published.state_dict(), "by hand")
    by_hand = probe.score(samples)

    cls = vp_owl2.VpOwl2
    for path in (pth, sft):
        options = cls.Options(backend_path=str(owl2_dir), vp_size=4, prompt_path=str(path))
        assert cls.external_weights(options) == path  # the engine skips the checkpoint lookup
        method = cls(options)
        scores = method.score(samples)  # no fit, no load_checkpoint
        assert method.prompt.digest() == published.digest()
        assert scores == pytest.approx(by_hand, abs=1e-6)
        assert all(abs(a - b) > 1e-4 for a, b in zip(scores, unprompted))
        with pytest.raises(IqaError, match="drop -o prompt_path"):
            cls(options).fit(_source(2), _source(2), tmp_path / "fit", seed=1)
        with pytest.raises(IqaError, match="both a checkpoint"):
            cls(options).load_checkpoint(tmp_path)
    assert cls.external_weights(cls.Options()) is None
    with pytest.raises(IqaError, match="not found"):
        cls.external_weights(cls.Options(prompt_path=str(tmp_path / "missing.pth")))


def test_sigkill_mid_training_resumes_to_the_uninterrupted_checkpoint(llava_dir, tiny_root, tmp_path):
    """`iqabench train` is SIGKILLed as soon as the first epoch's state is written (inside epoch 2);
    the rerun resumes and ends with the same prompt and state, bit for bit, as a run never killed."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from iqabench.train import TrainConfig, train
    from iqabench.training import read_state

    options = {"backend_path": str(llava_dir), "vp_size": 8, "epochs": 3, "max_steps": 2, "lr": 20.0}
    cfg = dict(method="vp-llava", dataset="tiny", data_root=tiny_root, options=options, limit=8, batch_size=2,
               progress=False)
    straight, _ = train(TrainConfig(**cfg, results=tmp_path / "a"), on_log=lambda m: None)
    workdir = tmp_path / "b" / straight.relative_to(tmp_path / "a")
    args = [sys.executable, "-m", "iqabench.cli.main", "--plugin",
            str(Path(__file__).parent / "plugins" / "tiny_dataset_plugin.py"), "train", "--method", "vp-llava",
            "--dataset", "tiny", "--data-root", str(tiny_root), "--results", str(tmp_path / "b"), "--limit", "8",
            "--batch-size", "2", "--no-progress"] + [a for k, v in options.items() for a in ("-o", f"{k}={v}")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    start = time.monotonic()
    while not (workdir / "state.safetensors").is_file() and proc.poll() is None and time.monotonic() - start < 120:
        time.sleep(0.002)
    proc.kill()
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"training ended before it was killed: {err[-2000:]}"
    assert read_state(workdir / "state.safetensors")[1]["epoch"] < 3
    resumed, summary = train(TrainConfig(**cfg, results=tmp_path / "b"), on_log=lambda m: None)
    assert resumed == workdir and summary["resumed_from"] is not None and summary["epochs_run"] == 3
    for file in ("prompt.safetensors", "state.safetensors"):
        a, b = load_file(str(straight / file)), load_file(str(workdir / file))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file
