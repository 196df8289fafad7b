"""Seed 001's prompting systems (mllm-prompt, mllm-prompt-fr): the score parser, Bradley–Terry on
synthetic outcomes, the Query objects each system builds (images per prompt, their order), and runs
on tiny RANDOM Owl2 / LLaVA models through the real runner: their generations are random tokens, so
parse failures happen and must be counted and recorded as failures, never filled in."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import transformers  # noqa: F401
from PIL import Image

from iqabench.api import RunContext, Sample
from iqabench.errors import IqaError
from iqabench.methods.mllm_prompt import (
    MllmPrompt,
    MllmPromptFR,
    bradley_terry,
    prompts,
)
from iqabench.methods.mllm_prompt.parse import parse_comparison, parse_score
from iqabench.models.backend import IMAGE_PLACEHOLDER
from iqabench.run import RunConfig, run


# -- parser ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("85", 85.0), ("  72.5 ", 72.5), ("Score: 85.", 85.0), ("score: 7 out of 10", 70.0), ("85/100", 85.0),
    ("7/10", 70.0), ("Score: 4.5/5", 90.0), ("I would rate it 3 out of 5", 60.0), ("0", 0.0), ("100", 100.0),
    ("The image is blurry, with 2 visible artifacts and low contrast. Score: 40", 40.0),
    ("**Score:** 63", 63.0), ("The rating is 55.", 55.0), ("Quality score = 91", 91.0),
    ("The quality of the image is good.", 75.0), ("Excellent", 100.0), ("bad", 0.0),
    ("It looks fair, fair enough.", 50.0),
    ("Good details; the quality is poor.", 25.0),  # a level after "quality is" wins
    # failures: nothing, out of range, ambiguous, not a number
    ("", None), (None, None), ("   ", None), ("150", None), ("-", None), ("11/10", None), ("85. It has 2 flaws", None),
    ("between 60 and 70", None), ("excellent colours but bad noise", None), ("qualitypoorThepoor", None),
    ("x2 3rd", None), ("Score: 120", None), ("I cannot rate this image.", None),
])
def test_parse_score(text, expected):
    got = parse_score(text)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_parse_score_prefers_levels_when_asked():
    assert parse_score("Level 2: the quality is good", prefer="level") == 75.0
    assert parse_score("Level 2: the quality is good") == 2.0  # numbers first: the one number
    assert parse_score("2", prefer="level") == 2.0


@pytest.mark.parametrize("text, expected", [
    ("1", 1), ("0", 0), ("2", 2), ("Result: 1", 1), ("The first image is sharper. Output: 0", 0),
    ("Both images show 2 kinds of blur ... Result: 2", 2), ("Score 1: The first image has better quality", 1),
    ("3", None), ("", None), ("1 or 0", None), ("Result: 7", None), ("first", None), ("0.5", None), ("1/2", None),
])
def test_parse_comparison(text, expected):
    assert parse_comparison(text) == expected


# -- Bradley–Terry -----------------------------------------------------------------------------
def _synthetic(n=12, per_pair=30, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, 1, n)
    comps = []
    for i in range(n):
        for j in range(i + 1, n):
            p = 1 / (1 + np.exp(truth[j] - truth[i]))
            comps += [(i, j, float(w)) for w in rng.random(per_pair) < p]
    return truth - truth.mean(), comps


def test_bradley_terry_recovers_known_strengths():
    truth, comps = _synthetic()
    est = bradley_terry.fit(len(truth), comps, prior=0.0)
    assert abs(est.mean()) < 1e-9
    assert np.corrcoef(est, truth)[0, 1] > 0.97 and np.max(np.abs(est - truth)) < 0.5


def test_bradley_terry_is_the_maximum_likelihood():
    truth, comps = _synthetic(n=6, per_pair=8, seed=1)
    est = bradley_terry.fit(len(truth), comps, prior=0.0)
    p = np.exp(est)
    wins, expected = np.zeros(6), np.zeros(6)
    for i, j, w in comps:  # the score equations: observed wins = expected wins
        wins[i] += w
        wins[j] += 1 - w
        expected[i] += p[i] / (p[i] + p[j])
        expected[j] += p[j] / (p[i] + p[j])
    np.testing.assert_allclose(wins, expected, atol=1e-6)
    best = bradley_terry.log_likelihood(est, comps)
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert bradley_terry.log_likelihood(est + rng.normal(0, 0.05, 6), comps) < best


def test_bradley_terry_prior_keeps_perfect_records_finite():
    comps = [(0, 1, 1.0), (0, 2, 1.0), (1, 2, 0.5)]  # image 0 won everything
    with pytest.raises(ValueError, match="does not exist"):
        bradley_terry.fit(3, comps, prior=0.0)
    est = bradley_terry.fit(3, comps, prior=0.5)
    assert np.all(np.isfinite(est)) and est[0] > est[1] == pytest.approx(est[2])
    soft = bradley_terry.fit(2, [(0, 1, 0.8)] * 5, prior=0.0)  # fractional outcomes: p0/(p0+p1) = 0.8
    assert soft[0] - soft[1] == pytest.approx(math.log(4), abs=1e-6)


# -- tiny models, examples, samples ----------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from iqabench.models.tiny import tiny_model_path

    root = tmp_path_factory.mktemp("mllm_prompt_models")
    return {arch: tiny_model_path(arch, root) for arch in ("owl2", "llava")}


def _image(seed, size=(40, 48)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


def _samples(n=3, reference=False):
    return [Sample(f"img{i}", _image(i), reference=_image(100 + i) if reference else None) for i in range(n)]


@pytest.fixture(scope="module")
def examples_csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples")
    rows = []
    for i, score in enumerate((1.5, 3.0, 4.5, 2.0)):
        _image(50 + i).save(folder / f"ex{i}.png")
        _image(80 + i).save(folder / f"ref{i}.png")
        rows.append({"image": f"ex{i}.png", "score": score, "reference": str(folder / f"ref{i}.png")})
    path = folder / "examples.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "score", "reference"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _method(cls, models, arch="owl2", batch_size=4, **options):
    m = cls(cls.Options(backend=arch, backend_path=models[arch], **options))
    m.setup(RunContext(batch_size=batch_size))
    return m


def _placeholders(query):
    return query.text.count(IMAGE_PLACEHOLDER)


# -- the prompts each system builds ------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3])
def test_in_context_prompt_holds_k_plus_one_images(models, examples_csv, k):
    m = _method(MllmPrompt, models, system="in-context", examples=str(examples_csv), examples_range="1,5", k=k,
                answer="logits", scale="level")
    samples = _samples(2)
    m.score(samples)
    for q, s in zip(m.last_queries, samples):
        assert len(q.images) == k + 1 == _placeholders(q) and q.images[-1] is s.image
        assert all(im is not s.image for im in q.images[:-1])
        assert "human perceptual quality score of" in q.text and q.answer_prefix == "The quality of the image is"
    assert sum(word in m.last_queries[0].text for word in prompts.LEVELS) >= 1  # example scores as level words


def test_in_context_example_scores_are_mapped_to_0_100(models, examples_csv):
    m = _method(MllmPrompt, models, arch="llava", system="in-context", examples=str(examples_csv),
                examples_range="1,5", k=4, max_new_tokens=2)
    query = m.single_queries(_samples(1))[0]
    for score in (12.5, 50, 87.5, 25):  # 1.5, 3.0, 4.5, 2.0 on 1..5
        assert f" is {score:g}" in query.text
    assert "The score must range from 0 to 100" in query.text


def test_fr_prompt_holds_reference_then_distorted(models, examples_csv):
    m = _method(MllmPromptFR, models, answer="logits", scale="level")
    samples = _samples(3, reference=True)
    scores = m.score(samples)
    assert len(scores) == 3 and all(math.isfinite(s) and 0 <= s <= 100 for s in scores)
    for q, s in zip(m.last_queries, samples):
        assert q.images == (s.reference, s.image) and _placeholders(q) == 2
        assert q.text.index("reference") < q.text.index("distorted")
    ctx = _method(MllmPromptFR, models, system="in-context", examples=str(examples_csv), examples_range="1,5", k=2,
                  max_new_tokens=2)
    q = ctx.single_queries(samples[:1])[0]
    assert len(q.images) == 6 == _placeholders(q) and q.images[-2:] == (samples[0].reference, samples[0].image)


def test_double_prompts_hold_two_images_and_in_context_pairs_four(models, examples_csv):
    a, b = _image(1), _image(2)
    m = _method(MllmPrompt, models, stimulus="double", max_new_tokens=2)
    q = m.pair_queries([(a, b)])[0]
    assert q.images == (a, b) and _placeholders(q) == 2 and "output 1" in q.text
    ctx = _method(MllmPrompt, models, stimulus="double", system="in-context", examples=str(examples_csv),
                  examples_range="1,5", max_new_tokens=2)
    q = ctx.pair_queries([(a, b)])[0]
    assert len(q.images) == 4 == _placeholders(q) and q.images[2:] == (a, b)
    assert "third image has better quality than the fourth" in q.text


def test_cot_prompt_is_the_papers(models):
    m = _method(MllmPrompt, models, system="cot", max_new_tokens=3)
    q = m.single_queries(_samples(1))[0]
    assert q.text.count("Please first detail its perceptual quality in terms of overall quality") == 1
    assert "Score: " in q.text and len(q.images) == 1


# -- refusals, one line each ----------------------------------------------------------------------
def test_refusals(models, examples_csv, tmp_path, monkeypatch):
    with pytest.raises(IqaError, match="mllm-prompt-fr"):
        MllmPrompt(MllmPrompt.Options(stimulus="fr"))
    with pytest.raises(ValueError, match="in-context needs examples"):
        MllmPrompt.Options(system="in-context")
    with pytest.raises(ValueError, match="scale=level"):
        MllmPrompt.Options(answer="logits")
    bad = tmp_path / "bad.csv"
    for content, message in [("image,mos\nex0.png,3\n", "needs columns image, score"),
                             ("image,score\nex0.png,abc\n", r"bad.csv:2: score 'abc' is not a number"),
                             ("image,score\nnope.png,3\n", r"bad.csv:2: image 'nope.png': no such file"),
                             ("image,score\n" + str(examples_csv.parent / "ex0.png") + ",300\n",
                              "outside examples_range")]:
        bad.write_text(content)
        with pytest.raises(IqaError, match=message) as err:
            _method(MllmPrompt, models, system="in-context", examples=str(bad), max_new_tokens=2)
        assert "\n" not in str(err.value)
    from iqabench.models import backend as backend_module

    real = backend_module.load_backend

    def single_image(spec, device="cpu"):  # the real tiny backend, declared one-image-per-prompt
        loaded = real(spec, device)
        loaded.multi_image = False
        return loaded

    monkeypatch.setattr(backend_module, "load_backend", single_image)
    with pytest.raises(IqaError, match="takes one image per prompt"):
        _method(MllmPrompt, models, stimulus="double", max_new_tokens=2)


# -- runs on the tiny random models: failures counted and recorded, never filled --------------------
@pytest.mark.parametrize("arch, system", [("owl2", "cot"), ("llava", "standard")])
def test_generated_answers_are_stored_and_failures_recorded(models, tiny_root, tmp_path, arch, system):
    cfg = RunConfig(method="mllm-prompt", dataset="tiny", data_root=tiny_root, results=tmp_path, limit=6, batch_size=3,
                    progress=False, n_boot=0, options={"backend": arch, "backend_path": models[arch], "system": system,
                                                       "max_new_tokens": 8})
    result = run(cfg, on_log=lambda m: None)
    records = [json.loads(line) for f in sorted(result.run_dir.glob("predictions*.jsonl"))
               for line in f.read_text().splitlines()]
    assert len(records) == 6
    failed = [r for r in records if r["error"]]
    for r in records:
        assert isinstance(r["answer"], str)  # every raw answer is stored
        assert (r["parsed"] is None) == bool(r["error"])
        if r["error"]:
            assert r["score"] is None and "no score could be read" in r["error"]
        else:
            assert r["score"] == pytest.approx(parse_score(r["answer"]))
    assert failed, "random tokens are expected to fail parsing at least once"
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["runtime"]["parse_failures"] == len(failed) == metrics["n_failed"]


def test_double_stimulus_scores_come_from_recorded_pairs(models, tiny_root, tmp_path):
    options = {"backend": "owl2", "backend_path": models["owl2"], "stimulus": "double", "answer": "logits",
               "pairs_per_image": 3, "pair_seed": 7}
    cfg = RunConfig(method="mllm-prompt", dataset="tiny", data_root=tiny_root, results=tmp_path, limit=7, batch_size=4,
                    progress=False, n_boot=0, options=options)
    result = run(cfg, on_log=lambda m: None)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["n_failed"] == 0 and metrics["n"] == 7
    file = metrics["runtime"]["comparisons_file"]
    pairs = [json.loads(line) for line in Path(file).read_text().splitlines()]
    assert len(pairs) == metrics["runtime"]["pairs"] == 3 * 4  # 7 images: 4 pairs a round (one image twice)
    ids = sorted({p[k] for p in pairs for k in ("first", "second")})
    assert len(ids) == 7
    # the scores are the Bradley–Terry fit of the recorded soft outcomes, recomputed here
    index = {sid: i for i, sid in enumerate(ids)}
    logp = bradley_terry.fit(7, [(index[p["first"]], index[p["second"]], p["outcome"]) for p in pairs], prior=0.5)
    preds = pd.read_csv(result.run_dir / "predictions.csv").set_index("id")
    ours = np.array([preds.loc[sid, "score"] for sid in ids])
    np.testing.assert_allclose(ours - ours.mean(), logp - logp.mean(), atol=1e-6)
    # the pairs are the seeded sample the method draws for these ids
    m = MllmPrompt(MllmPrompt.Options(**options))
    drawn = m.sample_pairs(list(preds.index))
    assert sorted((p["round"], p["first"], p["second"]) for p in pairs) == sorted(drawn)
    again = run(cfg, on_log=lambda m: None)
    assert again.scored_now == 0


def test_double_generate_counts_pair_failures_and_fails_uncompared_images(models, tmp_path):
    """Random tokens rarely read as 0/1/2: unparsed pairs are counted and left out; an image left
    with no parsed comparison raises for itself instead of taking a default strength."""
    from iqabench.api import SampleSource

    samples = {s.id: s for s in _samples(5)}
    m = MllmPrompt(MllmPrompt.Options(backend="llava", backend_path=models["llava"], stimulus="double",
                                      pairs_per_image=2, max_new_tokens=6))
    m.setup(RunContext(batch_size=4, cache_dir=tmp_path))
    m.prepare(SampleSource(list(samples), samples.__getitem__))
    stats = m.runtime_stats()
    records = [json.loads(line) for line in Path(stats["comparisons_file"]).read_text().splitlines()]
    assert stats["pairs"] == len(records) == 6 and all(isinstance(r["answer"], str) for r in records)
    unparsed = [r for r in records if r["outcome"] is None]
    assert stats["pair_parse_failures"] == len(unparsed)
    assert all(parse_comparison(r["answer"]) is None for r in unparsed)
    compared = {r[k] for r in records if r["outcome"] is not None for k in ("first", "second")}
    for sid, sample in samples.items():
        if sid in compared:
            assert math.isfinite(m.score([sample])[0])
        else:
            with pytest.raises(ValueError, match="no parsed comparison"):
                m.score([sample])
    assert stats["images_without_comparison"] == 5 - len(compared)


def test_a_failed_parse_fails_only_its_own_image_and_generates_once(models):
    """The runner re-scores a batch that raised image by image: the answers come from the method's
    memo (no second generation) and only the unparseable image fails. The tiny model's answers are
    replaced by fixed texts here, to pin which image fails; the generation path is tested above."""
    from iqabench.run import _score_batch

    m = _method(MllmPrompt, models, max_new_tokens=4)
    texts = iter([["Score: 85", "no idea", "3 out of 5"]])
    calls = []
    m.backend.answers = lambda queries, max_new_tokens: calls.append(len(queries)) or next(texts)
    outcome = _score_batch(m, _samples(3))
    assert calls == [3]
    assert outcome[0] == (85.0, None) and outcome[2] == (60.0, None)
    assert outcome[1][0] is None and "no score could be read from the answer 'no idea'" in outcome[1][1]
    assert m.runtime_stats()["parse_failures"] == 1
    assert [m.sample_extras(f"img{i}")["answer"] for i in range(3)] == ["Score: 85", "no idea", "3 out of 5"]
