"""Dog-IQA's standard-guided judge (seed 004, Sec. 3.1): an MLLM answers one integer in [1..K]
against a word standard, e.g. "7: Perfect, 6: Excellent, 5: Good, 4: Fair, 3: Bad, 2: Poor,
1: Very Bad" for K = 7 (the paper's words). A non-numeric answer scores 1, as in the paper;
every such fallback is counted.

Also a logit variant, NOT in the paper: the expected level under the softmax of the digit
tokens "1".."K" at the answer position (`mode="logits"`).

Views (whole images and crops) from many images go through the judge in batches of
`batch_size`, one backend call per batch (`MLLMBackend.logits` / `answers`: views of different
sizes are padded on the left, so the batch size does not change a view's score).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Literal

from iqabench.errors import IqaError

# Level words, lowest level first. K = 7 is the paper's; 3, 5 and 9 are our choices (the
# paper's Table 5 tests them without listing its words); 9 keeps the paper's Bad-above-Poor order.
LEVEL_WORDS: dict[int, tuple[str, ...]] = {
    3: ("Bad", "Fair", "Good"),
    5: ("Bad", "Poor", "Fair", "Good", "Excellent"),
    7: ("Very Bad", "Poor", "Bad", "Fair", "Good", "Excellent", "Perfect"),
    9: ("Very Bad", "Poor", "Bad", "Mediocre", "Fair", "Good", "Very Good", "Excellent", "Perfect"),
}

# The "sentence" standard of Table 4 (our wording; the paper quotes only the one for Fair).
LEVEL_SENTENCES: dict[str, str] = {
    "Perfect": "The overall quality of the image is perfect. There is no visible flaw at all.",
    "Excellent": "The overall quality of the image is excellent. Details are sharp and clean, with barely any flaw.",
    "Very Good": "The overall quality of the image is very good. Only minor flaws can be noticed on close inspection.",
    "Good": "The overall quality of the image is good. Small deficiencies exist but do not disturb viewing.",
    "Fair": "The overall quality of the image is fair. There are certain merits but also some deficiencies.",
    "Mediocre": "The overall quality of the image is mediocre. Deficiencies are easy to notice and outweigh the merits.",
    "Bad": "The overall quality of the image is bad. Obvious distortions damage most of the content.",
    "Poor": "The overall quality of the image is poor. Heavy distortions make the content hard to recognise.",
    "Very Bad": "The overall quality of the image is very bad. The content is almost destroyed by distortions.",
}

Standard = Literal["word", "number", "sentence"]
Mode = Literal["generate", "logits"]


def standard_lines(levels: int, standard: Standard) -> str:
    if levels not in LEVEL_WORDS:
        raise IqaError(f"levels={levels}: expected one of {', '.join(map(str, LEVEL_WORDS))}")
    words = LEVEL_WORDS[levels]
    order = range(levels, 0, -1)
    if standard == "word":
        return ", ".join(f"{k}: {words[k - 1]}" for k in order)
    if standard == "sentence":
        return " ".join(f"{k}: {words[k - 1]}! {LEVEL_SENTENCES[words[k - 1]]}" for k in order)
    raise IqaError(f"standard {standard!r}: expected word, number or sentence")


def build_prompt(levels: int, standard: Standard = "word") -> tuple[str, str]:
    """(system, user) texts of the paper's prompt for K = `levels`."""
    if standard == "number":
        system = ("You are a helpful assistant to evaluate image quality. "
                  f"The quality is scored with an integer from 1 to {levels}. "
                  "The higher the image quality is, the higher the score should be.")
    else:
        system = ("You are a helpful assistant to evaluate image quality. You will be given standards for each "
                  f"quality level. The quality standard is listed as follows: {standard_lines(levels, standard)}. "
                  "The higher the image quality is, the higher the score should be.")
    if levels not in LEVEL_WORDS:
        raise IqaError(f"levels={levels}: expected one of {', '.join(map(str, LEVEL_WORDS))}")
    user = f"Please evaluate the quality of the image and score in [{', '.join(str(k) for k in range(1, levels + 1))}]."
    return system, user


