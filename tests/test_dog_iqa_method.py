"""Dog-IQA end to end on tiny random models of the real architectures (SAM2, Llava), built here.

The tiny judges get a generation config that restricts greedy decoding to the digit tokens
1..7 (a "numeric" judge whose digits still depend on the image) or forbids digits (a judge
whose answers trigger the paper's fallback), so both parsing paths run on real models.
"""
import math
import os
import sys

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (a test dependency: a missing one fails, never skips)

from iqabench.api import RunContext, Sample, SampleSource
from iqabench.errors import IqaError, NotAvailable
from iqabench.methods import dog_iqa_aggregate as agg
from iqabench.methods.dog_iqa import DogIqa, DogIqaOptions
from iqabench.models.backend import BackendSpec, load_backend
from iqabench.models.segmenter import Segmenter, SegmenterOptions, resolve_model_id


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # read by the worker process
    torch.set_num_threads(1)


def _restrict_generation(folder, keep_digits: bool):
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(folder)
    pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
    if keep_digits:  # word-initial digit pieces only, so answers read "3 5 ..." rather than "35"
        allowed = {i for i, p in enumerate(pieces) if p in {f"▁{k}" for k in range(1, 8)}}
    else:
        allowed = {i for i, p in enumerate(pieces) if not any(c.isdigit() for c in p) and tok.decode([i]).strip()}
    config = GenerationConfig.from_pretrained(folder)
    config.suppress_tokens = sorted(set(range(len(tok))) - allowed)
    config.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    os.environ["HF_HUB_OFFLINE"] = "1"
    from iqabench.models.tiny_llava import build_tiny_llava
    from iqabench.models.tiny_sam2 import build_tiny_sam2

    root = tmp_path_factory.mktemp("dog")
    return {
        "sam2": str(build_tiny_sam2(root / "sam2")),
        "digits": str(_restrict_generation(build_tiny_llava(root / "digits", seed=1), keep_digits=True)),
        "words": str(_restrict_generation(build_tiny_llava(root / "words", seed=2), keep_digits=False)),
    }


