"""Multiple-choice answers by likelihood: the next-token distribution after a question, restricted to
its option letters ("A", "B", ...), as the Q-Bench authors score open models; the chosen option is
the most likely letter. Any backend's `logits(queries)` serves (iqabench.models.backend), and the
restriction is the one of the level scores (formulas.restricted_softmax). torch is imported only
when something is scored."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from iqabench.errors import IqaError
from iqabench.models.scoring.formulas import restricted_softmax


class OptionLetters:
    """The first-token ids of the option letters on one backend (distinct, or one error line)."""

    def __init__(self, backend: Any, letters: str):
        self.letters = letters
        self.ids = [backend.token_id(letter) for letter in letters]
        if len(set(self.ids)) != len(self.ids):
            raise IqaError(f"the backend's tokenizer gives two option letters the same first token "
                           f"({dict(zip(letters, self.ids))}); their likelihoods cannot be told apart")

    def probabilities(self, logits, n_options: Sequence[int]) -> list[list[float] | None]:
        """Per row of `logits` [B, vocab], the softmax over its first `n_options[i]` letters; None for a
        row where a letter has no logit (a served model returns only its top tokens: NaN elsewhere)."""
        import torch

        out: list[list[float] | None] = []
        for row, n in zip(logits.detach().float(), n_options):
            ids = self.ids[:n]
            if not bool(torch.isfinite(row[ids]).all()):
                out.append(None)
                continue
            out.append([float(p) for p in restricted_softmax(row[None], ids)[0]])
        return out


def option_likelihoods(backend: Any, letters: OptionLetters, queries: Sequence[Any],
                       n_options: Sequence[int]) -> list[list[float] | None]:
    """Each query's option probabilities (see OptionLetters.probabilities), one batched forward."""
    import torch

    with torch.no_grad():
        return letters.probabilities(backend.logits(list(queries)), n_options)
