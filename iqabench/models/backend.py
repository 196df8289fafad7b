"""The MLLM backend interface that every MLLM-based method uses.

A backend owns the model's image size and normalisation; methods get images as [0, 1]
tensors so they can edit pixels (a visual prompt) before `normalize`, and ask for
differentiable next-token logits at the last position for a batch of images and one prompt.
"""
from __future__ import annotations

import abc
from typing import Any, Sequence

import pydantic


class BackendSpec(pydantic.BaseModel):
    """Which model to load and how. `path` is a local folder or a hub id."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    arch: str = "owl2"  # a registered backend (registry.backends): owl2, llava, hf-vlm, ...
    path: str = "MAGAer13/mplug-owl2-llama2-7b"
    dtype: str = "auto"  # auto = bfloat16 on CUDA, float32 on CPU
    revision: str | None = None
    trust_remote_code: bool = False  # only ever True when the user asks for it
    resize: str = "model"  # the model's own resize policy, recorded in every result


class MLLMBackend(abc.ABC):
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @abc.abstractmethod
    def to_pixels(self, images: Sequence[Any]) -> "torch.Tensor":  # noqa: F821
        """PIL RGB images -> float tensor [B, 3, S, S] in [0, 1], the model's resize policy."""

    def normalize(self, pixels: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
        import torch

        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        return (pixels - mean) / std

    @abc.abstractmethod
    def next_token_logits(self, pixel_values: "torch.Tensor", prompt: str) -> "torch.Tensor":  # noqa: F821
        """Normalised pixels [B, 3, S, S] and a question -> logits [B, vocab] at the answer position.

        Differentiable with respect to `pixel_values`. `prompt` is the user's question; the
        backend wraps it in its model's conversation template with the image placeholder."""

    @abc.abstractmethod
    def generate(self, pixel_values: "torch.Tensor", prompt: str, max_new_tokens: int = 8) -> list[str]:  # noqa: F821
        """Greedy answers, one per image."""

    @abc.abstractmethod
    def token_id(self, word: str) -> int:
        """The id of `word` as the first token of an answer (same on old and new tokenizers)."""

    @abc.abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Model identity and settings that change scores (path, revision, dtype, resize)."""


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


def load_backend(spec: BackendSpec, device: str = "cpu") -> MLLMBackend:
    from iqabench import registry
    from iqabench.errors import IqaError

    if spec.trust_remote_code and not spec.revision:
        raise IqaError("trust_remote_code needs a pinned revision (a commit hash) so the code that runs is known")
    return registry.backends.get(spec.arch)(spec, device)
