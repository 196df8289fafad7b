"""Method options for MLLM scoring: which model to load (BackendOptions, the one shape every MLLM
method and every nested judge uses) and how its answer becomes a score (SoftmaxOptions).

Backend settings are validated here, once: the backend name against the registry, and resize,
dtype, worker and served settings against what that backend declares (`iqabench.models.backend.BackendTraits`).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, ClassVar

import pydantic

from iqabench.api import Options
from iqabench.models.backend import (
    DEFAULT_SERVED_LOGPROBS,
    DEFAULT_WORKER_HOST,
    BackendSpec,
    Dtype,
    ResizePolicy,
    backend_names,
    check_support,
)
from iqabench.models.scoring.normalize import Normalization
from iqabench.models.scoring.protocols import PROTOCOLS, SEED_PROMPT, Protocol

WORD_FIELDS, LEVEL_FIELDS = ("positive", "negative"), ("levels", "weights")


def split_list(value: Any) -> Any:
    """`-o positive=good,fine` arrives as one string; pydantic wants a sequence."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def known_backend(value: str) -> str:
    """`value` when it is a registered backend arch, else ValueError naming the known ones."""
    known = backend_names()
    if value not in known:
        raise ValueError(f"unknown backend {value!r}; known: {', '.join(known)}")
    return value


