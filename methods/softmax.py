"""Zero-shot MLLM quality scores from the next-token distribution (Q-Bench / Q-Align style).

One question about the image; the score is read from the logits of the answer's first token:
- two word sets (seed 000, Q-Bench): s = sum_P e^l / (sum_P e^l + sum_N e^l);
- rated levels (Q-Align): s = sum_i w_i softmax(l_levels)_i.
Both are computed in float32 with log-sum-exp, so bf16 logits neither overflow nor underflow.

Registered presets (each a name of its own), each with the preprocessing of the protocol it
stands for:
- softmax-owl2: seed 000's "without visual prompt" baseline, i.e. the visual-prompt pipeline
  with no prompt: "Rate the technical quality of the image.", good+fine vs poor+bad, shorter
  side to 448 bicubic, torchvision's centre crop, ImageNet mean/std (the public code's
  choices). Its options are the base of vp-owl2's (SeedPipelineOptions), so the two cannot drift.
- softmax-owl2-qbench: Q-Bench's protocol as its authors ran mPLUG-Owl2: "Rate the quality of
  the image.", good vs poor, the model's own processor (shorter side 448, centre crop, CLIP
  mean/std).
- qalign-owl2: Q-Align on q-future/one-align: its template and five levels weighted
  1, .75, .5, .25, 0; the image padded to a square in the mean colour, as Q-Align does
  (`-o resize=crop` for the plain processor).
- softmax-llava: llava-1.5 with seed 000's question, the model's own processor.
torch and transformers are imported only when a model is built.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import pydantic

from iqabench.api import Method, MethodInfo, Options, Sample
from iqabench.errors import IqaError
from iqabench.models.backend import BackendSpec, backend_module, backend_names

SEED_PROMPT = "Rate the technical quality of the image."
QBENCH_PROMPT = "Rate the quality of the image."
# A prompt holding <|image|> is a whole template for every backend (here: Q-Align's, whose
# answer position comes after "The quality of the image is").
QALIGN_TEMPLATE = "USER: How would you rate the quality of this image?\n<|image|>\nASSISTANT: The quality of the image is"

# model: the checkpoint's own processor; crop: shorter side then centre crop (CLIP processor's
# offset); torchvision: the same with torchvision's centre-crop offset (owl2 backend); pad: a
# mean-colour square first; squash: both sides resized (hf-vlm backend).
ResizePolicy = Literal["model", "crop", "pad", "squash", "torchvision"]

# The public visual-prompt code normalises with ImageNet statistics, not the model's CLIP ones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _split_list(value: Any) -> Any:
    """`-o positive=good,fine` arrives as one string; pydantic wants a sequence."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class BackendOptions(Options):
    """Which MLLM to load; every field is recorded in the run's fingerprint."""

    backend: str = "owl2"
    backend_path: str = "MAGAer13/mplug-owl2-llama2-7b"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    revision: str | None = None
    trust_remote_code: bool = False
    resize: ResizePolicy = "model"

    @pydantic.field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        known = backend_names()
        if value not in known:
            raise ValueError(f"unknown backend {value!r}; known: {', '.join(known)}")
        return value

    @pydantic.model_validator(mode="after")
    def _pinned_remote_code(self):
        if self.trust_remote_code and not self.revision:
            raise ValueError("trust_remote_code=true needs revision=<commit hash> so the code that runs is known")
        return self

    def backend_spec(self) -> BackendSpec:
        return BackendSpec(arch=self.backend, path=self.backend_path, dtype=self.dtype, revision=self.revision,
                           trust_remote_code=self.trust_remote_code, resize=self.resize)


