"""The MLLM backend interface that every MLLM-based method uses.

Two ways in:

1. Pixel space (fixed-grid models: Owl2, LLaVA-1.5, PaliGemma, Gemma 3). `to_pixels` gives
   [B, 3, S, S] in [0, 1] with the model's resize policy, a method may edit those pixels (a visual
   prompt), `normalize` applies the model's mean/std, and `next_token_logits(pixels, prompt)` gives
   differentiable logits at the last position, one image and one prompt per row. `pixel_space` is
   True on these backends. Models whose processor tiles or patchifies each image by its size
   (Qwen2.5-VL, Qwen3-VL, InternVL, Idefics3/SmolVLM, LLaVA-Next, LLaVA-OneVision) have no fixed
   grid: `pixel_space` is False and the three pixel calls raise one IqaError line; image-level
   methods (softmax presets, Q-Align levels, Dog-IQA) use way 2 there.

2. Queries (every backend): `logits(queries)` -> float32 [B, vocab] at the answer position and
   `answers(queries, max_new_tokens)` -> list[str], one greedy answer per query (the new text only,
   stripped, special tokens removed). A batch of queries may mix texts and image counts: the
   backend pads on the left with an attention mask, so each row scores as it would alone.

   `Query(images, text, system=None, answer_prefix="", template=False)`:
   - `images`: PIL RGB images, in the order their placeholders appear.
   - `text` (template=False): the user's message. Each `<|image|>` in it is where the next image
     goes (in-context examples: "Image A: <|image|> scored 3.5. Image B: <|image|> Score?"); with no
     placeholder, all images come first, then the text. The backend wraps the message in its own
     conversation format (chat template, or the family's plain format) with the generation prompt.
     The number of placeholders must be 0 or len(images).
   - `text` (template=True): the whole conversation up to the answer (e.g. Q-Align's
     "USER: ...<|image|>\nASSISTANT: The quality of the image is"); each `<|image|>` becomes the
     model's own image tokens; no chat template is applied and `system` must be None.
   - `system`: a system message; backends whose format has no system turn put it, then a
     newline, before the user's text.
   - `answer_prefix`: text the answer starts with (the logits are those of the token after it;
     generated text continues it), joined to the generation prompt with a space unless that
     ends in whitespace.
   `multi_image` tells whether a backend takes more than one image per query (PaliGemma takes
   several, but only before the text: placeholders elsewhere are refused). Who implements what:
   the transformers families (iqabench/models/hf_vlm.py, rows of vlm_families.py) and mPLUG-Owl2
   (iqabench/models/owl2_multi.py: each `<|image|>` becomes that image's visual tokens) take
   several images and mixed prompts; the default below takes one image per query.
   Example, two images with a score in the text (an in-context prompt):
       backend.logits([Query((ref, img), "Image A: <|image|> Its score: 3.5 of 5. Image B: <|image|> "
                                         "Rate image B from 1 to 5.", answer_prefix="Its score:")])

`prompt` strings of the pixel calls follow the template=False/True rule above with one image:
a prompt holding `<|image|>` is a whole template, anything else a question (`Query.single`).
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
from collections.abc import Sequence
from typing import Any, Literal, get_args

import pydantic

IMAGE_PLACEHOLDER = "<|image|>"

# The one vocabulary of model precision and image geometry, for every option class and backend.
# auto = bfloat16 on CUDA, float32 elsewhere (half precision is slow or missing on CPU).
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
# model: the checkpoint's own processor; crop: shorter side then centre crop (the CLIP processor's
# offset); torchvision: the same with torchvision's centre-crop offset; pad: a mean-colour square
# first; squash: both sides resized, ignoring the aspect ratio.
ResizePolicy = Literal["model", "crop", "pad", "squash", "torchvision"]
DTYPES: tuple[str, ...] = get_args(Dtype)
RESIZE_POLICIES: tuple[str, ...] = get_args(ResizePolicy)
DEFAULT_WORKER_HOST = "owl3"
DEFAULT_SERVED_LOGPROBS = 20


@dataclasses.dataclass(frozen=True)
class Query:
    """One prompt and its images (see the module docstring for the placeholder rules)."""

    images: tuple[Any, ...]
    text: str
    system: str | None = None
    answer_prefix: str = ""
    template: bool = False

    def __post_init__(self):
        from iqabench.errors import IqaError

        object.__setattr__(self, "images", tuple(self.images))
        marks = self.text.count(IMAGE_PLACEHOLDER)
        if self.template and marks != len(self.images):
            raise IqaError(f"a whole-template prompt needs one {IMAGE_PLACEHOLDER} per image: "
                           f"found {marks} for {len(self.images)} images")
        if marks not in (0, len(self.images)):
            raise IqaError(f"prompt has {marks} {IMAGE_PLACEHOLDER} placeholders for {len(self.images)} images")
        if self.template and self.system:
            raise IqaError("a whole-template prompt carries its own system text: system must be empty")

    @classmethod
    def single(cls, image: Any, prompt: str) -> Query:
        """One image and a pixel-call prompt: a whole template when it holds `<|image|>`."""
        return cls((image,), prompt, template=IMAGE_PLACEHOLDER in prompt)

    def answer_start(self, prompt: str) -> str:
        """`prompt` (the conversation up to the answer) followed by the answer prefix, joined with a
        space unless the prompt ends in whitespace."""
        if not self.answer_prefix:
            return prompt
        return prompt + (self.answer_prefix if prompt[-1:].isspace() else " " + self.answer_prefix)

    def folded_text(self) -> str:
        """The user's text with the system message before it (for formats without a system turn)."""
        return f"{self.system}\n{self.text}" if self.system else self.text