@pytest.fixture(scope="module")
def images():
    from PIL import Image

    rng = np.random.default_rng(0)
    out = {}
    for i, (h, w) in enumerate([(40, 64), (56, 48), (48, 48), (36, 72)]):
        base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        base[: h // 2, : w // 2] = rng.integers(0, 255, 3, dtype=np.uint8)  # a flat block: structure for SAM
        out[f"img/{i}"] = Image.fromarray(base)
    return out


def _source(images):
    return SampleSource(list(images), lambda sid: Sample(sid, images[sid], 0.5))


def _method(models, cache_dir, judge="digits", **overrides):
    seg = {"model": models["sam2"], "points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    seg.update(overrides.pop("segmenter", {}))
    options = DogIqaOptions(judge={"backend": "llava", "backend_path": models[judge]}, segmenter=seg,
                            min_area_fraction=0.02, judge_batch_size=overrides.pop("judge_batch_size", 5), **overrides)
    method = DogIqa(options)
    method.setup(RunContext(dataset="synthetic", cache_dir=cache_dir))
    return method


def _run(method, images):
    source = _source(images)
    method.prepare(source)
    samples = [source.load(sid) for sid in images]
    return method.score(samples)


def test_segmenter_on_tiny_sam2(models, images):
    image = images["img/0"]
    options = SegmenterOptions(model=models["sam2"], points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    seg = Segmenter(options)
    masks = seg.segment(image)
    assert masks.dtype == bool and masks.ndim == 3 and masks.shape[1:] == (image.height, image.width)
    assert len(masks) >= 1
    assert np.array_equal(masks, seg.segment(image))  # deterministic
    small = Segmenter(options.model_copy(update={"max_side": 32})).segment(image)
    assert small.shape[1:] == (image.height, image.width)
    # The filters are applied: a random model never predicts IoU above 0.999.
    assert len(Segmenter(options.model_copy(update={"pred_iou_thresh": 0.999})).segment(image)) == 0
    # Crop layers and hole filling run and still give full-resolution masks.
    layered = Segmenter(options.model_copy(update={"crop_n_layers": 1, "min_mask_region_area": 4})).segment(image)
    assert layered.shape[1:] == masks.shape[1:]
    assert seg.fingerprint_hash() != Segmenter(options.model_copy(update={"points_per_side": 5})).fingerprint_hash()
    assert seg.fingerprint()["settings"]["box_nms_thresh"] == 0.7


def test_segmenter_defaults_and_model_ids():
    o = SegmenterOptions()
    assert (o.points_per_side, o.pred_iou_thresh, o.stability_score_thresh, o.box_nms_thresh, o.min_mask_region_area) == (32, 0.8, 0.95, 0.7, 0)
    assert resolve_model_id("facebook/sam2-hiera-large") == "facebook/sam2-hiera-large-hf"
    assert resolve_model_id("sam2_hiera_b+") == "facebook/sam2-hiera-base-plus-hf"
    assert resolve_model_id("facebook/sam2.1-hiera-small") == "facebook/sam2.1-hiera-small"
    import pydantic

    with pytest.raises(pydantic.ValidationError):
        SegmenterOptions(points_per_sid=16)  # typo fails loudly


def test_sam2_package_backend_needs_its_files(tmp_path):
    with pytest.raises(IqaError, match="checkpoint"):
        Segmenter(SegmenterOptions(backend="sam2-package"))
    ckpt = tmp_path / "sam2.pt"
    ckpt.write_bytes(b"not a checkpoint")
    seg = Segmenter(SegmenterOptions(backend="sam2-package", checkpoint=str(ckpt), config="configs/sam2.1/sam2.1_hiera_t.yaml"))
    try:
        import sam2  # noqa: F401
    except ImportError:
        with pytest.raises(NotAvailable, match="pip install"):
            seg.segment(np.zeros((8, 8, 3), np.uint8))


def test_method_scores_follow_the_paper_formula(models, images, tmp_path):
    method = _run_and_keep = _method(models, tmp_path)
    scores = _run(method, images)
    stats = method.runtime_stats()
    assert len(scores) == len(images) and all(math.isfinite(s) for s in scores)
    assert stats["parse_failures"] == 0
    extras = {sid: method.sample_extras(sid) for sid in images}
    c_max = stats["c_max"]
    assert c_max == max(e["regions"] for e in extras.values())  # c counts the scored masks by default
    views = 0
    for sid, score in zip(images, scores):
        e = extras[sid]
        assert e["s_global"] in range(1, 8) and 1 <= e["s_local"] <= 7
        assert e["s_seg"] == pytest.approx(e["regions"] * 7 / c_max)
        assert score == pytest.approx((e["s_global"] + e["s_local"]) / 2 + e["s_seg"])
        assert e["judge_views"] == 1 + e["regions"] and e["parse_failures"] == 0
        views += e["judge_views"]
    assert stats["judge_views"] == views
    assert stats["judge_calls"] == math.ceil(views / 5)  # crops of several images share a call
    assert stats["segmentations"] == len(images) and stats["mask_cache_hits"] == len(images)
    assert method.sample_extras("img/0") == {}  # popped once read
    del _run_and_keep


def test_local_scores_are_area_weighted(models, images, tmp_path):
    """Recompute s_local from the judge's own verdicts on the crops."""
    method = _method(models, tmp_path)
    source = _source(images)
    method.prepare(source)
    sample = source.load("img/1")
    method.score([sample])
    e = method.sample_extras("img/1")
    masks = method._cache.load("img/1")
    regions = agg.select_regions(masks, method.options.aggregation())
    pixels = np.asarray(sample.image)
    from PIL import Image

    crops = [Image.fromarray(agg.crop_region(pixels, r, "bbox")) for r in regions]
    verdicts = method._judge.score(crops)
    expected = sum(v.score * r.area for v, r in zip(verdicts, regions)) / sum(r.area for r in regions)
    assert e["s_local"] == pytest.approx(expected)


def test_another_judge_reuses_cached_masks(models, images, tmp_path):
    first = _method(models, tmp_path)
    _run(first, images)
    assert first.runtime_stats()["segmentations"] == len(images)
    second = _method(models, tmp_path, judge="words")
    scores = _run(second, images)
    stats = second.runtime_stats()
    assert stats["segmentations"] == 0 and stats["mask_cache_hits"] >= len(images)
    assert second._segmenter._generator is None  # SAM2 was never even loaded
    assert stats["c_max"] == first.runtime_stats()["c_max"]
    # The word-only judge never gives a number: every view falls back to 1, as in the paper.
    assert stats["parse_failures"] == stats["judge_views"] > 0
    for sid, score in zip(images, scores):
        e = second.sample_extras(sid)
        assert e["parse_failures"] == e["judge_views"]
        assert score == pytest.approx(1.0 + e["s_seg"])
    # Another segmenter setting is another cache entry.
    third = _method(models, tmp_path, segmenter={"points_per_side": 3})
    _run(third, images)
    assert third.runtime_stats()["segmentations"] == len(images)


def test_mask_cache_is_keyed_by_the_dataset_name_the_engine_passes(models, images, tmp_path):
    first = _method(models, tmp_path)
    first.prepare(_source(images))
    same = _method(models, tmp_path)
    same.prepare(_source(images))
    assert same.runtime_stats()["segmentations"] == 0  # same dataset: every mask from the cache
    options = first.options
    other = DogIqa(options)
    other.setup(RunContext(dataset="another-set", cache_dir=tmp_path))  # same ids, another dataset
    other.prepare(_source(images))
    assert other.runtime_stats()["segmentations"] == len(images) and other._cache.folder != first._cache.folder
    with pytest.raises(IqaError, match="dataset"):
        no_dataset = DogIqa(options)
        no_dataset.setup(RunContext(cache_dir=tmp_path))
        no_dataset.prepare(_source(images))


def test_batch_size_does_not_change_scores(models, images, tmp_path):
    one = _method(models, tmp_path, judge_batch_size=1)
    many = _method(models, tmp_path, judge_batch_size=16)
    assert _run(one, images) == pytest.approx(_run(many, images), abs=1e-6)
    assert one.runtime_stats()["judge_calls"] > many.runtime_stats()["judge_calls"]


def test_ablation_variants(models, images, tmp_path):
    glob = _method(models, tmp_path, parts="global", use_s_seg=False)
    scores = _run(glob, images)
    assert glob.runtime_stats()["segmentations"] == 0 and glob._segmenter is None
    assert all(s in range(1, 8) for s in scores)
    local = _method(models, tmp_path, parts="local", crop="mask", weights="mean", c_max=50)
    scores = _run(local, images)
    for sid, score in zip(images, scores):
        e = local.sample_extras(sid)
        assert e["s_global"] is None and score == pytest.approx(e["s_local"] + e["regions"] * 7 / 50)
    assert local.runtime_stats()["c_max_source"] == "option"
    unprepared = _method(models, tmp_path)
    with pytest.raises(IqaError, match="c_max"):
        unprepared.score([Sample("img/0", images["img/0"])])


def test_logit_variant_is_the_expected_level(models, images, tmp_path):
    method = _method(models, tmp_path, judge_mode="logits", parts="global", use_s_seg=False)
    scores = _run(method, images)
    backend = load_backend(BackendSpec(arch="llava", path=models["digits"]))
    ids = [backend.token_id(str(k)) for k in range(1, 8)]
    prompt = method._judge.prompt_text()
    with torch.no_grad():
        logits = backend.next_token_logits(backend.normalize(backend.to_pixels(list(images.values()))), prompt)
    probs = torch.softmax(logits[:, ids], dim=-1)
    expected = (probs * torch.arange(1, 8)).sum(-1)
    assert scores == pytest.approx(expected.tolist(), abs=1e-5)
    assert all(1 < s < 7 for s in scores)


def test_owl3_worker_transport_with_a_hosted_llava(models, images):
    from iqabench.models.owl3_worker.client import load as load_worker

    spec = BackendSpec(arch="owl3-worker", path=models["digits"], worker_python=sys.executable, worker_host="iqabench:llava")
    worker = load_worker(spec, "cpu")
    try:
        local = load_backend(BackendSpec(arch="llava", path=models["digits"]))
        views = list(images.values())
        prompt = "Please evaluate the quality of the image and score in [1, 2, 3, 4, 5, 6, 7]."
        with torch.no_grad():
            expected = local.generate(local.normalize(local.to_pixels(views)), prompt, max_new_tokens=3)
        assert worker.generate_images(views, prompt, max_new_tokens=3) == expected
        assert worker.fingerprint()["host"] == "iqabench:llava" and worker.image_size == local.image_size
        with pytest.raises(IqaError, match="logits"):
            worker.next_token_logits(None, prompt)
    finally:
        worker.close()
    assert worker._proc.returncode == 0
    with pytest.raises(NotAvailable, match="worker_python"):
        load_worker(BackendSpec(arch="owl3-worker", path="mPLUG/mPLUG-Owl3-7B-240728"), "cpu")
    with pytest.raises(IqaError, match="trust_remote_code"):
        load_worker(BackendSpec(arch="owl3-worker", path="mPLUG/mPLUG-Owl3-7B-240728", worker_python=sys.executable), "cpu")
    # the worker judge needs its venv; the default judge runs in-process and needs only the weights
    assert "worker_python" in DogIqa.check_available(DogIqaOptions(judge={"backend": "owl3-worker"}))
    assert "hf download mPLUG/mPLUG-Owl3-7B-240728" in DogIqa.check_available(DogIqaOptions())


def test_worker_reports_a_failed_load_as_one_line(tmp_path):
    """The Owl3 host refuses to run without its files; the error crosses the process boundary."""
    from iqabench.models.owl3_worker.client import load as load_worker

    spec = BackendSpec(arch="owl3-worker", path=str(tmp_path / "no-such-owl3"), trust_remote_code=True, revision="0" * 40,
                       worker_python=sys.executable)
    with pytest.raises(IqaError, match="op load: ") as info:
        load_worker(spec, "cpu")
    assert "\n" not in str(info.value)
