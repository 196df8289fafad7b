"""Zero-shot scoring protocols as data: what is asked, how the answer is read, and the pixel
pipeline each was published with, per backend arch (any other arch: the backend's own processor).
- seed000 (seed 000's "without visual prompt" baseline): "Rate the technical quality of the image.",
  good+fine vs poor+bad; on owl2 shorter side 448 bicubic, torchvision's centre crop, ImageNet mean/std
  (the public visual-prompt code's choices).
- qbench (Q-Bench as its authors ran mPLUG-Owl2): "Rate the quality of the image.", good vs poor, the
  model's own processor.
- qalign (Q-Align): its whole template and five levels weighted 1, .75, .5, .25, 0; on owl2 the image
  padded to a square in the mean colour, as Q-Align does.
"""
from __future__ import annotations

import dataclasses

SEED_PROMPT = "Rate the technical quality of the image."
QBENCH_PROMPT = "Rate the quality of the image."
# A prompt holding <|image|> is a whole template for every backend (here: Q-Align's, whose
# answer position comes after "The quality of the image is").
QALIGN_TEMPLATE = "USER: How would you rate the quality of this image?\n<|image|>\nASSISTANT: The quality of the image is"
QALIGN_LEVELS = ("excellent", "good", "fair", "poor", "bad")
QALIGN_WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A zero-shot protocol: the question (or whole template), the answer words or levels and
    weights, and the (resize, normalization) it was published with on each backend arch; any
    other arch uses ("model", "model"), the backend's own processor."""

    prompt: str
    positive: tuple[str, ...] | None = None
    negative: tuple[str, ...] | None = None
    levels: tuple[str, ...] | None = None
    weights: tuple[float, ...] | None = None
    pipelines: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)

    def pipeline(self, backend: str) -> tuple[str, str]:
        return self.pipelines.get(backend, ("model", "model"))


PROTOCOLS: dict[str, Protocol] = {
    "seed000": Protocol(SEED_PROMPT, ("good", "fine"), ("poor", "bad"), pipelines={"owl2": ("torchvision", "imagenet")}),
    "qbench": Protocol(QBENCH_PROMPT, ("good",), ("poor",)),
    "qalign": Protocol(QALIGN_TEMPLATE, levels=QALIGN_LEVELS, weights=QALIGN_WEIGHTS, pipelines={"owl2": ("pad", "model")}),
}
