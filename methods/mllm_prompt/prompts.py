"""Seed 001's prompting systems as data, and the Queries they make.

Texts are the paper's (Sec. "Prompting MLLMs for IQA"); its "[...]" after "in terms of" is the
`attribute` option. Our additions, marked below, only say how to end the answer so it can be read
(the paper's "[...]" after the instruction leaves that open), and generalise its one in-context
example to k examples. Images are placed with `<|image|>` in the order the text names them.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from iqabench.models.backend import IMAGE_PLACEHOLDER as IMG
from iqabench.models.backend import Query

LEVELS = ("excellent", "good", "fair", "poor", "bad")  # best first
LEVEL_WEIGHTS = (100.0, 75.0, 50.0, 25.0, 0.0)

# How the score is asked for: the paper's 0..100 sentence, or five level words (our option).
SCALE = {
    "number": "The score must range from 0 to 100, with a higher score denoting better image quality.",
    "level": "The score must be one word out of excellent, good, fair, poor and bad, from the best quality to the worst.",
}
COMPARE = ("If you judge that the {a} image has better quality than the {b} image, output 1, if you judge that the "
           "{b} image has better quality than the {a} image, output 0, if you judge that two images have the same "
           "quality, output 2.")
# our additions: how a standard answer ends, how a chain-of-thought answer ends
ENDING = {"standard": "Answer with the score only.", "cot": "End your answer with 'Score: ' and the score."}
ENDING_COMPARE = {"standard": "Answer with the number only.", "cot": "End your answer with 'Result: ' and the number."}

SINGLE = {
    "standard": "Please assign a perceptual quality score in terms of {attribute}. {scale}",
    "cot": ("Please first detail its perceptual quality in terms of {attribute}. Then, based on the perceptual "
            "analysis of the given image, assign a quality score to the given image. {scale}"),
}
FR_IMAGES = f"The first image is the pristine reference: {IMG} The second image is a distorted version of it: {IMG}\n"
FR = {
    "standard": ("Taking the first image as the reference, please assign a perceptual quality score to the second "
                 "image in terms of {attribute}. {scale}"),
    "cot": ("Please first detail the perceptual quality of the second image compared with the first (reference) image "
            "in terms of {attribute}. Then, based on the perceptual analysis, assign a quality score to the second "
            "image. {scale}"),
}
DOUBLE_IMAGES = f"The first image: {IMG} The second image: {IMG}\n"
DOUBLE = {
    "standard": "Please assign a perceptual quality comparison result between the two images in terms of {attribute}. ",
    "cot": ("Please first detail their perceptual quality comparison in terms of {attribute}. Then, based on the "
            "quality comparison analysis between them, assign a perceptual quality comparison result between the "
            "two images. "),
}
# multiple stimulus: the paper's ranking prompts for n images; "four" and "3" follow n
RANK = ("The image with the lowest perceptual quality is ranked 0, and the image with the highest perceptual "
        "quality is ranked {top}. If you judge that some distorted images have the same perceptual quality, their "
        "ranking can be the same.")
MULTIPLE = {
    "standard": "Please assign a perceptual quality ranking result among {count} images in terms of {attribute}. ",
    "cot": ("Please first detail their perceptual quality comparison in terms of {attribute}. Then, based on the "
            "quality comparison analysis among them, please assign a perceptual quality ranking result among {count} "
            "images. "),
}
# our addition (the study's code asks for the same format): how a ranking answer ends
MULTIPLE_FR = {
    "standard": ("Taking the first image as the reference, please assign a perceptual quality ranking result among "
                 "the {count} distorted images in terms of {attribute}. "),
    "cot": ("Please first detail the perceptual quality of each distorted image compared with the reference image "
            "in terms of {attribute}. Then, based on the perceptual analysis, please assign a perceptual quality "
            "ranking result among the {count} distorted images. "),
}
ENDING_RANK = {"standard": "Answer in the format: Score: [{slots}].",
               "cot": "End your answer with the ranking in the format: Score: [{slots}]."}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen")
ORDINAL = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


def ordinal(n: int) -> str:
    """1 -> 'first' ... past ten '11th' (prompts with many examples)."""
    return ORDINAL[n - 1] if n <= len(ORDINAL) else f"{n}th"


def number_word(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def level_word(score: float) -> str:
    """An example's 0..100 score as the level word of its fifth of the range."""
    return LEVELS[min(4, int((100.0 - score) // 20.0))]


def _score_text(score: float, scale: str) -> str:
    return level_word(score) if scale == "level" else f"{score:g}"


def single_query(image: Any, attribute: str, scale: str, system: str, reference: Any = None,
                 examples: Sequence[tuple[Any, float, Any]] = ()) -> Query:
    """One image (after its reference when given), optionally after k scored examples
    (image, score 0..100, reference-or-None)."""
    fr = reference is not None
    if system != "in-context":
        text = (FR if fr else SINGLE)[system].format(attribute=attribute, scale=SCALE[scale])
        images = (reference, image) if fr else (image,)
        prefix = FR_IMAGES if fr else f"{IMG}\n"
        return Query(images, f"{prefix}{text} {ENDING[system]}")
    # in-context: the paper's "For the shown two images, the human perceptual quality score of the first
    # image is 50. Now, based on the above example, ..." with k examples (FR: each after its reference)
    per = 2 if fr else 1
    images: list[Any] = []
    lines = []
    for n, (ex_image, _, ex_ref) in enumerate(list(examples) + [(image, None, reference)], 1):
        if fr:
            images += [ex_ref, ex_image]
            lines.append(f"Example {n}, reference: {IMG} distorted: {IMG}" if n <= len(examples)
                         else f"Query, reference: {IMG} distorted: {IMG}")
        else:
            images.append(ex_image)
            lines.append(f"The {ordinal(n)} image: {IMG}")
    k = len(examples)
    known = ", ".join((f"the distorted image of example {n}" if fr else f"the {ordinal(n)} image")
                      + f" is {_score_text(s, scale)}" for n, (_, s, _) in enumerate(examples, 1))
    target = "the distorted image of the query" if fr else f"the {ordinal(k + 1)} image"
    text = (f"For the shown {len(images)} images, the human perceptual quality score of {known}. Now, based on the "
            f"above example{'s' if k > 1 else ''}, please assign a perceptual quality score to {target} in terms of "
            f"{attribute}. {SCALE[scale]} {ENDING['standard']}")
    assert len(images) == per * (k + 1)
    return Query(tuple(images), "\n".join(lines) + "\n" + text)


def double_query(first: Any, second: Any, attribute: str, system: str,
                 examples: Sequence[tuple[Any, Any, int]] = ()) -> Query:
    """Which of two images is better; in-context: after k example pairs (image, image, result 1/0/2)."""
    if system != "in-context":
        text = DOUBLE[system].format(attribute=attribute) + COMPARE.format(a="first", b="second")
        return Query((first, second), f"{DOUBLE_IMAGES}{text} {ENDING_COMPARE[system]}")
    images: list[Any] = []
    known = []
    for n, (a, b, result) in enumerate(examples):
        images += [a, b]
        pa, pb = ordinal(2 * n + 1), ordinal(2 * n + 2)
        verdict = {1: f"the {pa} image is of better quality than the {pb} image",
                   0: f"the {pb} image is of better quality than the {pa} image",
                   2: f"the {pa} and the {pb} images are of the same quality"}[result]
        known.append(f"for the {pa} and the {pb} images, the human perceptual quality comparison result is that {verdict}")
    images += [first, second]
    k = len(examples)
    qa, qb = ordinal(2 * k + 1), ordinal(2 * k + 2)
    listing = "\n".join(f"The {ordinal(n)} image: {IMG}" for n in range(1, len(images) + 1))
    text = (f"For the shown {len(images)} images, {'; '.join(known)}. Now, based on the above example"
            f"{'s' if k > 1 else ''}, please assign a perceptual quality comparison result between the {qa} and the "
            f"{qb} images in terms of {attribute}. {COMPARE.format(a=qa, b=qb)} {ENDING_COMPARE['standard']}")
    return Query(tuple(images), f"{listing}\n{text}")


def _ranking(ranks: Sequence[int], start: int = 1) -> str:
    return ", ".join(f"{ordinal(start + i)}: {r}" for i, r in enumerate(ranks))


def multiple_query(images: Sequence[Any], attribute: str, system: str,
                   examples: Sequence[tuple[Sequence[Any], Sequence[int]]] = (), reference: Any = None) -> Query:
    """A ranking of n images; in-context: after k example groups of n (images, their ranks 0..n-1);
    with a reference (full reference, ours in the paper's voice): the reference, then n distorted images."""
    n = len(images)
    rank = RANK.format(top=n - 1)
    slots = ", ".join(f"{ordinal(i)}: " for i in range(1, n + 1))
    if reference is not None:
        listing = (f"The first image is the pristine reference: {IMG} "
                   + " ".join(f"Distorted image {i}: {IMG}" for i in range(1, n + 1)))
        text = MULTIPLE_FR[system].format(count=number_word(n), attribute=attribute) + rank
        ending = ENDING_RANK[system].format(slots=slots)[:-1] + ", the distorted images in order."
        return Query((reference, *images), f"{listing}\n{text} {ending}")
    if system != "in-context":
        listing = " ".join(f"The {ordinal(i)} image: {IMG}" for i in range(1, n + 1))
        text = MULTIPLE[system].format(count=number_word(n), attribute=attribute) + rank
        return Query(tuple(images), f"{listing}\n{text} {ENDING_RANK[system].format(slots=slots)}")
    # in-context: the paper's "For the shown eight images, for the first four images (from the first to the
    # fourth images), the human perceptual quality ranking result is [first: 0, ...]. Now, based on ..."
    shown: list[Any] = []
    known = []
    for g, (group, ranks) in enumerate(examples):
        if len(group) != n or len(ranks) != n:
            raise ValueError(f"example group {g + 1} has {len(group)} images for a ranking of {n}")
        lo, hi = g * n + 1, g * n + n
        shown += list(group)
        known.append(f"for the {ordinal(g + 1)} {number_word(n)} images (from the {ordinal(lo)} to the "
                     f"{ordinal(hi)} images), the human perceptual quality ranking result is [{_ranking(ranks)}]")
    k = len(examples)
    shown += list(images)
    lo, hi = k * n + 1, k * n + n
    listing = "\n".join(f"The {ordinal(i)} image: {IMG}" for i in range(1, len(shown) + 1))
    text = (f"For the shown {number_word(len(shown))} images, {'; '.join(known)}. Now, based on the above example"
            f"{'s' if k > 1 else ''}, please assign a perceptual quality ranking result among the "
            f"{ordinal(k + 1)} {number_word(n)} images (from the {ordinal(lo)} to the {ordinal(hi)} images) in terms "
            f"of {attribute}. {rank} {ENDING_RANK['standard'].format(slots=slots)}")
    return Query(tuple(shown), f"{listing}\n{text}")
