"""Zero-shot softmax methods and the hf-vlm backend, on tiny random models built here
(Llava always; mPLUG-Owl2 when its tiny builder is installed) and reloaded from disk."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (a test dependency: a missing one fails, never skips)

torch.set_num_threads(1)
os.environ["HF_HUB_OFFLINE"] = "1"

from PIL import Image  # noqa: E402

from iqabench.api import RunContext, Sample  # noqa: E402
from iqabench.errors import IqaError  # noqa: E402
from iqabench.methods import softmax  # noqa: E402
from iqabench.models import scoring  # noqa: E402
from iqabench.models.backend import BackendSpec, load_backend  # noqa: E402
from iqabench.models.tiny_llava import build_tiny_llava  # noqa: E402

QUESTION = scoring.SEED_PROMPT


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"), seed=1)


@pytest.fixture(scope="module")
def llava(llava_dir):
    return load_backend(BackendSpec(arch="llava", path=str(llava_dir)))


@pytest.fixture(scope="module")
def owl2_dir(tmp_path_factory):
    from iqabench.models import tiny_owl2  # a broken Owl2 module must fail here, not skip
    return tiny_owl2.build_tiny_owl2(tmp_path_factory.mktemp("tiny_owl2"), seed=1)


def _images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(40, 70), (90, 50), (64, 64), (33, 47)]
    return [Image.fromarray(rng.integers(0, 256, (*shapes[i % 4], 3), dtype=np.uint8)) for i in range(n)]


def _samples(n=3, seed=0):
    return [Sample(id=f"im{i}", image=img, label=float(i)) for i, img in enumerate(_images(n, seed))]


# -- scores from logits -----------------------------------------------------------------
def test_word_set_score_is_the_seed_formula_and_stable():
    logits = torch.randn(4, 50, dtype=torch.float64) * 3
    got = scoring.word_set_score(logits.to(torch.bfloat16), [3, 7], [11, 20]).double()
    ref_logits = logits.to(torch.bfloat16).double()
    e = ref_logits.exp()
    ref = (e[:, 3] + e[:, 7]) / (e[:, 3] + e[:, 7] + e[:, 11] + e[:, 20])
    assert torch.allclose(got, ref, atol=1e-6)
    huge = torch.full((1, 50), -1e4)
    huge[0, 3] = 1e4  # e^10000 overflows any float; log-sum-exp does not
    assert float(scoring.word_set_score(huge.to(torch.bfloat16), [3], [11])) == 1.0
    assert float(scoring.word_set_score(-huge, [3], [11])) == 0.0


def test_level_score_is_the_expected_weight():
    logits = torch.randn(3, 30)
    ids, weights = [1, 2, 3, 4, 5], [1.0, 0.75, 0.5, 0.25, 0.0]
    got = scoring.level_score(logits, ids, weights)
    probs = torch.softmax(logits[:, ids].double(), dim=-1)
    assert torch.allclose(got.double(), probs @ torch.tensor(weights, dtype=torch.float64), atol=1e-6)


# -- options ------------------------------------------------------------------------------
def test_option_validation():
    opts = scoring.SoftmaxOptions(positive="good, high", negative="bad,low")
    assert opts.positive == ("good", "high") and opts.negative == ("bad", "low")
    with pytest.raises(ValueError, match="extra|not permitted"):
        scoring.SoftmaxOptions(promt="typo")
    with pytest.raises(ValueError, match="twice"):
        scoring.SoftmaxOptions(positive=("good",), negative=("good",))
    with pytest.raises(ValueError, match="go together"):
        scoring.SoftmaxOptions(positive=None, negative=None, levels=("good", "bad"))
    with pytest.raises(ValueError, match="same length"):
        scoring.SoftmaxOptions(positive=None, negative=None, levels=("good", "bad"), weights=(1.0,))
    with pytest.raises(ValueError, match="not both"):
        scoring.SoftmaxOptions(levels=("good", "bad"), weights=(1.0, 0.0))
    with pytest.raises(ValueError, match="revision"):
        scoring.SoftmaxOptions(trust_remote_code=True)
    with pytest.raises(ValueError, match="unknown backend"):
        scoring.SoftmaxOptions(backend="gpt")
    assert scoring.SoftmaxOptions().trust_remote_code is False


def test_presets_carry_the_published_protocols():
    """Prompts, words, levels and checkpoints: tests/test_presets.py checks them against tests/reference/."""
    assert softmax.SoftmaxLlava.Options().backend_path == "llava-hf/llava-1.5-7b-hf"
    for cls in (softmax.SoftmaxOwl2, softmax.SoftmaxOwl2QBench, softmax.QAlignOwl2, softmax.SoftmaxLlava):
        assert cls.info.kind == "zero-shot" and cls.info.needs_gpu and cls.info.extra == "mllm" and cls.info.needs_weights


def test_check_available_explains_missing_weights(tmp_path, monkeypatch, llava_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_id = "iqabench-test/never-downloaded-model"
    why = softmax.SoftmaxLlava.check_available(softmax.SoftmaxLlava.Options(backend_path=hub_id))
    assert why and "HF_HUB_OFFLINE" in why and hub_id in why
    why = softmax.SoftmaxLlava.check_available(softmax.SoftmaxLlava.Options(backend_path=str(tmp_path / "nope")))
    assert why and "nope" in why
    assert softmax.SoftmaxLlava.check_available(softmax.SoftmaxLlava.Options(backend_path=str(llava_dir))) is None


# -- the hf-vlm backend on tiny Llava -----------------------------------------------------------
def test_backend_geometry_comes_from_the_processor(llava):
    assert llava.image_size == 56 and llava.resize == "model" and llava.pixel_space
    assert llava.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    pixels = llava.to_pixels(_images(3))
    assert pixels.shape == (3, 3, 56, 56) and pixels.dtype == torch.float32
    assert float(pixels.min()) >= 0 and float(pixels.max()) <= 1
    ours = llava.normalize(pixels)
    theirs = llava.processor.image_processor(images=_images(3), return_tensors="pt").pixel_values
    assert float((ours - theirs).abs().max()) < 1e-5  # the processor's own resize + crop, then its normalisation
    cropped = load_backend(BackendSpec(arch="llava", path=llava.spec.path, resize="crop")).to_pixels(_images(3))
    assert float((llava.normalize(cropped) - theirs).abs().mean()) < 2e-2  # our PIL crop: close to it


def test_logits_match_a_plain_transformers_forward(llava):
    images = _images(2)
    pixels = llava.normalize(llava.to_pixels(images))
    got = llava.next_token_logits(pixels, QUESTION)
    text = llava.conversation(QUESTION)
    assert text == "USER: <image>\n" + QUESTION + " ASSISTANT:"
    inputs = llava.processor(text=[text, text], images=images, return_tensors="pt")
    assert int((inputs["input_ids"][0] == llava.model.config.image_token_id).sum()) == 16  # (56/14)^2
    with torch.no_grad():
        ref = llava.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                          pixel_values=pixels).logits[:, -1]
    assert got.shape == (2, len(llava.tokenizer))
    assert torch.allclose(got, ref, atol=1e-5)
    # one image at a time gives the same logits as the batch
    assert torch.allclose(llava.next_token_logits(pixels[1:], QUESTION)[0], got[1], atol=1e-5)


def test_logits_are_differentiable_wrt_pixels_only(llava):
    pixels = llava.to_pixels(_images(2)).requires_grad_(True)
    logits = llava.next_token_logits(llava.normalize(pixels), QUESTION)
    logits[:, llava.token_id("good")].sum().backward()
    assert pixels.grad is not None and float(pixels.grad.abs().sum()) > 0
    assert all(not p.requires_grad and p.grad is None for p in llava.model.parameters())


def test_token_ids_and_generate(llava):
    tok = llava.tokenizer
    for word in ("good", "fine", "poor", "bad", "excellent", "fair", "high", "low", "7"):
        assert llava.token_id(word) == tok.convert_tokens_to_ids("▁" + word)
    answers = llava.generate(llava.normalize(llava.to_pixels(_images(2))), QUESTION, max_new_tokens=3)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_plain_template_when_the_processor_has_none(tmp_path, llava):
    folder = build_tiny_llava(tmp_path / "plain", seed=1, chat_template=False)
    plain = load_backend(BackendSpec(arch="llava", path=str(folder)))
    assert plain.chat_template is None and plain.conversation(QUESTION) == llava.conversation(QUESTION)
    pixels = llava.normalize(llava.to_pixels(_images(1)))
    assert torch.allclose(plain.next_token_logits(pixels, QUESTION), llava.next_token_logits(pixels, QUESTION), atol=1e-6)
    assert plain.fingerprint()["template_sha"] != llava.fingerprint()["template_sha"]


def test_whole_template_prompt_and_resize_policies(llava_dir, llava):
    template = "USER: How would you rate the quality of this image?\n<|image|>\nASSISTANT: The quality of the image is"
    assert llava.conversation(template).endswith("<image>\nASSISTANT: The quality of the image is")
    logits = llava.next_token_logits(llava.normalize(llava.to_pixels(_images(1))), template)
    assert torch.isfinite(logits).all()
    padded = load_backend(BackendSpec(arch="llava", path=str(llava_dir), resize="pad"))
    img = Image.new("RGB", (80, 40), (255, 0, 0))
    px = padded.to_pixels([img])[0]
    assert torch.allclose(px[:, 0, 28], torch.tensor([123, 117, 104]) / 255.0, atol=1 / 255)  # mean-colour band
    assert torch.allclose(px[:, 28, 28], torch.tensor([1.0, 0.0, 0.0]), atol=1 / 255)
    assert padded.fingerprint()["resize"] == "pad" != llava.fingerprint()["resize"]
    with pytest.raises(ValueError, match="resize"):
        BackendSpec(arch="llava", path=str(llava_dir), resize="stretch")  # not a policy at all


def test_missing_model_is_one_clear_error(tmp_path):
    with pytest.raises(IqaError, match="cannot load"):
        load_backend(BackendSpec(arch="llava", path="nobody/no-such-model"))


# -- the methods ---------------------------------------------------------------------------
def _manual_score(backend, images, question, pos, neg):
    with torch.no_grad():
        logits = backend.next_token_logits(backend.normalize(backend.to_pixels(images)), question).double()
    ids = lambda words: [backend.token_id(w) for w in words]  # noqa: E731
    e = logits.exp()
    p, n = e[:, ids(pos)].sum(-1), e[:, ids(neg)].sum(-1)
    return (p / (p + n)).tolist()


def test_softmax_llava_scores_are_the_seed_formula(llava_dir, llava):
    method = softmax.SoftmaxLlava(softmax.SoftmaxLlava.Options(backend_path=str(llava_dir)))
    samples = _samples(3)
    scores = method.score(samples)
    expected = _manual_score(llava, [s.image for s in samples], QUESTION, ["good", "fine"], ["poor", "bad"])
    assert scores == pytest.approx(expected, abs=1e-6)
    assert all(0 < s < 1 and math.isfinite(s) for s in scores)
    fp = method.fingerprint()
    assert fp["backend"]["path"] == str(llava_dir) and set(fp["token_ids"]) == {"positive", "negative"}
    # batch of one equals batch of three
    assert method.score(samples[2:])[0] == pytest.approx(scores[2], abs=1e-6)


def test_levels_scheme_on_llava(llava_dir, llava):
    opts = softmax.QAlignOwl2.Options(backend="llava", backend_path=str(llava_dir), resize="model")  # as the fixture
    method = softmax.QAlignOwl2(opts)
    samples = _samples(2)
    scores = method.score(samples)
    with torch.no_grad():
        logits = llava.next_token_logits(llava.normalize(llava.to_pixels([s.image for s in samples])), opts.prompt)
    ids = [llava.token_id(w) for w in opts.levels]
    probs = torch.softmax(logits[:, ids].double(), -1)
    assert scores == pytest.approx((probs @ torch.tensor(opts.weights, dtype=torch.float64)).tolist(), abs=1e-6)


def test_words_sharing_a_token_are_refused(llava_dir):
    # "quality" and "qualityx" would both start with the piece "▁quality"
    opts = softmax.SoftmaxLlava.Options(backend_path=str(llava_dir), positive=("quality",), negative=("qualityx",))
    with pytest.raises(IqaError, match="share a first token"):
        softmax.SoftmaxLlava(opts).setup(RunContext())


# -- mPLUG-Owl2 presets: each with its protocol's preprocessing ---------------------------------
def _imagenet(pixels):
    mean = torch.tensor(scoring.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(scoring.IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


def test_softmax_owl2_on_tiny_owl2(owl2_dir):
    method = softmax.SoftmaxOwl2(softmax.SoftmaxOwl2.Options(backend_path=str(owl2_dir)))
    assert softmax.SoftmaxOwl2.check_available(method.options) is None
    samples = _samples(2)
    scores = method.score(samples)
    backend = method.scorer.backend
    assert backend.fingerprint()["resize"] == "torchvision"
    # the seed's pipeline: its geometry, then ImageNet statistics instead of the model's CLIP ones
    with torch.no_grad():
        logits = backend.next_token_logits(_imagenet(backend.to_pixels([s.image for s in samples])), QUESTION).double()
    ids = [backend.token_id(w) for w in ("good", "fine", "poor", "bad")]
    e = logits.exp()[:, ids]
    assert scores == pytest.approx((e[:, :2].sum(-1) / e.sum(-1)).tolist(), abs=1e-6)
    qbench = softmax.SoftmaxOwl2QBench(softmax.SoftmaxOwl2QBench.Options(backend_path=str(owl2_dir)))
    own = load_backend(BackendSpec(arch="owl2", path=str(owl2_dir)))  # the model's processor and statistics
    expected = _manual_score(own, [s.image for s in samples], scoring.QBENCH_PROMPT, ["good"], ["poor"])
    assert qbench.score(samples) == pytest.approx(expected, abs=1e-6)


def test_seed_pipeline_crops_as_torchvision_does(owl2_dir):
    """resize=torchvision is the public visual-prompt code's Resize(S, bicubic) + CenterCrop(S)."""
    from torchvision import transforms

    backend = load_backend(BackendSpec(arch="owl2", path=str(owl2_dir), resize="torchvision"))
    clip = load_backend(BackendSpec(arch="owl2", path=str(owl2_dir)))
    size = backend.image_size
    reference = transforms.Compose([transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
                                    transforms.CenterCrop(size), transforms.ToTensor()])
    rng = np.random.default_rng(2)
    # 28 x 31 and 28 x 59 leave 3 and 31 pixels: floor and round-half-even start the crop apart
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(28, 31), (59, 28), (45, 80), (30, 30)]]
    ours = backend.to_pixels(images)
    assert torch.equal(ours, torch.stack([reference(im) for im in images]))
    assert not torch.equal(ours[0], clip.to_pixels(images[:1])[0])  # the processor's floor offset differs
    assert torch.equal(ours[3], clip.to_pixels(images[3:])[0])  # a 2-pixel excess: the same crop


