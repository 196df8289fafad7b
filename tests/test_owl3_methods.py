"""mPLUG-Owl3 in-process behind the methods: Dog-IQA's judge (the paper's judge model) on the tiny
random Owl3 with a tiny SAM2, in both judge modes; the softmax presets through the whole engine
with `-o backend=owl3 -o backend_path=DIR`; judge batches of any size score as batches of one."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (a test dependency: a missing one fails, never skips)

torch.set_num_threads(1)
os.environ["HF_HUB_OFFLINE"] = "1"

from PIL import Image

from iqabench.api import RunContext, Sample, SampleSource
from iqabench.methods.dog_iqa import DogIqa, DogIqaOptions
from iqabench.methods.dog_iqa_judge import JudgeSettings, StandardJudge
from iqabench.models.backend import BackendSpec, Query, load_backend
from iqabench.models.tiny_owl3 import build_tiny_owl3


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from iqabench.models.tiny_sam2 import build_tiny_sam2

    root = tmp_path_factory.mktemp("owl3_methods")
    return {"sam2": str(build_tiny_sam2(root / "sam2")), "owl3": str(build_tiny_owl3(root / "owl3", seed=4))}


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    out = {}
    for i, (h, w) in enumerate([(40, 64), (56, 48), (48, 48)]):
        base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        base[: h // 2, : w // 2] = rng.integers(0, 255, 3, dtype=np.uint8)  # a flat block: structure for SAM
        out[f"img/{i}"] = Image.fromarray(base)
    return out


def _dog_iqa(models, cache_dir, **options):
    seg = {"model": models["sam2"], "points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    method = DogIqa(DogIqaOptions(judge={"backend": "owl3", "backend_path": models["owl3"]}, segmenter=seg,
                                  min_area_fraction=0.02, judge_batch_size=4, **options))
    assert DogIqa.check_available(method.options) is None  # in-process: no worker interpreter asked for
    method.setup(RunContext(dataset="synthetic", cache_dir=cache_dir))
    return method


def _run(method, images):
    source = SampleSource(list(images), lambda sid: Sample(sid, images[sid], 0.5))
    method.prepare(source)
    return method.score([source.load(sid) for sid in images])


@pytest.mark.parametrize("mode", ["logits", "generate"])
def test_dog_iqa_scores_with_the_owl3_judge_in_process(models, images, tmp_path, mode):
    method = _dog_iqa(models, tmp_path, judge_mode=mode)
    scores = _run(method, images)
    stats = method.runtime_stats()
    assert len(scores) == len(images) and all(math.isfinite(s) for s in scores)
    assert stats["judge_backend"]["arch"] == "owl3"
    extras = [method.sample_extras(sid) for sid in images]
    assert stats["judge_views"] == sum(e["judge_views"] for e in extras) == sum(1 + e["regions"] for e in extras)
    assert stats["judge_calls"] == math.ceil(stats["judge_views"] / 4)
    if mode == "logits":
        assert stats["parse_failures"] == 0
        assert len(set(scores)) == len(scores)  # the judge's expected level depends on the image


def test_judge_batches_score_as_batches_of_one(models, images):
    backend = load_backend(BackendSpec(arch="owl3", path=models["owl3"]))
    views = list(images.values()) + [im.crop((0, 0, 20, 30)) for im in images.values()]
    one = StandardJudge(backend, JudgeSettings(mode="logits", batch_size=1)).score(views)
    many = StandardJudge(backend, JudgeSettings(mode="logits", batch_size=8))
    assert [v.score for v in many.score(views)] == pytest.approx([v.score for v in one], abs=1e-5)
    system, user = many.system, many.user
    with torch.no_grad():  # the judge's query is the system turn plus the user's request
        direct = backend.logits([Query((views[0],), user, system=system)])
    digits = [backend.token_id(str(k)) for k in range(1, 8)]
    expected = float((torch.softmax(direct[0, digits], -1) * torch.arange(1, 8)).sum())
    assert one[0].score == pytest.approx(expected, abs=1e-5)


def test_every_softmax_preset_runs_on_owl3_through_the_engine(models, tiny_root, tmp_path):
    from iqabench.methods.softmax import PRESETS
    from iqabench.run import RunConfig, run

    for preset in PRESETS:
        cfg = RunConfig(method=preset, dataset="tiny", data_root=tiny_root, results=tmp_path, device="cpu",
                        options={"backend": "owl3", "backend_path": models["owl3"]}, limit=3, batch_size=2,
                        progress=False, n_boot=0)
        first = run(cfg, on_log=lambda m: None)
        assert first.metrics["n"] == 3 and first.metrics["n_failed"] == 0, (preset, first.metrics["failures_by_kind"])
        again = run(cfg, on_log=lambda m: None)
        assert again.scored_now == 0 and again.run_dir == first.run_dir
