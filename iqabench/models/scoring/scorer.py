"""The word and level scorer: backend + resolved answer tokens + the question; images -> pixels
in [0, 1] -> scores in (0, 1). The one scoring path of the softmax presets, the visual-prompt
methods and q-adapt. torch is imported only when a score is computed."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from iqabench.api import MethodInfo
from iqabench.errors import IqaError
from iqabench.models.scoring.formulas import WORD_BANK, level_score, word_set_score
from iqabench.models.scoring.normalize import pixel_normalizer
from iqabench.models.scoring.options import SoftmaxOptions


class AnswerWordMissing(ValueError):
    """Not an IqaError: the engine records it against the one image it happened to."""


class SoftmaxScorer:
    """`pixels` (the backend's geometry), an optional pixel edit by the caller (a prompt), then
    `score_pixels` (normalisation, logits, softmax); or `score_images` on any backend."""

    def __init__(self, backend: Any, options: SoftmaxOptions):
        self.backend = backend
        self.options = options
        self.normalize = pixel_normalizer(backend, options.normalization)
        if options.scheme() == "levels":
            self.words = {"levels": list(options.levels)}
        else:
            self.words = {"positive": list(options.positive), "negative": list(options.negative)}
        if not getattr(backend, "pixel_space", True) and options.normalization != "model":
            raise IqaError(f"backend {options.backend}: tiles images in its processor, so normalization="
                           f"{options.normalization} (a pixel-space choice) cannot apply; use -o normalization=model")
        self.token_ids = {k: [backend.token_id(w) for w in ws] for k, ws in self.words.items()}
        flat = [t for ids in self.token_ids.values() for t in ids]
        if len(set(flat)) != len(flat):
            pairs = {k: dict(zip(self.words[k], v)) for k, v in self.token_ids.items()}
            raise IqaError(f"{options.backend_path}: two answer words share a first token {pairs}")

    def pixels(self, images: Sequence[Any]):
        """PIL images -> [B, 3, S, S] in [0, 1] with the resize policy of the options."""
        return self.backend.to_pixels(images)

    def logits(self, normalized_pixels):
        return self.backend.next_token_logits(normalized_pixels, self.options.prompt)

    def from_logits(self, logits):
        self._check_present(logits)
        if "levels" in self.token_ids:
            return level_score(logits, self.token_ids["levels"], self.options.weights)
        return word_set_score(logits, self.token_ids["positive"], self.token_ids["negative"])

    def _check_present(self, logits) -> None:
        """A served model returns only its top log-probabilities (NaN elsewhere): an answer word it
        did not return fails that image with its name, instead of counting as probability 0."""
        import torch

        ids = [t for v in self.token_ids.values() for t in v]
        present = torch.isfinite(logits.detach()[:, ids])
        if bool(present.all()):
            return
        row = int((~present.all(dim=1)).nonzero()[0])
        words = [w for ws in self.words.values() for w in ws]
        missing = [w for w, ok in zip(words, present[row].tolist()) if not ok]
        raise AnswerWordMissing(f"no log-probability for answer word(s) {', '.join(missing)} (not among what the "
                                f"model returned; a served model returns its top served_logprobs tokens only)")

    def score_pixels(self, pixels):
        """[B, 3, S, S] in [0, 1] -> [B] float32 scores (differentiable)."""
        return self.from_logits(self.logits(self.normalize(pixels)))

    def image_logits(self, images: Sequence[Any]):
        """PIL images -> [B, vocab] answer logits: through pixels on fixed-grid backends, as images
        (the backend's processor tiles them) on the others."""
        if getattr(self.backend, "pixel_space", True):
            return self.logits(self.normalize(self.pixels(images)))
        from iqabench.models.backend import Query

        return self.backend.logits([Query.single(im, self.options.prompt) for im in images])

    def score_images(self, images: Sequence[Any]):
        """PIL images -> [B] float32 scores."""
        return self.from_logits(self.image_logits(images))

    def fingerprint(self) -> dict[str, Any]:
        """What the loaded model adds to a method's fingerprint: its identity and the answer tokens."""
        return {"backend": self.backend.fingerprint(), "token_ids": self.token_ids}

    def bank_ids(self) -> dict[str, int]:
        """WORD_BANK words -> token ids, keeping only words whose first tokens are distinct."""
        if not hasattr(self, "_bank"):
            ids = {w: self.backend.token_id(w) for w in WORD_BANK}
            counts = {t: list(ids.values()).count(t) for t in ids.values()}
            self._bank = {w: t for w, t in ids.items() if counts[t] == 1}
        return self._bank


def mllm_info(description: str, weights: str, kind: str = "zero-shot", fixed_grid: bool = False) -> MethodInfo:
    """The MethodInfo of a method scoring with a softmax over an MLLM's answer tokens."""
    return MethodInfo(kind=kind, description=description, higher_better=True, score_range=(0.0, 1.0),
                      fixed_grid=fixed_grid, needs_weights=weights, needs_gpu=True, extra="mllm")
