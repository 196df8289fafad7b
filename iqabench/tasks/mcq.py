"""Multiple-choice perception questions (Q-Bench's LLVisionQA release format) and their accuracy.

A question file is a JSON list of objects: `img_path` (or `image`), `question`, `candidates` (the
options), `correct_ans` (one option, as text, or a one-element list; "N/A" where the answer is
withheld, as in the test half), and optionally `type` and `concern` (the release's groups, numbers
or names). A file that does not hold to this is one error line naming the file and the entry.

An answer is an option index or None (a generated answer that names no single option: a recorded
failure, counted wrong, never guessed). Accuracy is reported overall and per group with percentile
bootstrap intervals; two methods on the same questions are compared by a paired bootstrap of the
difference and McNemar's exact test on the questions where exactly one of them is right.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from iqabench.errors import IqaError

HIDDEN = ("N/A", "")  # an answer the release withholds
LETTERS = "ABCDEFGHIJ"


@dataclasses.dataclass(frozen=True)
class Question:
    id: str  # the entry's position in the file, as text (entries have no id of their own)
    image: str
    question: str
    candidates: tuple[str, ...]
    correct: int | None  # index into candidates; None when withheld
    type: str | None = None
    concern: str | None = None


def read_questions(path: Path) -> list[Question]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IqaError(f"{path}: no such question file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IqaError(f"{path}: not a JSON question file ({exc})") from None
    if not isinstance(data, list) or not data:
        raise IqaError(f"{path}: expected a non-empty JSON list of questions")
    return [_question(path, k, entry) for k, entry in enumerate(data)]


def _question(path: Path, k: int, entry) -> Question:
    def bad(problem: str) -> IqaError:
        return IqaError(f"{path}: entry {k}: {problem}")

    if not isinstance(entry, dict):
        raise bad("not a JSON object")
    image = entry.get("img_path", entry.get("image"))
    if not isinstance(image, str) or not image:
        raise bad("no img_path")
    question = entry.get("question")
    if not isinstance(question, str) or not question.strip():
        raise bad("no question")
    candidates = entry.get("candidates")
    if not isinstance(candidates, list) or len(candidates) < 2 or not all(isinstance(c, str) and c for c in candidates):
        raise bad("candidates must be a list of at least two option texts")
    if len(candidates) > len(LETTERS):
        raise bad(f"{len(candidates)} candidates: at most {len(LETTERS)} (options are lettered A-{LETTERS[-1]})")
    if len(set(candidates)) != len(candidates):
        raise bad("two candidates are the same text")
    answer = entry.get("correct_ans")
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    if not isinstance(answer, str):
        raise bad(f"correct_ans must be one option text, got {answer!r}")
    if answer in HIDDEN:
        correct = None
    elif answer in candidates:
        correct = candidates.index(answer)
    else:
        raise bad(f"correct_ans {answer!r} is not one of the candidates {candidates!r}")
    groups = {g: None if entry.get(g) is None else str(entry[g]) for g in ("type", "concern")}
    return Question(str(k), image, question, tuple(candidates), correct, **groups)


def prompt(q: Question) -> str:
    """The question with lettered options, as the Q-Bench demo asks it."""
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(q.candidates))
    return f"{q.question}\nChoose between one of the options as follows:\n{options}\n"


def parse_answer(text: str, candidates: tuple[str, ...]) -> int | None:
    """The option a generated answer names: a leading letter ("B", "B.", "(B)"), else the one option
    whose text it contains (the longest when one option's text holds another's); None when it names
    none or several."""
    cleaned = text.strip()
    letter = re.match(r"^\(?([A-J])(?:[.):\s]|$)", cleaned)
    if letter and LETTERS.index(letter[1]) < len(candidates):
        return LETTERS.index(letter[1])
    low = cleaned.lower()
    found = [i for i, c in enumerate(candidates) if re.search(r"(?<!\w)" + re.escape(c.lower()) + r"(?!\w)", low)]
    found = [i for i in found if not any(j != i and candidates[i].lower() in candidates[j].lower() for j in found)]
    return found[0] if len(found) == 1 else None


# -- accuracy ---------------------------------------------------------------------------------------------
def right(questions: list[Question], answers: dict[str, int | None]) -> np.ndarray:
    """1.0 per answered question with a known answer that is right, 0.0 when wrong or unparsed."""
    return np.array([float(answers.get(q.id) == q.correct) for q in questions if q.correct is not None])


def bootstrap_interval(hits: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile 95 % interval of the mean of `hits` over resampled questions."""
    if len(hits) == 0 or n_boot <= 0:
        return None
    rng = np.random.default_rng(seed)
    means = np.array([hits[rng.integers(0, len(hits), len(hits))].mean() for _ in range(n_boot)])
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def accuracy(questions: list[Question], answers: dict[str, int | None], n_boot: int = 1000, seed: int = 0) -> dict:
    """Overall and per type / per concern: n, accuracy, 95 % interval; unparsed answers counted."""
    known = [q for q in questions if q.correct is not None]

    def summary(qs: list[Question]) -> dict:
        hits = right(qs, answers)
        return {"n": len(hits), "accuracy": float(hits.mean()) if len(hits) else None,
                "ci95": bootstrap_interval(hits, n_boot, seed),
                "unparsed": sum(1 for q in qs if answers.get(q.id) is None)}

    out = {"overall": summary(known), "withheld": len(questions) - len(known)}
    for group in ("type", "concern"):
        names = sorted({getattr(q, group) for q in known if getattr(q, group) is not None})
        out[f"by_{group}"] = {name: summary([q for q in known if getattr(q, group) == name]) for name in names}
    return out


def paired_test(questions: list[Question], a: dict[str, int | None], b: dict[str, int | None],
                n_boot: int = 1000, seed: int = 0) -> dict:
    """Accuracy of a minus b on the same questions: bootstrap interval and two-sided p of the
    difference, and McNemar's exact p on the discordant questions."""
    from scipy.stats import binomtest

    ha, hb = right(questions, a), right(questions, b)
    diff = ha - hb
    rng = np.random.default_rng(seed)
    boots = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(n_boot)]) if n_boot else None
    only_a, only_b = int(np.sum((ha == 1) & (hb == 0))), int(np.sum((ha == 0) & (hb == 1)))
    out = {"n": len(diff), "diff": float(diff.mean()) if len(diff) else None, "only_a": only_a, "only_b": only_b,
           "p_mcnemar": float(binomtest(only_a, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0}
    if boots is not None and len(diff):
        out["ci95"] = (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5)))
        # two-sided: how often the resampled difference falls on the other side of zero
        out["p_bootstrap"] = float(min(1.0, 2 * min(np.mean(boots <= 0), np.mean(boots >= 0))))
    return out