class BackendOptions(Options):
    """Which MLLM to load; every field is in the run's key."""

    backend: str = "owl2"
    """a registered backend arch (`iqabench list backends`): owl2, llava, qwen2_5_vl, hf-vlm, owl3-worker, ..."""
    backend_path: str = "MAGAer13/mplug-owl2-llama2-7b"
    """a local model folder or a hub id owner/name"""
    dtype: Dtype = "auto"
    """auto (bfloat16 on CUDA, float32 elsewhere), float32, bfloat16 or float16"""
    revision: str | None = None
    """the hub revision (commit hash) to load"""
    trust_remote_code: bool = False
    """run the checkpoint's own code (needs revision)"""
    resize: ResizePolicy = "model"
    """model (the processor's own), crop, torchvision, pad or squash, as the backend supports"""
    # Worker backends only; left out of the run key at their defaults, so keys made before they existed hold.
    worker_python: str | None = pydantic.Field(None, exclude_if=lambda v: v is None)
    """worker backends: the interpreter of the worker's own virtualenv"""
    worker_host: str = pydantic.Field(DEFAULT_WORKER_HOST, exclude_if=lambda v: v == DEFAULT_WORKER_HOST)
    """worker backends: what the worker hosts (owl3, or iqabench:<arch> for tests)"""
    # The served backend only; left out of the run key at their defaults, as the worker settings.
    served_model: str | None = pydantic.Field(None, exclude_if=lambda v: v is None)
    """backend=served: the model's name on the server (default: the one model it serves)"""
    served_logprobs: int = pydantic.Field(DEFAULT_SERVED_LOGPROBS, ge=1,
                                          exclude_if=lambda v: v == DEFAULT_SERVED_LOGPROBS)
    """backend=served: top log-probabilities asked per answer; a word outside them fails that image"""

    @pydantic.model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in (("arch", "backend"), ("path", "backend_path")):
                if old in data:
                    raise ValueError(f"backend option {old!r} is now {new!r}")
        return data

    @pydantic.field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        return known_backend(value)

    @pydantic.field_validator("dtype", "resize", "worker_python", "worker_host", "served_model", "served_logprobs")
    @classmethod
    def _supported(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        """Checked against what the chosen backend declares (fields after `backend` see its value)."""
        backend = info.data.get("backend")
        if backend is not None and value is not None:
            check_support(backend, **{info.field_name: value})
        return value

    @pydantic.model_validator(mode="after")
    def _pinned_remote_code(self):
        if self.trust_remote_code and not self.revision:
            raise ValueError("trust_remote_code=true needs revision=<commit hash> so the code that runs is known")
        return self

    def backend_spec(self) -> BackendSpec:
        # validated above: the spec is built without checking the same settings again
        return BackendSpec.model_construct(arch=self.backend, path=self.backend_path, dtype=self.dtype,
                                           revision=self.revision, trust_remote_code=self.trust_remote_code,
                                           resize=self.resize, worker_python=self.worker_python,
                                           worker_host=self.worker_host, served_model=self.served_model,
                                           served_logprobs=self.served_logprobs)


class SoftmaxOptions(BackendOptions):
    """The question, how the answer is read, and the pixel normalisation. A subclass naming a
    `protocol` takes every field the user leaves out from it (the pipeline for the chosen backend)."""

    protocol: ClassVar[Protocol | None] = None

    prompt: str = SEED_PROMPT
    """a question, or a whole template holding <|image|>"""
    positive: tuple[str, ...] | None = ("good", "fine")
    """answer words of high quality (comma-separated)"""
    negative: tuple[str, ...] | None = ("poor", "bad")
    """answer words of low quality (comma-separated)"""
    levels: tuple[str, ...] | None = None
    """rated levels instead of two word sets, best first (comma-separated; with weights)"""
    weights: tuple[float, ...] | None = None
    """one weight per level"""
    normalization: Normalization = "model"
    """model (the backend's mean/std) or imagenet"""

    @pydantic.model_validator(mode="before")
    @classmethod
    def _protocol_defaults(cls, data: Any) -> Any:
        proto = cls.protocol
        if proto is None or not isinstance(data, dict):
            return data
        data = dict(data)
        given = set(data)
        if given & set(LEVEL_FIELDS) and not given & set(WORD_FIELDS):
            data.update({k: None for k in WORD_FIELDS})
        elif given & set(WORD_FIELDS) and not given & set(LEVEL_FIELDS):
            data.update({k: None for k in LEVEL_FIELDS})
        for key in ("prompt", *WORD_FIELDS, *LEVEL_FIELDS):
            data.setdefault(key, getattr(proto, key))
        backend = data.get("backend", cls.model_fields["backend"].default)
        resize, normalization = proto.pipeline(backend)
        for key, value in (("resize", resize), ("normalization", normalization)):
            if key not in data and cls.model_fields[key].default is None:
                data[key] = value
        return data

    @pydantic.field_validator("positive", "negative", "levels", "weights", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return split_list(value)

    @pydantic.model_validator(mode="after")
    def _one_scheme(self):
        if not self.prompt.strip():
            raise ValueError("prompt is empty")
        if self.levels is not None or self.weights is not None:
            if self.levels is None or self.weights is None:
                raise ValueError("levels and weights go together")
            if len(self.levels) != len(self.weights) or len(self.levels) < 2:
                raise ValueError(f"levels ({len(self.levels)}) and weights ({len(self.weights)}) need the same "
                                 f"length, at least 2")
            if self.positive is not None or self.negative is not None:
                raise ValueError("give either positive/negative words or levels/weights, not both")
            check_words(self.levels, "levels")
        else:
            if not self.positive or not self.negative:
                raise ValueError("positive and negative word lists must both be non-empty (or give levels/weights)")
            check_words(self.positive + self.negative, "positive+negative")
        return self

    def scheme(self) -> str:
        return "levels" if self.levels is not None else "words"


def check_words(words: Sequence[str], what: str) -> None:
    if any(not w.strip() or " " in w.strip() for w in words):
        raise ValueError(f"{what}: each entry must be one word")
    if len(set(words)) != len(words):
        raise ValueError(f"{what}: a word appears twice ({', '.join(words)})")


def protocol_options(protocol: str, name: str, doc: str, module: str | None = None,
                     base: type[SoftmaxOptions] = SoftmaxOptions, **backend_defaults: str) -> type[SoftmaxOptions]:
    """The `base` (a SoftmaxOptions) class whose defaults are PROTOCOLS[protocol] (prompt, words or
    levels and weights; resize and normalization follow the protocol's pipeline for whichever
    backend is chosen) and, where given, other `backend` / `backend_path` defaults."""
    proto = PROTOCOLS[protocol]
    words = tuple[str, ...] | None
    fields: dict[str, Any] = {
        "prompt": (str, proto.prompt), "positive": (words, proto.positive), "negative": (words, proto.negative),
        "levels": (words, proto.levels), "weights": (tuple[float, ...] | None, proto.weights),
        "resize": (ResizePolicy | None, None), "normalization": (Normalization | None, None),
        **{key: (str, value) for key, value in backend_defaults.items()},
    }
    module = module or sys._getframe(1).f_globals.get("__name__", __name__)
    cls = pydantic.create_model(name, __base__=base, __module__=module, __doc__=doc, **fields)
    cls.protocol = proto
    return cls


SeedPipelineOptions = protocol_options(
    "seed000", "SeedPipelineOptions",
    """Seed 000's inference pipeline (its public code): on owl2 shorter side to 448 bicubic, torchvision's
    centre crop, pixels in [0, 1] (where a visual prompt is added), then ImageNet mean/std rather than the
    model's CLIP statistics. The zero-shot baseline uses it as it is; the visual-prompt methods extend it.""")
