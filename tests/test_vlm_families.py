"""The transformers-native VLM families behind one backend: each family's tiny RANDOM model (its
real config, model and processor classes; tokenizer built locally) is saved to a folder, loaded
through the backend's loading path by its registered arch, and scored with the softmax methods;
batches of 8 (left-padded) score as 8 batches of one; several images per prompt on Owl2 and on
HF families; pixel-space methods where the family has a fixed grid, one-line refusals where not."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import transformers  # noqa: F401

torch.set_num_threads(1)
os.environ["HF_HUB_OFFLINE"] = "1"

from PIL import Image  # noqa: E402

from iqabench import registry  # noqa: E402
from iqabench.api import RunContext, Sample  # noqa: E402
from iqabench.errors import IqaError  # noqa: E402
from iqabench.methods import softmax  # noqa: E402
from iqabench.methods.dog_iqa_judge import JudgeSettings, StandardJudge  # noqa: E402
from iqabench.models import scoring  # noqa: E402
from iqabench.models.backend import BackendSpec, Query, load_backend  # noqa: E402
from iqabench.models.vlm_families import FAMILIES  # noqa: E402

ARCHS = sorted(FAMILIES)
TILED = [a for a in ARCHS if FAMILIES[a].grid == "tiled"]
FIXED = [a for a in ARCHS if FAMILIES[a].grid == "fixed"]
QUESTION = scoring.SEED_PROMPT
# sizes that give the tiling families different tile / patch counts, so batches need padding
SHAPES = [(40, 70), (90, 50), (28, 28), (64, 64), (33, 47), (100, 30), (56, 56), (45, 80)]


class _Lazy(dict):
    """arch -> value, made on first use (a family that cannot be built fails only its own tests)."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, arch):
        self[arch] = self.make(arch)
        return self[arch]


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    """Each family's tiny checkpoint, built once per session by its registered builder."""
    root = tmp_path_factory.mktemp("tiny_vlms")
    return _Lazy(lambda arch: str(registry.tiny_models.get(arch)(root / arch, seed=3)))


@pytest.fixture(scope="session")
def backends(model_dirs):
    return _Lazy(lambda arch: load_backend(BackendSpec(arch=arch, path=model_dirs[arch])))


@pytest.fixture(scope="session")
def owl2(tmp_path_factory):
    from iqabench.models import owl2_multi, tiny_owl2

    folder = tiny_owl2.build_tiny_owl2(tmp_path_factory.mktemp("tiny_owl2"), seed=1)
    return owl2_multi.load(BackendSpec(arch="owl2", path=str(folder)))


def _images(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (*SHAPES[i % len(SHAPES)], 3), dtype=np.uint8)) for i in range(n)]


def _reference_logits(backend, image, question):
    """The last-position logits of a plain transformers forward on the processor's output (a
    template that writes BOS itself is tokenized without special tokens, as transformers does)."""
    text = backend.conversation(Query((image,), question))
    bos = backend.tokenizer.bos_token
    enc = backend.processor(text=[text], images=[[image]], return_tensors="pt",
                            add_special_tokens=not (bos and text.startswith(bos)))
    enc = {k: v for k, v in enc.items() if k != "labels"}
    with torch.no_grad():
        return backend.model(**enc).logits[:, -1].float()


# -- loading: the family's real classes through the registered arch -------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_family_loads_its_real_classes(arch, backends, model_dirs):
    backend = backends[arch]
    fam = FAMILIES[arch]
    assert backend.model.config.model_type in fam.model_types and not backend.model.training
    fp = backend.fingerprint()
    assert fp["family"] == arch and fp["grid"] == fam.grid and fp["model_class"].endswith("ForConditionalGeneration")
    assert all(not p.requires_grad for p in backend.model.parameters())
    generic = load_backend(BackendSpec(arch="hf-vlm", path=model_dirs[arch]))
    assert generic.family is fam  # the generic arch reads the family from config.json


def test_a_checkpoint_of_another_family_is_one_clear_error(model_dirs):
    with pytest.raises(IqaError, match="not one of backend gemma3") as info:
        load_backend(BackendSpec(arch="gemma3", path=model_dirs["qwen2_5_vl"]))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="backend internvl does not support resize=crop; allowed: model \\["):
        BackendSpec(arch="internvl", path=model_dirs["internvl"], resize="crop")  # the family row declares it
    with pytest.raises(IqaError, match="only resize=model"):  # the generic arch learns the family when loading
        load_backend(BackendSpec(arch="hf-vlm", path=model_dirs["internvl"], resize="crop"))