_NUMBER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)(?![\d])")


def parse_answer(text: str, levels: int) -> int | None:
    """The judge's level from its answer, or None when the answer is not usable.

    Takes the first number in the answer ("6", "Score: 6/7", "6: Excellent", "[6]", "6.0");
    refuses non-integers ("5.5"), numbers outside [1..K] and answers without a number."""
    match = _NUMBER.search(text or "")
    if match is None:
        return None
    value = float(match.group(1))
    if not value.is_integer() or not 1 <= value <= levels:
        return None
    return int(value)


@dataclasses.dataclass
class Verdict:
    score: float
    answer: str | None  # None in logits mode
    parsed: bool  # False when the paper's fallback (score 1) was applied


@dataclasses.dataclass(frozen=True)
class JudgeSettings:
    levels: int = 7
    standard: Standard = "word"
    mode: Mode = "generate"
    batch_size: int = 8
    max_new_tokens: int = 8
    fallback_score: float = 1.0  # the paper's rule for non-numeric answers


class StandardJudge:
    """Scores PIL views with an MLLMBackend; counts calls and fallbacks."""

    def __init__(self, backend: Any, settings: JudgeSettings):
        if settings.batch_size < 1:
            raise IqaError("judge_batch_size must be >= 1")
        self.backend = backend
        self.settings = settings
        self.system, self.user = build_prompt(settings.levels, settings.standard)
        self.calls = 0
        self.views = 0
        self.failures = 0
        self._digit_ids: list[int] | None = None
        if settings.mode == "logits":
            self._digit_ids = [backend.token_id(str(k)) for k in range(1, settings.levels + 1)]
            if len(set(self._digit_ids)) != settings.levels:
                raise IqaError(f"judge mode logits: the tokenizer maps the digits 1..{settings.levels} to non-distinct tokens {self._digit_ids}")

    def prompt_text(self) -> str:
        """System and user text as one prompt, for backends without a system turn."""
        return f"{self.system}\n{self.user}"

    def score(self, views: Sequence[Any]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        size = self.settings.batch_size
        for start in range(0, len(views), size):
            chunk = list(views[start:start + size])
            verdicts.extend(self._score_chunk(chunk))
        return verdicts

    def queries(self, views: Sequence[Any]) -> list[Any]:
        """One query per view: the system standard and the user's request. Backends with a
        system turn get it there; the others read `prompt_text()` (system, newline, user)."""
        from iqabench.models.backend import Query

        return [Query((view,), self.user, system=self.system) for view in views]

    def _score_chunk(self, chunk: list[Any]) -> list[Verdict]:
        import torch

        self.calls += 1
        self.views += len(chunk)
        if self.settings.mode == "logits":
            with torch.no_grad():
                logits = self.backend.logits(self.queries(chunk))
            probs = torch.softmax(logits[:, self._digit_ids].float(), dim=-1)
            levels = torch.arange(1, self.settings.levels + 1, dtype=probs.dtype, device=probs.device)
            expected = (probs * levels).sum(dim=-1)
            return [Verdict(float(v), None, True) for v in expected]
        if hasattr(self.backend, "generate_images"):
            # Backends that preprocess images themselves (the mPLUG-Owl3 worker) get the views.
            answers = self.backend.generate_images(chunk, self.user, max_new_tokens=self.settings.max_new_tokens, system=self.system)
        else:
            with torch.no_grad():
                answers = self.backend.answers(self.queries(chunk), max_new_tokens=self.settings.max_new_tokens)
        if len(answers) != len(chunk):
            raise IqaError(f"judge returned {len(answers)} answers for {len(chunk)} images")
        out = []
        for answer in answers:
            level = parse_answer(answer, self.settings.levels)
            if level is None:
                self.failures += 1
                out.append(Verdict(self.settings.fallback_score, answer, False))
            else:
                out.append(Verdict(float(level), answer, True))
        return out