@dataclasses.dataclass(frozen=True)
class BackendTraits:
    """What a backend arch declares about itself, in one place, read without loading a model: by
    `iqabench list backends`, and by `check_support` once, when options (or a BackendSpec) are
    validated. A backend module declares it with `def traits(arch) -> BackendTraits | None` beside its
    loader; a module that declares nothing gets `BackendTraits()`: every setting, grid unknown."""

    # "fixed": one [3, S, S] view per image (pixel-space methods work); "tiled": the processor tiles
    # or patchifies each image by its size; None: known only from the checkpoint (hf-vlm, a worker)
    grid: Literal["fixed", "tiled"] | None = None
    multi_image: bool = False  # several images per prompt
    resize: tuple[str, ...] = RESIZE_POLICIES  # the resize policies it implements
    dtypes: tuple[str, ...] = DTYPES
    worker: bool = False  # runs in a worker process: worker_python / worker_host apply
    served: bool = False  # asks a model server: served_model / served_logprobs apply


def traits_of(arch: str) -> BackendTraits:
    """The traits the registered backend `arch` declares, from its module (imported: backend modules
    import no torch at import time), without building a model."""
    module = backend_module(arch)
    declare = getattr(importlib.import_module(module), "traits", None) if module else None
    declared = declare(arch) if callable(declare) else None
    return declared or BackendTraits()