# -- scoring with the softmax method, against a plain transformers forward ------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_softmax_scores_are_the_formula_on_the_processors_output(arch, backends, model_dirs):
    opts = softmax.SoftmaxOwl2QBench.Options(backend=arch, backend_path=model_dirs[arch])
    assert (opts.resize, opts.normalization) == ("model", "model")  # the family's own processor
    method = softmax.SoftmaxOwl2QBench(opts)
    images = _images(3)
    scores = method.score([Sample(id=f"i{i}", image=im, label=0.0) for i, im in enumerate(images)])
    backend = method.scorer.backend
    good, poor = backend.token_id("good"), backend.token_id("poor")
    for image, score in zip(images, scores):
        logits = _reference_logits(backend, image, scoring.QBENCH_PROMPT)[0].double()
        assert score == pytest.approx(float(torch.sigmoid(logits[good] - logits[poor])), abs=1e-5)
    assert all(0 < s < 1 for s in scores) and max(scores) - min(scores) > 1e-4  # the image matters


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_of_eight_scores_as_eight_batches_of_one(arch, model_dirs):
    method = softmax.QAlignOwl2(softmax.QAlignOwl2.Options(backend=arch, backend_path=model_dirs[arch]))
    samples = [Sample(id=f"i{i}", image=im, label=0.0) for i, im in enumerate(_images(8))]
    together = method.score(samples)
    alone = [method.score([s])[0] for s in samples]
    assert together == pytest.approx(alone, abs=1e-4)
    assert len(set(round(s, 6) for s in together)) > 1


@pytest.mark.parametrize("arch", ARCHS)
def test_mixed_prompts_in_one_batch_are_left_padded(arch, backends):
    backend = backends[arch]
    images = _images(4, seed=1)
    queries = [Query((images[0],), QUESTION), Query((images[1],), "How is this image?", system="You rate images."),
               Query((images[2],), "Rate it", answer_prefix="The quality of the image is"),
               Query.single(images[3], "USER: <|image|>\nIs this a good photo? ASSISTANT:")]
    masks = [inputs["attention_mask"] for _, inputs in backend._batches(queries)]
    assert any(bool((m == 0).any()) for m in masks)  # rows of different lengths in one call
    assert all(bool((m[:, -1] == 1).all()) for m in masks)  # padding on the left
    with torch.no_grad():
        together = backend.logits(queries)
        alone = torch.cat([backend.logits([q]) for q in queries])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=0)
    assert backend.answers(queries, max_new_tokens=3) == [backend.answers([q], max_new_tokens=3)[0] for q in queries]


def test_system_turn_and_answer_prefix_are_family_data(backends):
    qwen = backends["qwen2_5_vl"].conversation(Query((None,), "Rate it.", system="You rate images.",
                                                     answer_prefix="The"))
    assert qwen.startswith("<|im_start|>system\nYou rate images.<|im_end|>")
    assert qwen.endswith("<|im_start|>assistant\nThe")
    llava = backends["llava"].conversation(Query((None,), "Rate it.", system="You rate images.", answer_prefix="The"))
    assert llava == "USER: <image>\nYou rate images.\nRate it. ASSISTANT: The"  # no system turn: folded in
    whole = backends["gemma3"].conversation(Query.single(None, "USER: <|image|> Is it good? ASSISTANT:"))
    assert whole == "USER: <start_of_image> Is it good? ASSISTANT:"


