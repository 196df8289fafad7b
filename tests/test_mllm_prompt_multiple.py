"""Seed 001's multiple-stimulus system (mllm-prompt -o stimulus=multiple): the ranking parser, the
study's Thurstone aggregate against an independent solver of the study's own constrained objective,
the ranking prompts, and a run through the real runner on the tiny random Owl2 whose answers the
test controls (each group ranked by mean brightness, one group answered malformed), checked
against the aggregate recomputed here from those answers."""
from __future__ import annotations

import csv
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.optimize import brentq, minimize
from scipy.stats import norm

from iqabench.api import RunContext
from iqabench.errors import IqaError
from iqabench.methods.mllm_prompt import MllmPrompt, MllmPromptFR, thurstone
from iqabench.methods.mllm_prompt.parse import parse_ranking
from iqabench.models.backend import IMAGE_PLACEHOLDER
from iqabench.run import RunConfig, run


@pytest.mark.parametrize("text, expected", [
    ("Score: [first: 0, second: 3, third: 1, fourth: 2]", [0, 3, 1, 2]),
    ("The first is blurry, the 2 others sharp. Score: [first: 0, second: 3, third: 3, fourth: 2]", [0, 3, 3, 2]),
    ("0 3 1 2", [0, 3, 1, 2]), ("**Ranking:** 3, 2, 2, 0", [3, 2, 2, 0]),
    ("Score: [first: 0, second: 4, third: 1, fourth: 2]", None),  # 4 is not a rank of four images
    ("Score: [first: 0, second: 1, third: 2]", None),  # three ranks for four images
    ("Score: 1.5, 2, 3, 0", None), ("I cannot rank these images.", None), ("", None), (None, None),
])
def test_parse_ranking(text, expected):
    assert parse_ranking(text, 4) == expected


def _study_objective_solution(counts: np.ndarray) -> np.ndarray:
    """The study's formulation as written in its paper/code: sum C log max(Phi, 1e-6) - |S|^2/2
    under sum S = 0, by SLSQP (an independent solver)."""
    def objective(s):
        return -(np.sum(counts * np.log(np.maximum(norm.cdf(s[:, None] - s[None, :]), 1e-6))) - np.sum(s ** 2) / 2)

    res = minimize(objective, np.linspace(-0.1, 0.1, len(counts)), method="SLSQP",
                   constraints={"type": "eq", "fun": np.sum}, options={"ftol": 1e-12, "maxiter": 1000})
    return res.x


def _counts_by_hand(n, groups):
    counts = np.zeros((n, n))
    for items, ranks in groups:
        for (a, ra), (b, rb) in combinations(zip(items, ranks), 2):
            if ra > rb:
                counts[a, b] += 1
            elif rb > ra:
                counts[b, a] += 1
            else:  # a tie: a win for both, as the study counts it
                counts[a, b] += 1
                counts[b, a] += 1
    return counts


def test_two_images_match_the_closed_form():
    # A ranked above B in c groups: S = (s, -s) maximises c log Phi(2s) - s^2, i.e. s = c phi(2s) / Phi(2s)
    for c in (1, 3):
        counts = thurstone.pair_counts(2, [([0, 1], [1, 0])] * c)
        s = brentq(lambda x, c=c: x - c * norm.pdf(2 * x) / norm.cdf(2 * x), 0.0, 10.0)
        np.testing.assert_allclose(thurstone.fit(counts), [s, -s], atol=1e-7)
    np.testing.assert_allclose(thurstone.scaled(np.array([0.3, -0.3])), [100.0, 0.0])


def test_aggregate_equals_the_studys_objective_with_ties():
    groups = [([0, 1, 2, 3], [3, 2, 1, 0]), ([1, 2, 0, 4], [1, 1, 0, 3]), ([4, 3, 2, 0], [2, 0, 0, 3]),
              ([2, 4, 1, 3], [3, 2, 1, 0])]
    counts = thurstone.pair_counts(5, groups)
    np.testing.assert_array_equal(counts, _counts_by_hand(5, groups))
    ours = thurstone.fit(counts)
    assert abs(ours.sum()) < 1e-9
    np.testing.assert_allclose(ours, _study_objective_solution(counts), atol=1e-4)
    # and it is a stationary point of the posterior, written out here with norm.pdf / norm.cdf
    d = ours[:, None] - ours[None, :]
    w = counts * norm.pdf(d) / norm.cdf(d)
    np.testing.assert_allclose(w.sum(1) - w.sum(0) - ours, 0.0, atol=1e-6)


