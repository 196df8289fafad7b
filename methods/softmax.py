"""Zero-shot MLLM quality scores from the next-token distribution (Q-Bench / Q-Align style): the
registered presets, as data (PRESETS), each made a Method class by one factory (`preset_method`).

A preset pairs a protocol of iqabench/models/scoring/protocols.py (the question or whole template,
the answer words or levels and weights, the pixel pipeline per backend arch) with the weights it
loads by default; the scoring itself is iqabench.models.scoring (SoftmaxScorer). Every preset runs
on any backend arch, e.g. `-o backend=qwen2_5_vl -o backend_path=DIR`, with that backend's own
processor (resize=model, normalization=model) unless the protocol names a pipeline for it:
- softmax-owl2: seed 000's "without visual prompt" baseline, i.e. the visual-prompt pipeline with no
  prompt (its options are SeedPipelineOptions' defaults, as vp-owl2's, so the two cannot drift).
- softmax-owl2-qbench: Q-Bench's protocol as its authors ran mPLUG-Owl2, the model's own processor.
- qalign-owl2: Q-Align on q-future/one-align; on owl2 padded to a square in the mean colour
  (`-o resize=crop` for the plain processor). Its whole template is used as-is on every backend.
- softmax-llava: llava-1.5 with seed 000's question, the model's own processor.
On backends whose processor tiles images (Qwen, InternVL, Idefics3, LLaVA-Next/OneVision) the
images go to the backend as PIL (`MLLMBackend.logits`); pixel options other than "model" are refused.
A served model (`-o backend=served -o backend_path=http://HOST:PORT/v1`) can be checked against the
same checkpoint in process: `-o parity_path=DIR -o parity_n=N` scores its first N images both ways
(iqabench/models/served/parity.py). torch and transformers are imported only when a model is built.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

import pydantic

from iqabench.api import Method, RunContext, Sample
from iqabench.models.scoring import (
    SoftmaxOptions,
    SoftmaxScorer,
    backend_unavailable,
    mllm_info,
    protocol_options,
)
from iqabench.models.scoring.options import known_backend

DEFAULT_PARITY_BACKEND = "hf-vlm"


class PresetOptions(SoftmaxOptions):
    """SoftmaxOptions and the parity check of a served model. The parity settings change no score,
    only what each compared image's record holds; left out of the run key at their defaults."""

    parity_path: str | None = pydantic.Field(None, exclude_if=lambda v: v is None)
    """a local copy of the served checkpoint: its first parity_n images are scored in process too"""
    parity_backend: str = pydantic.Field(DEFAULT_PARITY_BACKEND, exclude_if=lambda v: v == DEFAULT_PARITY_BACKEND)
    """the in-process backend arch for parity_path"""
    parity_n: int = pydantic.Field(0, ge=0, exclude_if=lambda v: v == 0)
    """how many images the parity check compares (0: none)"""

    @pydantic.field_validator("parity_backend")
    @classmethod
    def _known_parity_backend(cls, value: str) -> str:
        return known_backend(value)

    @pydantic.model_validator(mode="after")
    def _parity_together(self):
        if self.parity_n and not self.parity_path:
            raise ValueError("parity_n needs parity_path (the local copy of the checkpoint to compare with)")
        return self


class SoftmaxMethod(Method):
    """Base of the zero-shot presets; `preset_method` makes one subclass per row of PRESETS."""

    Options: ClassVar[type[PresetOptions]] = PresetOptions

    def __init__(self, options: PresetOptions | None = None):
        super().__init__(options)
        self.scorer: SoftmaxScorer | None = None
        self._word_logits: dict[str, dict[str, float]] = {}
        self.parity = None  # a ParityCheck when parity_path and parity_n are set

    @classmethod
    def check_available(cls, options: PresetOptions | None = None) -> str | None:
        return backend_unavailable(options if options is not None else cls.Options())

    @classmethod
    def contract_options(cls, workdir):
        from iqabench.models.tiny import tiny_model_path

        return {"backend_path": tiny_model_path(cls.Options().backend, workdir)}

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        from iqabench.models.backend import load_backend

        if self.scorer is None:
            self.scorer = SoftmaxScorer(load_backend(self.options.backend_spec(), self.device), self.options)
        o = self.options
        if o.parity_n and self.parity is None:
            from iqabench.models.backend import BackendSpec
            from iqabench.models.served.parity import ParityCheck

            spec = BackendSpec(arch=o.parity_backend, path=o.parity_path, dtype=o.dtype, revision=o.revision,
                               trust_remote_code=o.trust_remote_code, resize=o.resize)
            local = SoftmaxScorer(load_backend(spec, self.device), o)
            self.parity = ParityCheck(lambda images: local.score_images(images).cpu(), o.parity_n)

    def score(self, samples: Sequence[Sample]) -> list[float]:
        import torch

        if self.scorer is None:
            self.setup(self.ctx)
        with torch.no_grad():
            logits = self.scorer.image_logits([s.image for s in samples]).float()
            scores = self.scorer.from_logits(logits)
        bank = self.scorer.bank_ids()
        for i, sample in enumerate(samples):  # kept with the score: another word pair needs no model
            row = {w: float(logits[i, t]) for w, t in bank.items()}
            self._word_logits[sample.id] = {w: v for w, v in row.items() if math.isfinite(v)}  # served: top only
        out = [float(v) for v in scores.cpu()]
        if self.parity is not None and self.parity.wants():
            with torch.no_grad():
                self.parity.observe([s.id for s in samples], [s.label for s in samples], out,
                                    [s.image for s in samples])
        return out

    def sample_extras(self, sample_id: str) -> dict[str, Any]:
        words = self._word_logits.pop(sample_id, None)
        extras = {"word_logits": words} if words is not None else {}
        return {**extras, **(self.parity.extras(sample_id) if self.parity is not None else {})}

    def runtime_stats(self) -> dict[str, Any]:
        stats = dict(getattr(self.scorer.backend, "runtime_stats", dict)()) if self.scorer is not None else {}
        if self.parity is not None:
            stats["parity"] = self.parity.summary()
        return stats

    def teardown(self) -> None:
        if self.parity is not None and self.parity.rows:
            print(self.parity.line(), file=sys.stderr)

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        if self.scorer is not None:
            out.update(self.scorer.fingerprint())
        return out


