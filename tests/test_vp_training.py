"""Training visual prompts (vp-llava, vp-owl2) on tiny random models built here: the loss goes
down, the selected prompt is saved and restored bit-exactly, a stopped training resumes to the
same result as an uninterrupted one, and scoring follows the seed's order of operations."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
torch.set_num_threads(1)
os.environ["HF_HUB_OFFLINE"] = "1"

from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from iqabench.api import Sample, SampleSource  # noqa: E402
from iqabench.errors import IqaError  # noqa: E402
from iqabench.methods import vp_owl2  # noqa: E402
from iqabench.methods.softmax import IMAGENET_MEAN, IMAGENET_STD, word_set_score  # noqa: E402
from iqabench.methods.visual_prompt import VisualPrompt  # noqa: E402
from iqabench.models.tiny_llava import build_tiny_llava  # noqa: E402


@dataclasses.dataclass
class Card:
    name: str = "toy"
    label_scale: float | None = 10.0
    higher_better: bool = True
    score_range: tuple[float, float] = (0.0, 10.0)


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"), seed=2)


@pytest.fixture(scope="module")
def owl2_dir(tmp_path_factory):
    from iqabench.models import tiny_owl2  # a broken Owl2 module must fail here, not skip
    return tiny_owl2.build_tiny_owl2(tmp_path_factory.mktemp("tiny_owl2"), seed=2)


def _source(n=8, seed=0) -> SampleSource:
    """Images whose brightness sets the label, so the prompt has something to learn."""
    rng = np.random.default_rng(seed)
    samples = {}
    for i in range(n):
        level = (i % 4) / 3.0
        pixels = np.clip(rng.normal(level * 200 + 20, 30, (48, 60, 3)), 0, 255).astype(np.uint8)
        samples[f"im{i}"] = Sample(id=f"im{i}", image=Image.fromarray(pixels), label=1.0 + 8.0 * level)
    return SampleSource(list(samples), samples.__getitem__)


BACKENDS = ["llava", "owl2"]


def _method(kind, folder, **options):
    if kind == "llava":
        cls, defaults = vp_owl2.VpLlava, {"vp_size": 8}
    else:
        cls, defaults = vp_owl2.VpOwl2, {"vp_size": 4}
    opts = cls.Options(backend_path=str(folder), batch_size=4, **{**defaults, **options})
    method = cls(opts)
    method.card = Card()
    return method


@pytest.fixture(params=BACKENDS)
def model(request):
    return request.param, request.getfixturevalue(f"{request.param}_dir")


def _mse(method, prompt, source):
    samples = [source.load(i) for i in source.ids]
    pixels = method.scorer.backend.to_pixels([s.image for s in samples])
    targets = torch.tensor([s.label / 10.0 for s in samples])
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(method._prompted_scores(prompt, pixels), targets))


def test_training_lowers_the_loss_and_saves_a_restorable_prompt(model, tmp_path):
    kind, folder = model
    source = _source()
    method = _method(kind, folder, epochs=3, flip=False)
    method.setup()
    before = _mse(method, VisualPrompt(method.prompt_config(), seed=42), source)
    summary = method.fit(source, source, tmp_path, seed=42)
    assert summary["epochs_run"] == 3 and len(summary["train_loss"]) == 3
    assert summary["stopped"] == "epochs" and summary["resumed_from_epoch"] is None

    last = VisualPrompt(method.prompt_config())
    last.load_state_dict(load_file(str(tmp_path / "state.safetensors")))
    after = _mse(method, last, source)
    assert after < before, (before, after)

    saved = load_file(str(tmp_path / "prompt.safetensors"))
    info = json.loads((tmp_path / "prompt.json").read_text())
    assert info["epoch"] == summary["best_epoch"] and info["config"]["type"] == "padding"
    fresh = _method(kind, folder, epochs=3, flip=False)
    fresh.load_checkpoint(tmp_path)
    fresh.setup()
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
    assert rest_summary["resumed_from_epoch"] == 1 and rest_summary["epochs_run"] == 3
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
    method.setup()
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
    model_norm.setup()
    model_norm.prompt = prompt
    assert model_norm.score(samples) != pytest.approx(expected, abs=1e-6)


def test_training_gradient_reaches_only_the_prompt(llava_dir):
    method = _method("llava", llava_dir)
    method.setup()
    prompt = VisualPrompt(method.prompt_config(), seed=0)
    source = _source(2)
    pixels = method.scorer.backend.to_pixels([source.load(i).image for i in source.ids])
    method._prompted_scores(prompt, pixels).sum().backward()
    assert all(float(p.grad.abs().sum()) > 0 for p in prompt.parameters())
    assert all(p.grad is None and not p.requires_grad for p in method.scorer.backend.model.parameters())


def test_published_prompt_file_is_loaded_and_shape_checked(llava_dir, tmp_path):
    probe = _method("llava", llava_dir)
    probe.setup()
    published = VisualPrompt(probe.prompt_config(), seed=11)
    torch.save({k: v.detach() for k, v in published.tensors.items()}, tmp_path / "visual_prompt.pth")
    method = _method("llava", llava_dir, prompt_path=str(tmp_path / "visual_prompt.pth"))
    assert vp_owl2.VpLlava.check_available(method.options) is None
    method.setup()
    assert method.prompt.digest() == published.digest()
    wrong = _method("llava", llava_dir, vp_size=5, prompt_path=str(tmp_path / "visual_prompt.pth"))
    with pytest.raises(IqaError, match="shape"):
        wrong.setup()
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
    loaded.setup()
    assert loaded.prompt.digest() == published.digest()
    with pytest.raises(IqaError, match="shape"):
        vp_owl2.import_prompt(tmp_path / "visual_prompt.pth", tmp_path / "bad", "padding", 6, 56)


def test_recipes_and_label_targets():
    m = vp_owl2.VpOwl2()
    for name, expected in [("kadid10k", (32, 25)), ("koniq10k", (4, 25)), ("koniq10k-512x384", (4, 25)),
                           ("agiqa3k", (4, 35)), ("spaq", vp_owl2.DEFAULT_RECIPE)]:
        m.card = Card(name=name)
        assert m.recipe()[:2] == expected
    m = vp_owl2.VpOwl2(vp_owl2.VpOwl2.Options(epochs=2, batch_size=3))
    m.card = Card(name="kadid10k")
    assert m.recipe()[:2] == (3, 2)
    m.card = Card(label_scale=None, score_range=(0.0, 5.0))
    assert m.label_target() == (5.0, False)
    m.card = Card(label_scale=100.0, higher_better=False)
    assert m.label_target() == (100.0, True)
    samples = [Sample("a", None, label=20.0)]
    assert float(m._targets(samples, 100.0, True)[0]) == pytest.approx(0.8)
    m.card = None
    with pytest.raises(IqaError, match="label_scale"):
        m.label_target()
    o = vp_owl2.VpOwl2.Options()
    assert (o.vp_type, o.vp_size, o.lr, o.patience, o.normalization) == ("padding", 30, 60.0, 6, "imagenet")
    assert o.backend == "owl2" and o.backend_path == "MAGAer13/mplug-owl2-llama2-7b"
    assert vp_owl2.VpOwl2.info.kind == "trainable" and vp_owl2.VpOwl2.checkpoint_files() == ("prompt.safetensors", "prompt.json")
    with pytest.raises(ValueError):
        vp_owl2.VpOwl2.Options(vp_type="ring")


def test_early_stop_after_patience_epochs_without_gain(llava_dir, tmp_path):
    train = _source(4)
    flat = {f"v{i}": Sample(id=f"v{i}", image=train.load(f"im{i}").image, label=5.0) for i in range(4)}
    val = SampleSource(list(flat), flat.__getitem__)  # constant labels: the criterion never improves
    summary = _method("llava", llava_dir, epochs=5, patience=2).fit(train, val, tmp_path, seed=1)
    assert summary["stopped"] == "early_stop" and summary["epochs_run"] == 3 and summary["best_epoch"] == 1
    assert (tmp_path / "prompt.safetensors").is_file()
    again = _method("llava", llava_dir, epochs=8, patience=2).fit(train, val, tmp_path, seed=1)
    assert again["epochs_run"] == 3  # an early-stopped training stays stopped