# -- prompts ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def owl2(tmp_path_factory):
    from iqabench.models.tiny import tiny_model_path

    return tiny_model_path("owl2", tmp_path_factory.mktemp("multiple_models"))


def _image(value):
    return Image.fromarray(np.full((32, 40, 3), value, dtype=np.uint8))


def test_ranking_prompts_hold_the_group_and_in_context_groups(owl2, tmp_path):
    images = [_image(v) for v in (10, 20, 30, 40)]
    m = MllmPrompt(MllmPrompt.Options(backend="owl2", backend_path=owl2, stimulus="multiple", max_new_tokens=2))
    m.setup(RunContext(batch_size=2))
    q = m.group_queries([images])[0]
    assert q.images == tuple(images) and q.text.count(IMAGE_PLACEHOLDER) == 4
    assert "ranking result among four images" in q.text and "ranked 3" in q.text
    assert "Score: [first: , second: , third: , fourth: ]" in q.text
    cot = MllmPrompt(MllmPrompt.Options(backend="owl2", backend_path=owl2, stimulus="multiple", system="cot"))
    cot.setup(RunContext(batch_size=2))
    assert "Please first detail their perceptual quality comparison" in cot.group_queries([images])[0].text
    assert cot.options.tokens() == 320
    rows = []
    for i, score in enumerate((3.0, 1.0, 4.0, 2.0)):  # drawn in some order; their ranks follow the scores
        _image(60 + 10 * i).save(tmp_path / f"ex{i}.png")
        rows.append({"image": f"ex{i}.png", "score": score})
    with (tmp_path / "ex.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "score"])
        writer.writeheader()
        writer.writerows(rows)
    ctx = MllmPrompt(MllmPrompt.Options(backend="owl2", backend_path=owl2, stimulus="multiple", system="in-context",
                                        examples=str(tmp_path / "ex.csv"), examples_range="1,4", max_new_tokens=2))
    ctx.setup(RunContext(batch_size=2))
    (group, ranks), = ctx._context()
    q = ctx.group_queries([images])[0]
    assert len(q.images) == 8 and q.images[4:] == tuple(images) and q.text.count(IMAGE_PLACEHOLDER) == 8
    by_image = {id(e.image): e.score for e in ctx.examples}
    scores = [by_image[id(im)] for im in group]
    assert [sorted(scores).index(s) for s in scores] == ranks
    listed = ", ".join(f"{o}: {r}" for o, r in zip(("first", "second", "third", "fourth"), ranks))
    assert f"the human perceptual quality ranking result is [{listed}]" in q.text
    assert "For the shown eight images" in q.text and "from the fifth to the eighth images" in q.text


def test_new_options_leave_existing_run_keys_alone():
    """Fields added for multiple stimulus and the study's pair aggregate stay out of the option dump
    (the run key) at their defaults; a changed value is in it."""
    dumped = MllmPrompt.Options(stimulus="double").model_dump()
    assert not {"group_size", "groups_per_image", "group_seed", "pair_aggregate"} & set(dumped)
    assert MllmPrompt.Options(stimulus="multiple", group_size=3).model_dump()["group_size"] == 3


def test_refusals(owl2):
    with pytest.raises(ValueError, match="answer=generate"):
        MllmPrompt.Options(stimulus="multiple", answer="logits", scale="level")
    m = MllmPrompt(MllmPrompt.Options(backend="owl2", backend_path=owl2, stimulus="multiple", group_size=5))
    with pytest.raises(IqaError, match="fewer than group_size=5"):
        m.sample_groups(["a", "b", "c", "d"])


def test_groups_are_led_by_each_image_with_distinct_members():
    m = MllmPrompt(MllmPrompt.Options(stimulus="multiple", groups_per_image=3))
    ids = [f"i{k}" for k in range(9)]
    groups = m.sample_groups(ids)
    assert [g for g, _ in groups] == list(range(27))
    assert [members[0] for _, members in groups] == [sid for sid in ids for _ in range(3)]
    assert all(len(set(members)) == 4 for _, members in groups)
    assert groups == m.sample_groups(ids)  # seeded
    assert groups != MllmPrompt(MllmPrompt.Options(stimulus="multiple", groups_per_image=3,
                                                   group_seed=1)).sample_groups(ids)


# -- a run whose answers the test controls ------------------------------------------------------------
def _brightness_ranking(images):
    means = [float(np.asarray(im, dtype=float).mean()) for im in images]
    return [sorted(means).index(v) for v in means]  # 0 = darkest (taken as the lowest quality)


def test_run_aggregates_controlled_rankings_and_records_a_malformed_one(owl2, tiny_root, tmp_path, monkeypatch):
    from iqabench.models import backend as backend_module

    real = backend_module.load_backend
    asked = []

    def controlled(spec, device="cpu"):  # the real tiny backend; its generated answers are the test's
        loaded = real(spec, device)

        def answers(queries, max_new_tokens):
            out = []
            for q in queries:
                asked.append(q)
                ranks = _brightness_ranking(q.images)
                out.append("I cannot rank these." if len(asked) == 3 else
                           "Score: [" + ", ".join(f"{o}: {r}" for o, r in zip(("first", "second", "third", "fourth"),
                                                                              ranks)) + "]")
            return out

        loaded.answers = answers
        return loaded

    monkeypatch.setattr(backend_module, "load_backend", controlled)
    options = {"backend": "owl2", "backend_path": owl2, "stimulus": "multiple", "groups_per_image": 2}
    cfg = RunConfig(method="mllm-prompt", dataset="tiny", data_root=tiny_root, results=tmp_path, limit=6, batch_size=4,
                    progress=False, n_boot=0, options=options)
    result = run(cfg, on_log=lambda m: None)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    runtime = metrics["runtime"]
    assert runtime["groups"] == 12 == len(asked) and runtime["group_parse_failures"] == 1
    records = [json.loads(line) for line in Path(runtime["rankings_file"]).read_text().splitlines()]
    assert len(records) == 12 and all(len(r["ids"]) == 4 for r in records)
    bad = [r for r in records if r["ranks"] is None]
    assert len(bad) == 1 and bad[0]["answer"] == "I cannot rank these."
    # the aggregate recomputed here from the recorded groups and an independent solver
    preds = pd.read_csv(result.run_dir / "predictions.csv").set_index("id")
    ids = list(preds.index)
    index = {sid: i for i, sid in enumerate(ids)}
    for r in records:
        if r["ranks"] is not None:
            assert r["answer"].startswith("Score: [first: ")
    counts = _counts_by_hand(len(ids), [([index[s] for s in r["ids"]], r["ranks"]) for r in records if r["ranks"]])
    strengths = _study_objective_solution(counts)
    expected = 100 * (strengths - strengths.min()) / (strengths.max() - strengths.min())
    np.testing.assert_allclose(preds["score"].to_numpy(), expected, atol=0.05)
    assert metrics["n_failed"] == 0 and metrics["n"] == 6
    lines = [json.loads(line) for f in sorted(result.run_dir.glob("predictions*.jsonl"))
             for line in f.read_text().splitlines()]
    assert sum(r["groups"] for r in lines) == 12 * 4 and sum(r["parsed_groups"] for r in lines) == 11 * 4
    # resumable: the groups are read back, nothing is asked again
    asked.clear()
    again = run(cfg, on_log=lambda m: None)
    assert again.scored_now == 0 and asked == []


def test_fr_groups_share_a_reference_shown_first(owl2, tiny_root, tmp_path, monkeypatch):
    """mllm-prompt-fr -o stimulus=multiple: every group is distorted images of one reference, shown
    after it; the two images of a reference with too few images in the part are recorded failures."""
    from iqabench.models import backend as backend_module

    real = backend_module.load_backend
    asked = []

    def controlled(spec, device="cpu"):
        loaded = real(spec, device)

        def answers(queries, max_new_tokens):
            asked.extend(queries)
            return ["Score: [" + ", ".join(map(str, _brightness_ranking(q.images[1:]))) + "]" for q in queries]

        loaded.answers = answers
        return loaded

    monkeypatch.setattr(backend_module, "load_backend", controlled)
    options = {"backend": "owl2", "backend_path": owl2, "stimulus": "multiple", "groups_per_image": 1,
               "system": "cot"}
    cfg = RunConfig(method="mllm-prompt-fr", dataset="tiny", data_root=tiny_root, results=tmp_path, split="all",
                    limit=14, batch_size=4, progress=False, n_boot=0, options=options)
    result = run(cfg, on_log=lambda m: None)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    runtime = metrics["runtime"]
    records = [json.loads(line) for line in Path(runtime["rankings_file"]).read_text().splitlines()]
    preds = pd.read_csv(result.run_dir / "predictions.csv").set_index("id")
    ref_of = {sid: sid.split("_")[0] for sid in preds.index}
    assert sorted(ref_of.values()).count("chelsea") == 2 and runtime["images_without_group"] == 2
    assert len(records) == len(asked) == 12 and runtime["group_parse_failures"] == 0
    for r, q in zip(records, asked):
        assert len({ref_of[sid] for sid in r["ids"]}) == 1 and len(q.images) == 5
        reference = np.asarray(Image.open(tiny_root / "tiny" / "refs" / f"{ref_of[r['ids'][0]]}.png").convert("RGB"))
        np.testing.assert_array_equal(np.asarray(q.images[0]), reference)
        assert "The first image is the pristine reference" in q.text and "Please first detail" in q.text
    lines = {json.loads(line)["id"]: json.loads(line) for f in sorted(result.run_dir.glob("predictions*.jsonl"))
             for line in f.read_text().splitlines()}
    for sid, ref in ref_of.items():
        if ref == "chelsea":
            assert "share its reference" in lines[sid]["error"] and lines[sid]["score"] is None
    grouped = [sid for sid in preds.index if ref_of[sid] != "chelsea"]
    index = {sid: i for i, sid in enumerate(grouped)}
    counts = _counts_by_hand(len(grouped), [([index[s] for s in r["ids"]], r["ranks"]) for r in records])
    strengths = _study_objective_solution(counts)
    expected = 100 * (strengths - strengths.min()) / (strengths.max() - strengths.min())
    np.testing.assert_allclose(preds.loc[grouped, "score"].to_numpy(), expected, atol=0.05)
    assert metrics["n_failed"] == 2
    with pytest.raises(ValueError, match="standard or cot"):  # in-context rankings are NR only
        MllmPromptFR.Options(stimulus="multiple", system="in-context", examples="x.csv")


def test_double_stimulus_can_aggregate_as_the_study(owl2, tiny_root, tmp_path, monkeypatch):
    """-o pair_aggregate=thurstone: the pairs' 1/0/2 answers (a tie a win for both) -> the study's
    Thurstone MAP on 0..100; the default (Bradley-Terry) keeps its run key."""
    from iqabench.models import backend as backend_module

    assert "pair_aggregate" not in MllmPrompt.Options(stimulus="double").model_dump()
    real = backend_module.load_backend

    def controlled(spec, device="cpu"):
        loaded = real(spec, device)

        def answers(queries, max_new_tokens):
            out = []
            for q in queries:
                a, b = (float(np.asarray(im, dtype=float).mean()) for im in q.images)
                out.append("Result: " + ("1" if a > b else "0" if a < b else "2"))
            return out

        loaded.answers = answers
        return loaded

    monkeypatch.setattr(backend_module, "load_backend", controlled)
    options = {"backend": "owl2", "backend_path": owl2, "stimulus": "double", "pairs_per_image": 3,
               "pair_aggregate": "thurstone"}
    cfg = RunConfig(method="mllm-prompt", dataset="tiny", data_root=tiny_root, results=tmp_path, limit=7, batch_size=4,
                    progress=False, n_boot=0, options=options)
    result = run(cfg, on_log=lambda m: None)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    pairs = [json.loads(line) for line in Path(metrics["runtime"]["comparisons_file"]).read_text().splitlines()]
    assert len(pairs) == 12 and metrics["runtime"]["pair_parse_failures"] == 0
    preds = pd.read_csv(result.run_dir / "predictions.csv").set_index("id")
    ids = list(preds.index)
    index = {sid: i for i, sid in enumerate(ids)}
    # a pair is a ranked group of two: the winner ranked 1, a tie both 0
    groups = [([index[p["first"]], index[p["second"]]], {1.0: [1, 0], 0.0: [0, 1], 0.5: [0, 0]}[p["outcome"]])
              for p in pairs]
    strengths = _study_objective_solution(_counts_by_hand(len(ids), groups))
    expected = 100 * (strengths - strengths.min()) / (strengths.max() - strengths.min())
    np.testing.assert_allclose(preds["score"].to_numpy(), expected, atol=0.05)