def test_qalign_pads_to_a_square_in_the_mean_colour_by_default(owl2_dir):
    method = softmax.QAlignOwl2(softmax.QAlignOwl2.Options(backend_path=str(owl2_dir)))
    assert method.options.resize == "pad" and method.options.normalization == "model"
    scores = method.score(_samples(2))
    assert all(0 <= s <= 1 for s in scores) and scores[0] != scores[1]
    backend = method.scorer.backend
    wide = Image.new("RGB", (80, 40), (255, 0, 0))
    px = backend.to_pixels([wide])[0]
    mean = torch.tensor([int(c * 255) for c in backend.mean]) / 255.0
    assert torch.allclose(px[:, 0, backend.image_size // 2], mean, atol=1 / 255)  # the padded band
    assert torch.allclose(px[:, backend.image_size // 2, backend.image_size // 2], torch.tensor([1.0, 0.0, 0.0]), atol=1 / 255)
    cropped = softmax.QAlignOwl2(softmax.QAlignOwl2.Options(backend_path=str(owl2_dir), resize="crop"))
    assert cropped.score(_samples(2)) != pytest.approx(scores, abs=1e-6)


def test_presets_document_their_preprocessing():
    seed, qbench, qalign = softmax.SoftmaxOwl2.Options(), softmax.SoftmaxOwl2QBench.Options(), softmax.QAlignOwl2.Options()
    assert (seed.resize, seed.normalization) == ("torchvision", "imagenet")
    assert (qbench.resize, qbench.normalization) == ("model", "model")
    assert (qalign.resize, qalign.normalization) == ("pad", "model")
    assert "ImageNet" in softmax.SoftmaxOwl2.info.description and "CLIP" in softmax.SoftmaxOwl2QBench.info.description
    assert "pad" in softmax.QAlignOwl2.info.description


# -- backend settings: declared by each backend, checked once, one vocabulary -----------------------
def test_resize_and_dtype_are_checked_at_option_validation_against_the_backends_declaration():
    from iqabench.models.backend import traits_of
    from iqabench.plan import resolve_method

    owl2 = traits_of("owl2").resize
    assert "squash" not in owl2 and "model" in owl2
    with pytest.raises(IqaError) as info:  # before: accepted here, refused by the owl2 backend when loading
        resolve_method("softmax-owl2", {"resize": "squash"})
    line = str(info.value)
    assert "\n" not in line and f"backend owl2 does not support resize=squash; allowed: {', '.join(owl2)}" in line
    assert resolve_method("softmax-llava", {"resize": "squash"}).options.resize == "squash"  # a fixed-grid family
    with pytest.raises(IqaError, match="backend qwen2_5_vl does not support resize=crop; allowed: model "):
        resolve_method("softmax-owl2-qbench", {"backend": "qwen2_5_vl", "resize": "crop"})
    with pytest.raises(IqaError, match="option dtype"):
        resolve_method("qalign-owl2", {"dtype": "bf16"})
    with pytest.raises(IqaError, match="worker backends only"):
        resolve_method("softmax-owl2", {"worker_python": "/usr/bin/python3"})


def test_one_declaration_serves_option_validation_and_the_listing(tmp_path, monkeypatch, scratch_registry):
    """A plugin backend declares its traits once; options are checked against them and `list backends`
    shows them. A module that declares nothing accepts every setting and shows no grid."""
    from click.testing import CliRunner

    from iqabench.cli.main import cli

    (tmp_path / "declared_backend.py").write_text(
        "from iqabench.models.backend import BackendTraits\n"
        "def load(spec, device='cpu'):\n    raise RuntimeError('never loaded here')\n"
        "def traits(arch):\n    return BackendTraits(grid='tiled', multi_image=True, resize=('model',), worker=True)\n")
    (tmp_path / "silent_backend.py").write_text("def load(spec, device='cpu'):\n    raise RuntimeError\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    scratch_registry.backends.register("declared", "declared_backend:load")
    scratch_registry.backends.register("silent", "silent_backend:load")
    with pytest.raises(ValueError, match="backend declared does not support resize=crop; allowed: model"):
        BackendSpec(arch="declared", resize="crop")
    assert BackendSpec(arch="declared", worker_python="/venv/bin/python").worker_python  # worker=True declared
    with pytest.raises(ValueError, match="worker backends only"):
        BackendSpec(arch="silent", worker_python="/venv/bin/python")
    assert BackendSpec(arch="silent", resize="squash").resize == "squash"
    result = CliRunner().invoke(cli, ["list", "backends"])
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:] if line.strip()}
    assert rows["declared"][1:3] == ["tiled", "several"] and rows["silent"][1:3] == ["-", "one"], result.stdout


def test_every_declared_resize_policy_loads_and_is_recorded(llava_dir, owl2_dir):
    """What a backend declares is what it does: each declared policy loads and gives its own pixels."""
    from iqabench.models.backend import traits_of

    for arch, folder in (("llava", llava_dir), ("owl2", owl2_dir)):
        pixels = {}
        for policy in traits_of(arch).resize:
            backend = load_backend(BackendSpec(arch=arch, path=str(folder), resize=policy))
            assert backend.fingerprint()["resize"] == policy
            pixels[policy] = backend.to_pixels([Image.new("RGB", (80, 40), (255, 0, 0))])
        assert not torch.equal(pixels["pad"], pixels["crop"]), arch


def _vocabulary_definitions(tree):
    """Lines of Literal[...] types naming a dtype or resize policy, and of tuples or sets spelling out
    the dtypes (a backend's declared subset of resize policies is a declaration, not a vocabulary)."""
    import ast

    dtypes, policies = {"float32", "bfloat16", "float16"}, {"crop", "pad", "squash", "torchvision"}
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "Literal":
            strings = {e.value for e in ast.walk(node.slice) if isinstance(e, ast.Constant)}
            inside.update(id(e) for e in ast.walk(node.slice))
            if strings & (dtypes | policies):
                yield node.lineno
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.Set, ast.List)) and id(node) not in inside:
            strings = {e.value for e in node.elts if isinstance(e, ast.Constant)}
            if len(strings & dtypes) >= 2:
                yield node.lineno


def test_one_dtype_and_one_resize_vocabulary():
    """Written once (iqabench/models/backend.py: Dtype, ResizePolicy); every option class and backend
    uses those names (the Owl3 worker, in its own venv, reads the name it is sent)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = [f"{path.relative_to(root).as_posix()}:{line}"
             for path in sorted([*(root / "iqabench").rglob("*.py"), *(root / "methods").rglob("*.py")])
             for line in _vocabulary_definitions(ast.parse(path.read_text(encoding="utf-8")))]
    assert [f.rsplit(":", 1)[0] for f in found] == ["iqabench/models/backend.py"] * 2, found
    assert _vocabulary_definitions(ast.parse('D = Literal["auto", "fp32", "float16"]\nT = ("float32", "bfloat16")'))


def test_no_method_imports_another_method():
    """The MLLM scoring library is iqabench.models.scoring; a method module imports no registered method's module."""
    import ast
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    targets = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]["iqabench.methods"]
    method_modules = {t.split(":")[0] for t in targets.values()}
    assert "iqabench.methods.softmax" in method_modules
    hits = []
    for path in sorted((root / "methods").rglob("*.py")):
        rel = path.relative_to(root / "methods").with_suffix("")
        # a package, or files sharing a name prefix (dog_iqa*, pyiqa_*), is one method's own code
        own = rel.parts[0].split("_")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module == "iqabench.methods":
                names = [f"iqabench.methods.{a.name}" for a in node.names]
            hits += [f"{rel}: {n}" for n in names if n in method_modules and n.split(".")[2].split("_")[0] != own]
    assert not hits, hits


