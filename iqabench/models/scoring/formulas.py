"""Quality scores from answer-token logits, computed in float32 with log-sum-exp so that bf16
logits neither overflow nor underflow:
- two word sets (seed 000, Q-Bench): s = sum_P e^l / (sum_P e^l + sum_N e^l);
- rated levels (Q-Align): s = sum_i w_i softmax(l_levels)_i;
- options of a multiple-choice question (Q-Bench): softmax(l_options), the same restricted softmax.
torch is imported only when a score is computed.
"""
from __future__ import annotations

from collections.abc import Sequence

from iqabench.errors import IqaError

# Answer words whose last-position logits every softmax run stores per image (`word_logits` in
# predictions.jsonl), so a run can be re-scored with other words or levels without the model.
WORD_BANK = ("good", "fine", "poor", "bad", "excellent", "fair", "high", "low")


def word_set_score(logits, positive_ids: Sequence[int], negative_ids: Sequence[int]):
    """(sum_P e^l) / (sum_P e^l + sum_N e^l) for each row of `logits` [B, V]; differentiable."""
    import torch

    logits = logits.float()
    pos = torch.logsumexp(logits[:, list(positive_ids)], dim=-1)
    both = torch.logsumexp(logits[:, list(positive_ids) + list(negative_ids)], dim=-1)
    return torch.exp(pos - both)


def restricted_softmax(logits, token_ids: Sequence[int]):
    """[B, len(token_ids)]: the next-token distribution restricted to `token_ids` (levels, options)."""
    import torch

    return torch.softmax(logits.float()[:, list(token_ids)], dim=-1)


def level_score(logits, level_ids: Sequence[int], weights: Sequence[float]):
    """Expected level weight under the softmax restricted to the level tokens."""
    import torch

    probs = restricted_softmax(logits, level_ids)
    return probs @ torch.tensor(list(weights), dtype=torch.float32, device=probs.device)


def _stored_row(word_logits: dict[str, float], words: Sequence[str]):
    import torch

    missing = [w for w in words if w not in word_logits]
    if missing:
        raise IqaError(f"no stored logit for {', '.join(missing)}; stored words: {', '.join(word_logits)}")
    return torch.tensor([[word_logits[w] for w in words]], dtype=torch.float32)


def rescore_words(word_logits: dict[str, float], positive: Sequence[str], negative: Sequence[str]) -> float:
    """The softmax score of `positive` vs `negative` from one image's stored answer-word logits."""
    row = _stored_row(word_logits, (*positive, *negative))
    n = len(positive)
    return float(word_set_score(row, range(n), range(n, n + len(negative)))[0])


def rescore_levels(word_logits: dict[str, float], levels: Sequence[str], weights: Sequence[float]) -> float:
    """The level score (expected weight) from one image's stored answer-word logits."""
    if len(levels) != len(weights):
        raise IqaError(f"{len(levels)} level(s) but {len(weights)} weight(s)")
    row = _stored_row(word_logits, tuple(levels))
    return float(level_score(row, range(len(levels)), weights)[0])