# -- pixel space: fixed grids take pixel edits, tiled families refuse in one line ----------------
@pytest.mark.parametrize("arch", FIXED)
def test_fixed_grid_pixels_are_the_processors_and_take_gradients(arch, backends):
    backend = backends[arch]
    images = _images(2)
    pixels = backend.to_pixels(images)
    theirs = backend.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(backend.normalize(pixels), theirs.float(), atol=1e-5, rtol=0)
    prompt = torch.zeros(1, 3, backend.image_size, backend.image_size, requires_grad=True)
    logits = backend.next_token_logits(backend.normalize((pixels + prompt).clamp(0, 1)), QUESTION)
    logits[:, backend.token_id("good")].sum().backward()
    assert prompt.grad is not None and float(prompt.grad.abs().sum()) > 0
    with torch.no_grad():
        torch.testing.assert_close(logits, backend.logits([Query((im,), QUESTION) for im in images]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", TILED)
def test_tiled_families_refuse_pixel_space_methods_in_one_line(arch, backends, model_dirs):
    backend = backends[arch]
    assert not backend.pixel_space and backend.image_size is None
    small, wide = Image.new("RGB", (28, 28)), Image.new("RGB", (112, 28))
    n_tokens = lambda im: backend._batches([Query((im,), QUESTION)])[0][1]["input_ids"].shape[1]  # noqa: E731
    assert n_tokens(wide) != n_tokens(small)  # the family's processor tiles / patchifies by size
    for call in (lambda: backend.to_pixels(_images(1)),
                 lambda: backend.next_token_logits(torch.zeros(1, 3, 28, 28), QUESTION)):
        with pytest.raises(IqaError, match="fixed pixel grid") as info:
            call()
        assert "\n" not in str(info.value)
    from iqabench.methods.vp_owl2 import VpLlava

    vp = VpLlava(VpLlava.Options(backend=arch, backend_path=model_dirs[arch]))
    with pytest.raises(IqaError, match="tiles images in its processor; a pixel-space visual prompt needs a fixed"):
        vp.setup(RunContext())  # refused before any training or scoring starts
    with pytest.raises(IqaError, match="normalization"):
        softmax.SoftmaxOwl2(softmax.SoftmaxOwl2.Options(backend=arch, backend_path=model_dirs[arch],
                                                        normalization="imagenet")).setup(RunContext())


# -- several images in one prompt ------------------------------------------------------------------
def _two_image_logits(backend, second):
    first = _images(1, seed=5)[0]
    queries = [Query((first, im), "Image A: <|image|> scored good. Image B: <|image|> How is image B?")
               for im in second]
    with torch.no_grad():
        return backend.logits(queries)


@pytest.mark.parametrize("arch", ["owl2", "qwen2_5_vl", "llava", "internvl"])
def test_two_image_prompts_depend_on_the_second_image(arch, owl2, backends):
    backend = owl2 if arch == "owl2" else backends[arch]
    assert backend.multi_image
    a, b = _images(2, seed=6)
    logits = _two_image_logits(backend, [a, b, a])
    assert float((logits[0] - logits[1]).abs().max()) > 1e-3  # another second image, other logits
    torch.testing.assert_close(logits[0], logits[2], atol=1e-5, rtol=0)
    single = Query((a,), QUESTION)
    pair = Query((a, b), "Compare <|image|> with <|image|>.")
    with torch.no_grad():  # a two-image row padded next to a one-image row scores as alone
        together = backend.logits([single, pair])
        alone = torch.cat([backend.logits([single]), backend.logits([pair])])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=0)
    answers = backend.answers([single, pair], max_new_tokens=3)
    assert len(answers) == 2 and all(isinstance(t, str) for t in answers)


def test_owl2_queries_match_the_owl2_backend(owl2):
    images = _images(3, seed=2)
    with torch.no_grad():
        ref = owl2.next_token_logits(owl2.normalize(owl2.to_pixels(images)), QUESTION)
        got = owl2.logits([Query((im,), QUESTION) for im in images])
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    generated = owl2.generate(owl2.normalize(owl2.to_pixels(images[:1])), QUESTION, 3)
    assert owl2.answers([Query((images[0],), QUESTION)], 3) == generated
    with pytest.raises(IqaError, match="placeholders"):
        Query((images[0], images[1]), "only one <|image|> here")


def test_paligemma_takes_images_first_only(backends):
    pali = backends["paligemma"]
    a, b = _images(2)
    with torch.no_grad():
        first = pali.logits([Query((a, b), "<|image|><|image|>compare")])
        implicit = pali.logits([Query((a, b), "compare")])
    torch.testing.assert_close(first, implicit, atol=1e-6, rtol=0)
    with pytest.raises(IqaError, match="images go before the text"):
        pali.logits([Query((a, b), "A <|image|> B <|image|>")])


# -- Dog-IQA crops through every family, batched -----------------------------------------------------
@pytest.mark.parametrize("arch", ["qwen2_5_vl", "idefics3", "gemma3"])
def test_dog_iqa_judge_batches_views_of_any_size(arch, backends):
    views = _images(6, seed=4)
    one = StandardJudge(backends[arch], JudgeSettings(mode="logits", batch_size=1)).score(views)
    many = StandardJudge(backends[arch], JudgeSettings(mode="logits", batch_size=8))
    assert [v.score for v in many.score(views)] == pytest.approx([v.score for v in one], abs=1e-4)
    assert many.calls == 1
    answers = StandardJudge(backends[arch], JudgeSettings(mode="generate", batch_size=8, max_new_tokens=2)).score(views)
    assert len(answers) == 6 and all(v.answer is not None for v in answers)


@pytest.mark.parametrize("arch", ARCHS)
def test_each_family_passes_the_runner_contract_with_every_preset(arch, model_dirs, tiny_root, tmp_path):
    """Every zero-shot preset runs through the whole engine on each family's tiny model: scored,
    saved, resumed with nothing scored twice (the contract test's procedure, per backend family)."""
    from iqabench.run import RunConfig, run

    for preset in softmax.PRESETS:
        cfg = RunConfig(method=preset, dataset="tiny", data_root=tiny_root, results=tmp_path, device="cpu",
                        options={"backend": arch, "backend_path": model_dirs[arch]}, limit=3, batch_size=2,
                        progress=False, n_boot=0)
        first = run(cfg, on_log=lambda m: None)
        assert first.metrics["n"] == 3 and first.metrics["n_failed"] == 0, (preset, first.metrics["failures_by_kind"])
        again = run(cfg, on_log=lambda m: None)
        assert again.scored_now == 0 and again.run_dir == first.run_dir
