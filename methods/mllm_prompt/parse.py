"""Scores and comparison results read from an MLLM's generated text.

`parse_score(text)` -> a score on 0..100, or None when the text holds no usable score:
- a number 0..100 ("85", "72.5", "Score: 85."), a fraction "85/100", "7/10", "4.5 out of 5"
  (scaled to 0..100; the numerator must lie in [0, denominator]);
- a level word (excellent 100, good 75, fair 50, poor 25, bad 0: Q-Align's five levels).
A number written after a score keyword ("score: 7", "rating is 80", "scored 60") wins, the last one
if several (a chain-of-thought answer ends with its score); without one, the text must hold exactly
one distinct number (or one distinct level word): "85. It has 2 flaws" is ambiguous and refused.
`prefer="level"` reads level words before numbers (for prompts asking for a word).

`parse_comparison(text)` -> 1 (first image better), 0 (second better), 2 (same), or None: the
paper's double-stimulus answer, by the same keyword-then-unique-number rule.

`parse_ranking(text, n)` -> n ranks (0 = lowest quality ... n-1 = highest; ties allowed), in the order
the images were shown, or None: the multiple-stimulus answer ("Score: [first: 0, second: 3, ...]").
The numbers after the last score keyword are read (the whole text when it has none); there must be
exactly n, each an integer 0..n-1.
Nothing is ever guessed: None is a parse failure, which the method counts and records.
"""
from __future__ import annotations

import re

LEVEL_VALUES: dict[str, float] = {"excellent": 100.0, "good": 75.0, "fair": 50.0, "poor": 25.0, "bad": 0.0}

# a number, optionally "/ M" or "out of M" after it; not part of a longer number or a word ("x2", "2nd")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?(?![\d]|\.\d|[a-zA-Z])",
                     re.IGNORECASE)
_KEYWORD = re.compile(r"(?:score|rating|rated|result|output|answer)\w*\s*(?:is|of|=|:|-)?\s*(?:\*\*)?\s*$",
                      re.IGNORECASE)
_LEVEL = re.compile(r"\b(" + "|".join(LEVEL_VALUES) + r")\b", re.IGNORECASE)


def _numbers(text: str) -> list[tuple[float, bool]]:
    """(value on 0..100 or -1 when out of range, after-a-keyword) for each number in order."""
    out = []
    for m in _NUMBER.finditer(text):
        value = float(m.group(1))
        if m.group(2) is not None:
            den = float(m.group(2))
            value = value / den * 100.0 if den > 0 and value <= den else -1.0
        elif not 0.0 <= value <= 100.0:
            value = -1.0
        keyed = bool(_KEYWORD.search(text[max(0, m.start() - 30):m.start()]))
        out.append((value, keyed))
    return out


def _pick(values: list[tuple[float, bool]]) -> float | None:
    keyed = [v for v, k in values if k]
    if keyed:
        chosen = keyed[-1]
    else:
        distinct = {v for v, _ in values}
        if len(distinct) != 1:
            return None
        chosen = distinct.pop()
    return None if chosen < 0 else chosen


def _level(text: str) -> float | None:
    words = [m.group(1).lower() for m in _LEVEL.finditer(text)]
    if not words:
        return None
    keyed = [m.group(1).lower() for m in _LEVEL.finditer(text)
             if re.search(r"(?:quality|score|rating|level)\w*\s*(?:is|:|=)?\s*(?:\*\*)?\s*$",
                          text[max(0, m.start() - 30):m.start()], re.IGNORECASE)]
    if keyed:
        return LEVEL_VALUES[keyed[-1]]
    return LEVEL_VALUES[words[0]] if len(set(words)) == 1 else None


def parse_score(text: str | None, prefer: str = "number") -> float | None:
    """A 0..100 score from generated text, or None (see the module doc)."""
    if not text or not text.strip():
        return None
    if prefer == "level":
        level = _level(text)
        if level is not None:
            return level
    numbers = _numbers(text)
    if numbers:
        return _pick(numbers)
    return _level(text) if prefer != "level" else None


def parse_comparison(text: str | None) -> int | None:
    """1 (first better), 0 (second better), 2 (same quality), or None."""
    if not text or not text.strip():
        return None
    found = [(m, bool(_KEYWORD.search(text[max(0, m.start() - 30):m.start()]))) for m in _NUMBER.finditer(text)]
    found = [(m, k) for m, k in found if m.group(2) is None]
    keyed = [m for m, k in found if k]
    if keyed:
        value = keyed[-1].group(1)
    else:
        distinct = {m.group(1) for m, _ in found}
        if len(distinct) != 1:
            return None
        value = distinct.pop()
    return int(value) if value in ("0", "1", "2") else None


_RANK_KEYWORD = re.compile(r"(?:score|rank|ranking|result|output|answer)s?\**\s*(?:is|=|:)", re.IGNORECASE)


def parse_ranking(text: str | None, n: int) -> list[int] | None:
    """n ranks in image order, or None (see the module doc)."""
    if not text or not text.strip():
        return None
    keys = list(_RANK_KEYWORD.finditer(text))
    tail = text[keys[-1].end():] if keys else text
    found = [m for m in _NUMBER.finditer(tail)]
    if len(found) != n or any(m.group(2) is not None or "." in m.group(1) for m in found):
        return None
    ranks = [int(m.group(1)) for m in found]
    return ranks if all(0 <= r < n for r in ranks) else None