class SoftmaxOptions(BackendOptions):
    """The question, how the answer is read, and the pixel normalisation."""

    prompt: str = SEED_PROMPT  # a question, or a whole template holding <|image|>
    positive: tuple[str, ...] | None = ("good", "fine")
    negative: tuple[str, ...] | None = ("poor", "bad")
    levels: tuple[str, ...] | None = None
    weights: tuple[float, ...] | None = None
    normalization: Literal["model", "imagenet"] = "model"

    @pydantic.field_validator("positive", "negative", "levels", "weights", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @pydantic.model_validator(mode="after")
    def _one_scheme(self):
        if not self.prompt.strip():
            raise ValueError("prompt is empty")
        if self.levels is not None or self.weights is not None:
            if self.levels is None or self.weights is None:
                raise ValueError("levels and weights go together")
            if len(self.levels) != len(self.weights) or len(self.levels) < 2:
                raise ValueError(f"levels ({len(self.levels)}) and weights ({len(self.weights)}) need the same length, at least 2")
            if self.positive is not None or self.negative is not None:
                raise ValueError("give either positive/negative words or levels/weights, not both")
            _check_words(self.levels, "levels")
        else:
            if not self.positive or not self.negative:
                raise ValueError("positive and negative word lists must both be non-empty (or give levels/weights)")
            _check_words(self.positive + self.negative, "positive+negative")
        return self

    def scheme(self) -> str:
        return "levels" if self.levels is not None else "words"


def _check_words(words: Sequence[str], what: str) -> None:
    if any(not w.strip() or " " in w.strip() for w in words):
        raise ValueError(f"{what}: each entry must be one word")
    if len(set(words)) != len(words):
        raise ValueError(f"{what}: a word appears twice ({', '.join(words)})")


# -- scores from logits (float32, log-sum-exp) -------------------------------------------
def word_set_score(logits, positive_ids: Sequence[int], negative_ids: Sequence[int]):
    """(sum_P e^l) / (sum_P e^l + sum_N e^l) for each row of `logits` [B, V]; differentiable."""
    import torch

    logits = logits.float()
    pos = torch.logsumexp(logits[:, list(positive_ids)], dim=-1)
    both = torch.logsumexp(logits[:, list(positive_ids) + list(negative_ids)], dim=-1)
    return torch.exp(pos - both)


def level_score(logits, level_ids: Sequence[int], weights: Sequence[float]):
    """Expected level weight under the softmax restricted to the level tokens."""
    import torch

    probs = torch.softmax(logits.float()[:, list(level_ids)], dim=-1)
    return probs @ torch.tensor(list(weights), dtype=torch.float32, device=probs.device)


# -- availability ----------------------------------------------------------------------
def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def backend_unavailable(options: BackendOptions) -> str | None:
    """Why the backend cannot be loaded here, checked without importing torch or a model."""
    for package in ("torch", "transformers"):
        if importlib.util.find_spec(package) is None:
            return f"needs {package} (pip install 'iqabench[mllm]')"
    module = backend_module(options.backend)
    try:
        found = bool(module) and importlib.util.find_spec(module) is not None
    except (ModuleNotFoundError, ValueError):
        found = False
    if not found:
        return f"backend {options.backend!r}: module {module} is not installed"
    local = Path(options.backend_path).expanduser()
    if local.is_dir():
        return None if (local / "config.json").is_file() else f"{local}: no config.json (not a model folder)"
    if options.backend_path.startswith((".", "/", "~")) or options.backend_path.count("/") != 1:
        return f"backend_path {options.backend_path}: no such folder (and not a hub id owner/name)"
    if _hf_offline():
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return "needs huggingface_hub to find cached weights"
        cached = try_to_load_from_cache(options.backend_path, "config.json", revision=options.revision)
        if not isinstance(cached, str):
            return (f"weights {options.backend_path} are not in the Hugging Face cache and HF_HUB_OFFLINE=1 "
                    f"(download them, or set backend_path to a local folder)")
    return None


def pixel_normalizer(backend: Any, which: str):
    """The normalisation applied after any pixel edit: the model's own or ImageNet's."""
    if which == "model":
        return backend.normalize
    import torch

    def imagenet(pixels):
        mean = torch.tensor(IMAGENET_MEAN, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        return (pixels - mean) / std

    return imagenet


class SoftmaxScorer:
    """Backend + resolved token ids + the question: images -> pixels in [0, 1] -> scores in (0, 1).

    The one scoring path of the softmax presets and the visual-prompt methods: `pixels` (the
    backend's geometry), an optional pixel edit by the caller (a prompt), then `score_pixels`
    (normalisation, logits, softmax)."""

    def __init__(self, backend: Any, options: SoftmaxOptions):
        self.backend = backend
        self.options = options
        self.normalize = pixel_normalizer(backend, options.normalization)
        if options.scheme() == "levels":
            self.words = {"levels": list(options.levels)}
        else:
            self.words = {"positive": list(options.positive), "negative": list(options.negative)}
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
        if "levels" in self.token_ids:
            return level_score(logits, self.token_ids["levels"], self.options.weights)
        return word_set_score(logits, self.token_ids["positive"], self.token_ids["negative"])

    def score_pixels(self, pixels):
        """[B, 3, S, S] in [0, 1] -> [B] float32 scores (differentiable)."""
        return self.from_logits(self.logits(self.normalize(pixels)))


class SoftmaxMethod(Method):
    """Base of the zero-shot presets; subclasses only change names and defaults."""

    Options: ClassVar[type[SoftmaxOptions]] = SoftmaxOptions

    def __init__(self, options: SoftmaxOptions | None = None, device: str = "cpu", batch_size: int = 1,
                 dataset: str | None = None, cache_dir: Path | None = None):
        super().__init__(options, device, batch_size, dataset=dataset, cache_dir=cache_dir)
        self.scorer: SoftmaxScorer | None = None

    @classmethod
    def check_available(cls, options: SoftmaxOptions | None = None) -> str | None:
        return backend_unavailable(options if options is not None else cls.Options())

    @classmethod
    def contract_options(cls, workdir):
        from iqabench.models.tiny import tiny_model_path

        return {"backend_path": tiny_model_path(cls.Options().backend, workdir)}

    def setup(self) -> None:
        from iqabench.models.backend import load_backend

        if self.scorer is None:
            self.scorer = SoftmaxScorer(load_backend(self.options.backend_spec(), self.device), self.options)

    def score(self, samples: Sequence[Sample]) -> list[float]:
        import torch

        if self.scorer is None:
            self.setup()
        pixels = self.scorer.pixels([s.image for s in samples])
        with torch.no_grad():
            scores = self.scorer.score_pixels(pixels)
        return [float(v) for v in scores.cpu()]

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        if self.scorer is not None:
            out["backend"] = self.scorer.backend.fingerprint()
            out["token_ids"] = self.scorer.token_ids
        return out


def mllm_info(description: str, weights: str, kind: str = "zero-shot") -> MethodInfo:
    """The MethodInfo of a method scoring with a softmax over an MLLM's answer tokens."""
    return MethodInfo(kind=kind, description=description, higher_better=True, score_range=(0.0, 1.0),
                      needs_weights=weights, needs_gpu=True, extra="mllm")


class SeedPipelineOptions(SoftmaxOptions):
    """Seed 000's inference pipeline (its public code): shorter side to 448 bicubic, torchvision's
    centre crop, pixels in [0, 1] (where a visual prompt is added), then ImageNet mean/std rather
    than the model's CLIP statistics. softmax-owl2 uses it as it is; vp-owl2's options extend it."""

    resize: ResizePolicy = "torchvision"
    normalization: Literal["model", "imagenet"] = "imagenet"


class Owl2QBenchOptions(SoftmaxOptions):
    """Q-Bench on mPLUG-Owl2 as its authors ran it: the model's own processor (shorter side 448,
    centre crop, CLIP mean/std), "Rate the quality of the image.", good vs poor."""

    prompt: str = QBENCH_PROMPT
    positive: tuple[str, ...] | None = ("good",)
    negative: tuple[str, ...] | None = ("poor",)
    resize: ResizePolicy = "model"
    normalization: Literal["model", "imagenet"] = "model"


class QAlignOptions(SoftmaxOptions):
    """Q-Align (one-align): its template, five levels weighted 1..0, and its preprocessing: the
    image padded to a square in the processor's mean colour, then the model's processor and
    CLIP mean/std. `resize=crop` gives the plain processor's centre crop instead."""

    backend_path: str = "q-future/one-align"
    prompt: str = QALIGN_TEMPLATE
    positive: tuple[str, ...] | None = None
    negative: tuple[str, ...] | None = None
    levels: tuple[str, ...] | None = ("excellent", "good", "fair", "poor", "bad")
    weights: tuple[float, ...] | None = (1.0, 0.75, 0.5, 0.25, 0.0)
    resize: ResizePolicy = "pad"
    normalization: Literal["model", "imagenet"] = "model"


class LlavaSoftmaxOptions(SoftmaxOptions):
    backend: str = "llava"
    backend_path: str = "llava-hf/llava-1.5-7b-hf"


_OWL2_WEIGHTS = "MAGAer13/mplug-owl2-llama2-7b (~16 GB)"


class SoftmaxOwl2(SoftmaxMethod):
    """Seed 000's "without visual prompt" baseline: exactly vp-owl2's pipeline with no prompt."""

    name = "softmax-owl2"
    info = mllm_info("mPLUG-Owl2 zero-shot, seed 000's baseline (its visual-prompt pipeline without a prompt): "
                     "'Rate the technical quality of the image.', good+fine vs poor+bad; shorter side 448, "
                     "torchvision centre crop, ImageNet mean/std", _OWL2_WEIGHTS)
    Options = SeedPipelineOptions


class SoftmaxOwl2QBench(SoftmaxMethod):
    """Q-Bench's zero-shot protocol on mPLUG-Owl2, with the model's own processor."""

    name = "softmax-owl2-qbench"
    info = mllm_info("mPLUG-Owl2 zero-shot, Q-Bench protocol: 'Rate the quality of the image.', good vs poor; "
                     "the model's processor (shorter side 448, centre crop, CLIP mean/std)", _OWL2_WEIGHTS)
    Options = Owl2QBenchOptions


class QAlignOwl2(SoftmaxMethod):
    """Q-Align's protocol on its one-align checkpoint, padded to a square as Q-Align does."""

    name = "qalign-owl2"
    info = mllm_info("Q-Align (one-align) on the mPLUG-Owl2 backend: five rated levels weighted 1..0; image padded "
                     "to a square in the mean colour as Q-Align does (-o resize=crop to centre-crop)",
                     "q-future/one-align (~16 GB)")
    Options = QAlignOptions


class SoftmaxLlava(SoftmaxMethod):
    name = "softmax-llava"
    info = mllm_info("LLaVA-1.5 zero-shot: softmax of good+fine vs poor+bad after the seed 000 question; "
                     "the model's processor", "llava-hf/llava-1.5-7b-hf (~14 GB)")
    Options = LlavaSoftmaxOptions
