"""Multiple-choice questions in the LLVisionQA release format: reading, answer parsing, accuracy,
intervals and the paired test, checked against hand counts and plain loops written here."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from iqabench.errors import IqaError
from iqabench.tasks import mcq

ENTRIES = [
    {"img_path": "a.jpg", "question": "Is the image blurry?", "candidates": ["Yes", "No"], "correct_ans": "Yes",
     "type": 0, "concern": 0},
    {"img_path": "b.jpg", "question": "What distortion?", "candidates": ["Noise", "Blur", "Overexposure"],
     "correct_ans": "Blur", "type": 1, "concern": 0},
    {"img_path": "c.jpg", "question": "How is the lighting?", "candidates": ["Too dark", "Just fine", "Too bright"],
     "correct_ans": ["Too dark"], "type": 2, "concern": 1},
    {"img_path": "d.jpg", "question": "Is it sharp?", "candidates": ["Yes", "No"], "correct_ans": "No",
     "type": 0, "concern": 1},
    {"img_path": "e.jpg", "question": "Hidden?", "candidates": ["Yes", "No"], "correct_ans": "N/A",
     "type": 0, "concern": 1},
]


def write(tmp_path, entries, name="dev.json"):
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return path


def test_reading_and_hand_computed_accuracy(tmp_path):
    qs = mcq.read_questions(write(tmp_path, ENTRIES))
    assert [q.correct for q in qs] == [0, 1, 0, 1, None]
    assert "A. Noise\nB. Blur\nC. Overexposure" in mcq.prompt(qs[1])
    # generated answers, parsed: right, right (letter), unparsed (names two options), wrong
    generated = {"0": "Yes, it is.", "1": "B.", "2": "Too dark or too bright", "3": "Yes"}
    answers = {k: mcq.parse_answer(v, qs[int(k)].candidates) for k, v in generated.items()}
    assert answers == {"0": 0, "1": 1, "2": None, "3": 0}
    acc = mcq.accuracy(qs, answers, n_boot=0)
    assert acc["overall"] == {"n": 4, "accuracy": 0.5, "ci95": None, "unparsed": 1}
    assert acc["withheld"] == 1
    assert {k: v["accuracy"] for k, v in acc["by_type"].items()} == {"0": 0.5, "1": 1.0, "2": 0.0}
    assert {k: v["accuracy"] for k, v in acc["by_concern"].items()} == {"0": 1.0, "1": 0.0}


@pytest.mark.parametrize("text,expected", [("(C) Overexposure", 2), ("c", None), ("The answer is noise.", 0),
                                           ("Nothing", None), ("Blur and noise", None)])
def test_parse_answer(text, expected):
    assert mcq.parse_answer(text, ("Noise", "Blur", "Overexposure")) == expected


def test_intervals_and_paired_test_equal_plain_loops():
    rng = np.random.default_rng(3)
    n = 60
    qs = [mcq.Question(str(i), f"{i}.jpg", "q", ("x", "y", "z"), int(rng.integers(0, 3))) for i in range(n)]
    a = {q.id: (q.correct if rng.random() < 0.7 else (q.correct + 1) % 3) for q in qs}
    b = {q.id: (q.correct if rng.random() < 0.5 else None) for q in qs}
    ha = [1.0 if a[q.id] == q.correct else 0.0 for q in qs]
    hb = [1.0 if b[q.id] == q.correct else 0.0 for q in qs]
    # plain loop: the same resampling, drawn index by index
    draw = np.random.default_rng(9)
    means = []
    for _ in range(200):
        idx = draw.integers(0, n, n)
        means.append(sum(ha[i] for i in idx) / n)
    means.sort()
    lo, hi = np.percentile(means, 2.5), np.percentile(means, 97.5)
    assert mcq.accuracy(qs, a, n_boot=200, seed=9)["overall"]["ci95"] == pytest.approx((lo, hi), abs=1e-12)
    only_a = sum(1 for x, y in zip(ha, hb) if x and not y)
    only_b = sum(1 for x, y in zip(ha, hb) if y and not x)
    m = only_a + only_b
    exact = min(1.0, 2 * sum(math.comb(m, k) for k in range(min(only_a, only_b) + 1)) / 2 ** m)
    test = mcq.paired_test(qs, a, b, n_boot=200, seed=9)
    assert (test["only_a"], test["only_b"]) == (only_a, only_b)
    assert test["p_mcnemar"] == pytest.approx(exact, rel=1e-9)
    assert test["diff"] == pytest.approx((sum(ha) - sum(hb)) / n)
    draw = np.random.default_rng(9)
    diffs = []
    for _ in range(200):
        idx = draw.integers(0, n, n)
        diffs.append(sum(ha[i] - hb[i] for i in idx) / n)
    assert test["ci95"] == pytest.approx((np.percentile(diffs, 2.5), np.percentile(diffs, 97.5)), abs=1e-12)


@pytest.mark.parametrize("change,problem", [
    ({"candidates": ["Yes"]}, "entry 1: candidates must be a list of at least two"),
    ({"correct_ans": "Maybe"}, "entry 1: correct_ans 'Maybe' is not one of the candidates"),
    ({"img_path": None}, "entry 1: no img_path"),
])
def test_a_malformed_question_file_is_one_line_naming_file_and_entry(tmp_path, change, problem):
    entries = [ENTRIES[0], {**ENTRIES[3], **change}]
    path = write(tmp_path, entries)
    with pytest.raises(IqaError) as info:
        mcq.read_questions(path)
    assert str(info.value).startswith(f"{path}: ") and problem in str(info.value) and "\n" not in str(info.value)