# -- the missing-weights hint names a command that exists -------------------------------------------
def _hinted_command(message: str) -> list[str]:
    import re
    import shlex

    (command,) = re.findall(r"`([^`]+)`", message)
    return shlex.split(command)


def test_the_download_hint_is_a_command_the_installed_hf_cli_accepts(tmp_path, monkeypatch):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from iqabench.models.checkpoint import missing_weights_message

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    hub_id = "iqabench-test/never-downloaded-model"
    messages = [softmax.SoftmaxLlava.check_available(softmax.SoftmaxLlava.Options(backend_path=hub_id)),
                softmax.SoftmaxLlava.check_available(softmax.SoftmaxLlava.Options(backend_path=hub_id, revision="abc123")),
                missing_weights_message("owl2 weights", hub_id, "abc123", True, OSError("offline"))]
    hf = shutil.which("hf", path=str(Path(sys.executable).parent)) or shutil.which("hf")
    assert hf, "huggingface_hub's `hf` command is not installed"
    for message in messages:
        assert "unset HF_HUB_OFFLINE" in message and "huggingface-cli" not in message
        argv = _hinted_command(message)
        assert argv[:3] == ["hf", "download", hub_id], argv
        shown = subprocess.run([hf, *argv[1:2], "--help"], capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert "REPO_ID" in shown.stdout  # the id goes where the command takes it
        for flag in (a for a in argv if a.startswith("--")):
            assert flag in shown.stdout, (flag, shown.stdout[:300])
    assert "--revision" in _hinted_command(messages[1]) and "abc123" in _hinted_command(messages[1])
