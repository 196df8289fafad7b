"""Zero-shot MLLM quality scores from the next-token distribution (Q-Bench / Q-Align style).

One question about the image; the score is read from the logits of the answer's first token:
- two word sets (seed 000, Q-Bench): s = sum_P e^l / (sum_P e^l + sum_N e^l);
- rated levels (Q-Align): s = sum_i w_i softmax(l_levels)_i.
Both are computed in float32 with log-sum-exp, so bf16 logits neither overflow nor underflow.

The protocols are data (PROTOCOLS): the question or whole template, the answer words or levels and
weights, and the pixel pipeline each was published with, per backend arch; on any other backend
the backend's own processor (resize=model, normalization=model). The registered presets (PRESETS)
pair a protocol with default weights; every preset runs on any backend arch, e.g.
`-o backend=qwen2_5_vl -o backend_path=DIR`:
- softmax-owl2: seed 000's "without visual prompt" baseline, i.e. the visual-prompt pipeline
  with no prompt: "Rate the technical quality of the image.", good+fine vs poor+bad; on owl2
  shorter side to 448 bicubic, torchvision's centre crop, ImageNet mean/std (the public code's
  choices). Its options are the base of vp-owl2's (SeedPipelineOptions), so the two cannot drift.
- softmax-owl2-qbench: Q-Bench's protocol as its authors ran mPLUG-Owl2: "Rate the quality of
  the image.", good vs poor, the model's own processor (shorter side 448, centre crop, CLIP
  mean/std).
- qalign-owl2: Q-Align on q-future/one-align: its template and five levels weighted
  1, .75, .5, .25, 0; on owl2 the image padded to a square in the mean colour, as Q-Align does
  (`-o resize=crop` for the plain processor). Its whole template is used as-is on every backend.
- softmax-llava: llava-1.5 with seed 000's question, the model's own processor.
On backends whose processor tiles images (Qwen, InternVL, Idefics3, LLaVA-Next/OneVision) the
images go to the backend as PIL (`MLLMBackend.logits`); pixel options other than "model" are refused.
torch and transformers are imported only when a model is built.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import pydantic

from iqabench import hub
from iqabench.api import Method, MethodInfo, Options, Sample
from iqabench.errors import IqaError
from iqabench.models.backend import BackendSpec, backend_module, backend_names
from iqabench.models.scoring.formulas import WORD_BANK, level_score, rescore_words, word_set_score  # noqa: F401

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
QALIGN_LEVELS = ("excellent", "good", "fair", "poor", "bad")
QALIGN_WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A zero-shot protocol as data: what is asked, how the answer is read, and the pixel pipeline
    (resize, normalization) it was published with on each backend arch; any other arch uses
    ("model", "model"), the backend's own processor."""

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
WORD_FIELDS, LEVEL_FIELDS = ("positive", "negative"), ("levels", "weights")


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
    """The question, how the answer is read, and the pixel normalisation. A subclass naming a
    `protocol` takes every field the user leaves out from it (the pipeline for the chosen backend)."""

    protocol: ClassVar[Protocol | None] = None

    prompt: str = SEED_PROMPT  # a question, or a whole template holding <|image|>
    positive: tuple[str, ...] | None = ("good", "fine")
    negative: tuple[str, ...] | None = ("poor", "bad")
    levels: tuple[str, ...] | None = None
    weights: tuple[float, ...] | None = None
    normalization: Literal["model", "imagenet"] = "model"

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


# -- availability ----------------------------------------------------------------------
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
    if hub.offline():
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return "needs huggingface_hub to find cached weights"
        cached = try_to_load_from_cache(options.backend_path, "config.json", revision=options.revision)
        if not isinstance(cached, str):
            return (f"weights {options.backend_path} are not in the Hugging Face cache and {hub.OFFLINE_NOTE} "
                    f"(set -o backend_path=DIR to a local copy, or download them first: "
                    f"huggingface-cli download {options.backend_path})")
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
        if "levels" in self.token_ids:
            return level_score(logits, self.token_ids["levels"], self.options.weights)
        return word_set_score(logits, self.token_ids["positive"], self.token_ids["negative"])

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


class SoftmaxMethod(Method):
    """Base of the zero-shot presets; subclasses only change names and defaults."""

    Options: ClassVar[type[SoftmaxOptions]] = SoftmaxOptions

    def __init__(self, options: SoftmaxOptions | None = None, device: str = "cpu", batch_size: int = 1,
                 dataset: str | None = None, cache_dir: Path | None = None):
        super().__init__(options, device, batch_size, dataset=dataset, cache_dir=cache_dir)
        self.scorer: SoftmaxScorer | None = None
        self._word_logits: dict[str, dict[str, float]] = {}

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
        with torch.no_grad():
            logits = self.scorer.image_logits([s.image for s in samples]).float()
            scores = self.scorer.from_logits(logits)
        bank = self.scorer.bank_ids()
        for i, sample in enumerate(samples):  # kept with the score: another word pair needs no model
            self._word_logits[sample.id] = {w: float(logits[i, t]) for w, t in bank.items()}
        return [float(v) for v in scores.cpu()]

    def sample_extras(self, sample_id: str) -> dict[str, Any]:
        words = self._word_logits.pop(sample_id, None)
        return {"word_logits": words} if words is not None else {}

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        if self.scorer is not None:
            out.update(self.scorer.fingerprint())
        return out


def mllm_info(description: str, weights: str, kind: str = "zero-shot", fixed_grid: bool = False) -> MethodInfo:
    """The MethodInfo of a method scoring with a softmax over an MLLM's answer tokens."""
    return MethodInfo(kind=kind, description=description, higher_better=True, score_range=(0.0, 1.0), fixed_grid=fixed_grid,
                      needs_weights=weights, needs_gpu=True, extra="mllm")