@dataclasses.dataclass(frozen=True)
class Preset:
    """A registered zero-shot method as data: a protocol, the weights it loads by default (the
    backend options' defaults, mPLUG-Owl2, where not given) and what `list methods` says."""

    class_name: str  # the attribute pyproject's entry point names
    protocol: str  # a key of PROTOCOLS
    description: str
    weights_note: str
    doc: str
    backend: str | None = None
    backend_path: str | None = None


_OWL2_WEIGHTS = "MAGAer13/mplug-owl2-llama2-7b (~16 GB)"
_ANY = " Any backend: -o backend=ARCH -o backend_path=DIR (pipeline: that backend's processor)."

PRESETS: dict[str, Preset] = {
    "softmax-owl2": Preset(
        "SoftmaxOwl2", "seed000",
        "mPLUG-Owl2 zero-shot, seed 000's baseline (its visual-prompt pipeline without a prompt): 'Rate the "
        "technical quality of the image.', good+fine vs poor+bad; shorter side 448, torchvision centre crop, "
        "ImageNet mean/std." + _ANY,
        _OWL2_WEIGHTS, "Seed 000's \"without visual prompt\" baseline: exactly vp-owl2's pipeline with no prompt."),
    "softmax-owl2-qbench": Preset(
        "SoftmaxOwl2QBench", "qbench",
        "mPLUG-Owl2 zero-shot, Q-Bench protocol: 'Rate the quality of the image.', good vs poor; the model's processor "
        "(shorter side 448, centre crop, CLIP mean/std)." + _ANY, _OWL2_WEIGHTS,
        "Q-Bench's zero-shot protocol on mPLUG-Owl2 as its authors ran it, with the model's own processor."),
    "qalign-owl2": Preset(
        "QAlignOwl2", "qalign",
        "Q-Align (one-align) on the mPLUG-Owl2 backend: five rated levels weighted 1..0; image padded to a square "
        "in the mean colour as Q-Align does (-o resize=crop to centre-crop)." + _ANY, "q-future/one-align (~16 GB)",
        "Q-Align's protocol on its one-align checkpoint, padded to a square as Q-Align does.",
        backend_path="q-future/one-align"),
    "softmax-llava": Preset(
        "SoftmaxLlava", "seed000",
        "LLaVA-1.5 zero-shot: softmax of good+fine vs poor+bad after the seed 000 question; the model's "
        "processor." + _ANY,
        "llava-hf/llava-1.5-7b-hf (~14 GB)", "Seed 000's question on LLaVA-1.5.",
        backend="llava", backend_path="llava-hf/llava-1.5-7b-hf"),
}


def preset_method(name: str) -> type[SoftmaxMethod]:
    """The Method class of PRESETS[name]: its Options take their defaults from the row's protocol."""
    row = PRESETS[name]
    backend = {k: v for k, v in (("backend", row.backend), ("backend_path", row.backend_path)) if v is not None}
    options = protocol_options(row.protocol, f"{row.class_name}Options", row.doc, module=__name__,
                               base=PresetOptions, **backend)
    return type(row.class_name, (SoftmaxMethod,), {
        "__module__": __name__, "__qualname__": row.class_name, "__doc__": row.doc,
        "name": name, "Options": options, "info": mllm_info(row.description, row.weights_note)})


# the entry points' targets (pyproject.toml)
SoftmaxOwl2 = preset_method("softmax-owl2")
SoftmaxOwl2QBench = preset_method("softmax-owl2-qbench")
QAlignOwl2 = preset_method("qalign-owl2")
SoftmaxLlava = preset_method("softmax-llava")