class BackendSpec(pydantic.BaseModel):
    """Which model to load and how. `path` is a local folder or a hub id."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    arch: str = "owl2"  # a registered backend (registry.backends): owl2, llava, hf-vlm, ...
    path: str = "MAGAer13/mplug-owl2-llama2-7b"
    dtype: Dtype = "auto"
    revision: str | None = None
    trust_remote_code: bool = False  # only ever True when the user asks for it
    resize: ResizePolicy = "model"  # the model's own resize policy, recorded in every result
    worker_python: str | None = None  # the interpreter of a worker backend's own virtualenv
    worker_host: str = DEFAULT_WORKER_HOST  # what a worker backend hosts: owl3, or iqabench:<arch> (tests)
    # a served backend (path = the server's URL): the model's name there (None: the one it serves)
    # and how many top log-probabilities of the next token each request asks for
    served_model: str | None = None
    served_logprobs: int = pydantic.Field(DEFAULT_SERVED_LOGPROBS, ge=1)

    @pydantic.model_validator(mode="after")
    def _supported(self):
        check_support(self.arch, resize=self.resize, dtype=self.dtype, worker_python=self.worker_python,
                      worker_host=self.worker_host, served_model=self.served_model,
                      served_logprobs=self.served_logprobs)
        return self


class MLLMBackend(abc.ABC):
    image_size: int | None  # the side of the fixed grid; None where the processor tiles images
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pixel_space: bool = True  # to_pixels / normalize / next_token_logits are the model's input
    multi_image: bool = False  # a query may hold several images

    @abc.abstractmethod
    def to_pixels(self, images: Sequence[Any]) -> torch.Tensor:  # noqa: F821
        """PIL RGB images -> float tensor [B, 3, S, S] in [0, 1], the model's resize policy."""

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:  # noqa: F821
        import torch

        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        return (pixels - mean) / std

    @abc.abstractmethod
    def next_token_logits(self, pixel_values: torch.Tensor, prompt: str) -> torch.Tensor:  # noqa: F821
        """Normalised pixels [B, 3, S, S] and a question -> logits [B, vocab] at the answer position.

        Differentiable with respect to `pixel_values`. `prompt` is the user's question; the
        backend wraps it in its model's conversation template with the image placeholder."""

    @abc.abstractmethod
    def generate(self, pixel_values: torch.Tensor, prompt: str, max_new_tokens: int = 8) -> list[str]:  # noqa: F821
        """Greedy answers, one per image."""

    @abc.abstractmethod
    def token_id(self, word: str) -> int:
        """The id of `word` as the first token of an answer (same on old and new tokenizers)."""

    @abc.abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Model identity and settings that change scores (path, revision, dtype, resize)."""

    # -- queries ----------------------------------------------------------------------
    def logits(self, queries: Sequence[Query]) -> torch.Tensor:  # noqa: F821
        """Float32 logits [len(queries), vocab] at each query's answer position. This default
        serves pixel-space backends with one image per query: one `next_token_logits` call per
        distinct prompt, rows put back in query order."""
        import torch

        parts, rows = [], []
        for prompt, idx in self._groups(queries):
            pixels = self.normalize(self.to_pixels([queries[i].images[0] for i in idx]))
            parts.append(self.next_token_logits(pixels, prompt).float())
            rows += idx
        inverse = torch.empty(len(rows), dtype=torch.long)
        inverse[torch.tensor(rows, dtype=torch.long)] = torch.arange(len(rows))
        return torch.cat(parts).index_select(0, inverse.to(parts[0].device))

    def answers(self, queries: Sequence[Query], max_new_tokens: int = 8) -> list[str]:
        """Greedy answers, one per query (the same default reach as `logits`)."""
        out: list[str | None] = [None] * len(queries)
        for prompt, idx in self._groups(queries):
            pixels = self.normalize(self.to_pixels([queries[i].images[0] for i in idx]))
            for i, text in zip(idx, self.generate(pixels, prompt, max_new_tokens=max_new_tokens)):
                out[i] = text
        return out  # type: ignore[return-value]

    def _groups(self, queries: Sequence[Query]) -> list[tuple[str, list[int]]]:
        """(single-image prompt string, indices of the queries using it), in first-seen order."""
        from iqabench.errors import IqaError

        groups: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            if len(q.images) != 1:
                raise IqaError(f"backend {type(self).__name__}: takes exactly one image per prompt, "
                               f"got {len(q.images)}")
            if q.answer_prefix and not q.template:
                raise IqaError(f"backend {type(self).__name__}: answer_prefix needs a whole-template prompt here")
            prompt = f"{q.text} {q.answer_prefix}" if q.answer_prefix else q.text if q.template else q.folded_text()
            groups.setdefault(prompt, []).append(i)
        if not groups:
            raise IqaError("no queries to score")
        return list(groups.items())


def first_text_token(ids: Sequence[int], decode) -> int | None:
    """The first of the ids of " word" whose text is not only a word boundary: the token an answer
    starts with (old Llama tokenizers encode " good" as ["▁", "good"], new ones as ["▁good"];
    Qwen's byte-level BPE as ["Ġgood"]). `decode(list_of_ids) -> str`."""
    return next((int(t) for t in ids if decode([t]).strip()), None)


def backend_names() -> list[str]:
    """Every registered backend arch (built-ins and plugins, through `iqabench.backends`)."""
    from iqabench import registry

    return registry.backends.names()


def backend_module(arch: str) -> str:
    """The module a backend's loader lives in, without importing it (for cheap availability checks)."""
    from iqabench import registry

    registry.backends.load_entry_points()
    target = registry.backends._targets.get(registry.backends._aliases.get(arch, arch))
    return target.partition(":")[0] if isinstance(target, str) else getattr(target, "__module__", "")


def check_support(arch: str, resize: str | None = None, dtype: str | None = None, worker_python: str | None = None,
                  worker_host: str = DEFAULT_WORKER_HOST, served_model: str | None = None,
                  served_logprobs: int = DEFAULT_SERVED_LOGPROBS) -> None:
    """ValueError (one line naming the allowed values) when the arch does not take these settings;
    None skips a check."""
    from iqabench import registry

    # a declared name is known without importing every backend; an alias may need them imported
    if arch not in registry.backends.declared_names() and arch not in registry.backends.names():
        return  # unknown names are refused where the backend is chosen
    traits = traits_of(arch)
    if resize is not None and resize not in traits.resize:
        raise ValueError(f"backend {arch} does not support resize={resize}; allowed: {', '.join(traits.resize)}")
    if dtype is not None and dtype not in traits.dtypes:
        raise ValueError(f"backend {arch} does not support dtype={dtype}; allowed: {', '.join(traits.dtypes)}")
    if not traits.worker and (worker_python is not None or worker_host != DEFAULT_WORKER_HOST):
        raise ValueError(f"backend {arch} runs in this process: worker_python and worker_host apply to worker "
                         f"backends only")
    if not traits.served and (served_model is not None or served_logprobs != DEFAULT_SERVED_LOGPROBS):
        raise ValueError(f"backend {arch} is not a served backend: served_model and served_logprobs apply to it only")


def resolve_dtype(name: str, device: str):
    """A Dtype name -> the torch dtype ("auto": bfloat16 on CUDA, float32 elsewhere)."""
    import torch

    if name == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return getattr(torch, name)


def load_backend(spec: BackendSpec, device: str = "cpu") -> MLLMBackend:
    from iqabench import registry
    from iqabench.errors import IqaError

    if spec.trust_remote_code and not spec.revision:
        raise IqaError("trust_remote_code needs a pinned revision (a commit hash) so the code that runs is known")
    return registry.backends.get(spec.arch)(spec, device)