@dataclasses.dataclass(frozen=True)
class Preset:
    """A registered zero-shot method as data: a protocol and the weights it loads by default."""

    protocol: str  # a key of PROTOCOLS
    backend: str
    backend_path: str
    description: str
    weights_note: str


_OWL2 = "MAGAer13/mplug-owl2-llama2-7b"
_OWL2_WEIGHTS = "MAGAer13/mplug-owl2-llama2-7b (~16 GB)"
_ANY = " Any backend: -o backend=ARCH -o backend_path=DIR (pipeline: that backend's processor)."

PRESETS: dict[str, Preset] = {
    "softmax-owl2": Preset(
        "seed000", "owl2", _OWL2,
        "mPLUG-Owl2 zero-shot, seed 000's baseline (its visual-prompt pipeline without a prompt): 'Rate the technical "
        "quality of the image.', good+fine vs poor+bad; shorter side 448, torchvision centre crop, ImageNet mean/std." + _ANY,
        _OWL2_WEIGHTS),
    "softmax-owl2-qbench": Preset(
        "qbench", "owl2", _OWL2,
        "mPLUG-Owl2 zero-shot, Q-Bench protocol: 'Rate the quality of the image.', good vs poor; the model's processor "
        "(shorter side 448, centre crop, CLIP mean/std)." + _ANY, _OWL2_WEIGHTS),
    "qalign-owl2": Preset(
        "qalign", "owl2", "q-future/one-align",
        "Q-Align (one-align) on the mPLUG-Owl2 backend: five rated levels weighted 1..0; image padded to a square in the "
        "mean colour as Q-Align does (-o resize=crop to centre-crop)." + _ANY, "q-future/one-align (~16 GB)"),
    "softmax-llava": Preset(
        "seed000", "llava", "llava-hf/llava-1.5-7b-hf",
        "LLaVA-1.5 zero-shot: softmax of good+fine vs poor+bad after the seed 000 question; the model's processor." + _ANY,
        "llava-hf/llava-1.5-7b-hf (~14 GB)"),
}


def preset_options(class_name: str, preset: str, doc: str) -> type[SoftmaxOptions]:
    """An Options class whose defaults are a preset's data; resize and normalization default to the
    protocol's pipeline for whichever backend is chosen."""
    entry = PRESETS[preset]
    proto = PROTOCOLS[entry.protocol]
    fields = {"backend": (str, entry.backend), "backend_path": (str, entry.backend_path),
              "prompt": (str, proto.prompt), "positive": (tuple[str, ...] | None, proto.positive),
              "negative": (tuple[str, ...] | None, proto.negative), "levels": (tuple[str, ...] | None, proto.levels),
              "weights": (tuple[float, ...] | None, proto.weights), "resize": (ResizePolicy | None, None),
              "normalization": (Literal["model", "imagenet"] | None, None)}
    namespace: dict[str, Any] = {"__module__": __name__, "__qualname__": class_name, "__doc__": doc,
                                 "__annotations__": {"protocol": ClassVar[Protocol], **{k: t for k, (t, _) in fields.items()}},
                                 "protocol": proto, **{k: v for k, (_, v) in fields.items()}}
    return type(class_name, (SoftmaxOptions,), namespace)


def preset_method(class_name: str, preset: str, options: type[SoftmaxOptions], doc: str) -> type[SoftmaxMethod]:
    entry = PRESETS[preset]
    return type(class_name, (SoftmaxMethod,), {"__module__": __name__, "__qualname__": class_name, "__doc__": doc,
                                               "name": preset, "Options": options,
                                               "info": mllm_info(entry.description, entry.weights_note)})


SeedPipelineOptions = preset_options(
    "SeedPipelineOptions", "softmax-owl2",
    """Seed 000's inference pipeline (its public code): on owl2 shorter side to 448 bicubic, torchvision's
    centre crop, pixels in [0, 1] (where a visual prompt is added), then ImageNet mean/std rather than the
    model's CLIP statistics. softmax-owl2 uses it as it is; vp-owl2's options extend it.""")
Owl2QBenchOptions = preset_options(
    "Owl2QBenchOptions", "softmax-owl2-qbench",
    """Q-Bench on mPLUG-Owl2 as its authors ran it: the model's own processor (shorter side 448, centre crop,
    CLIP mean/std), "Rate the quality of the image.", good vs poor.""")
QAlignOptions = preset_options(
    "QAlignOptions", "qalign-owl2",
    """Q-Align (one-align): its template, five levels weighted 1..0, and on owl2 its preprocessing: the image
    padded to a square in the processor's mean colour, then CLIP mean/std (`resize=crop`: centre crop).""")
LlavaSoftmaxOptions = preset_options("LlavaSoftmaxOptions", "softmax-llava", "Seed 000's question on LLaVA-1.5.")

SoftmaxOwl2 = preset_method("SoftmaxOwl2", "softmax-owl2", SeedPipelineOptions,
                            "Seed 000's \"without visual prompt\" baseline: exactly vp-owl2's pipeline with no prompt.")
SoftmaxOwl2QBench = preset_method("SoftmaxOwl2QBench", "softmax-owl2-qbench", Owl2QBenchOptions,
                                  "Q-Bench's zero-shot protocol on mPLUG-Owl2, with the model's own processor.")
QAlignOwl2 = preset_method("QAlignOwl2", "qalign-owl2", QAlignOptions,
                           "Q-Align's protocol on its one-align checkpoint, padded to a square as Q-Align does.")
SoftmaxLlava = preset_method("SoftmaxLlava", "softmax-llava", LlavaSoftmaxOptions, "Seed 000's question on LLaVA-1.5.")
