"""Pixel-space visual prompts (seed 000): learnable pixels added to a [0, 1] image.

Order of operations (the paper's and its public code's):
    x in [0, 1]  ->  x + tanh(param) placed on a zero canvas  ->  clamp to [0, 1]  ->  normalise
The normalisation happens outside this module, after `apply`.

Types and their parameters for an S x S image and prompt size p (S = 448 in the paper):
- padding:       strips of width p on the four borders; up/down 3 x p x S, left/right
                 3 x (S - 2p) x p: 6 p (2S - 2p) values (52,560 at p=10; 150,480 at p=30)
- patch_center:  a p x p patch whose top-left corner is at (S//2 - p//2, S//2 - p//2): 3 p^2
- patch_topleft: a p x p patch at (0, 0): 3 p^2 (300 at p=10; 2,700 at p=30)
- full:          the whole image, 3 S^2 (602,112 at S=448)
Tensor names match the public code's state dicts (pad_up, pad_down, pad_left, pad_right;
patch; prompt) so its published prompts load unchanged. Initialisation: randn x 0.01.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from iqabench.errors import IqaError

PromptType = Literal["padding", "patch_center", "patch_topleft", "full"]
PROMPT_TYPES: tuple[str, ...] = ("padding", "patch_center", "patch_topleft", "full")


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    type: str
    size: int  # strip width or patch side in pixels; ignored by "full"
    image_size: int

    def __post_init__(self):
        if self.type not in PROMPT_TYPES:
            raise IqaError(f"visual prompt type {self.type!r}: expected one of {', '.join(PROMPT_TYPES)}")
        if self.image_size < 1:
            raise IqaError(f"visual prompt image_size {self.image_size}: must be positive")
        if self.type == "padding" and not 0 < 2 * self.size < self.image_size:
            raise IqaError(f"padding of {self.size} px does not fit a {self.image_size} px image")
        if self.type.startswith("patch") and not 0 < self.size <= self.image_size:
            raise IqaError(f"patch of {self.size} px does not fit a {self.image_size} px image")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        s, p = self.image_size, self.size
        if self.type == "padding":
            return {"pad_up": (1, 3, p, s), "pad_down": (1, 3, p, s),
                    "pad_left": (1, 3, s - 2 * p, p), "pad_right": (1, 3, s - 2 * p, p)}
        if self.type == "full":
            return {"prompt": (1, 3, s, s)}
        return {"patch": (1, 3, p, p)}

    def num_params(self) -> int:
        total = 0
        for shape in self.shapes().values():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total

    def patch_origin(self) -> tuple[int, int]:
        """(top, left) of a patch prompt."""
        if self.type == "patch_center":
            corner = self.image_size // 2 - self.size // 2
            return corner, corner
        return 0, 0

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "size": self.size if self.type != "full" else 0, "image_size": self.image_size}


class VisualPrompt:
    """The learnable tensors of one prompt and how they are added to images."""

    def __init__(self, config: PromptConfig, seed: int = 0, device: str = "cpu"):
        import torch

        self.config = config
        gen = torch.Generator().manual_seed(seed)
        self.tensors = {name: torch.nn.Parameter((torch.randn(shape, generator=gen) * 0.01).to(device))
                        for name, shape in config.shapes().items()}

    def parameters(self) -> list[Any]:
        return list(self.tensors.values())

    def additive(self):
        """The full-size prompt tanh(param) on a zero canvas, [1, 3, S, S]."""
        import torch
        import torch.nn.functional as F

        cfg, t = self.config, {k: torch.tanh(v) for k, v in self.tensors.items()}
        if cfg.type == "full":
            return t["prompt"]
        if cfg.type == "padding":
            inner = cfg.image_size - 2 * cfg.size
            base = t["pad_left"].new_zeros(1, 3, inner, inner)
            middle = torch.cat([t["pad_left"], base, t["pad_right"]], dim=3)
            return torch.cat([t["pad_up"], middle, t["pad_down"]], dim=2)
        top, left = cfg.patch_origin()
        s, p = cfg.image_size, cfg.size
        return F.pad(t["patch"], (left, s - left - p, top, s - top - p))

    def apply(self, pixels):
        """[B, 3, S, S] images in [0, 1] -> prompted images clamped to [0, 1]."""
        size = self.config.image_size
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != (3, size, size):
            raise IqaError(f"visual prompt for {size} px images got pixels of shape {tuple(pixels.shape)}")
        return (pixels + self.additive().to(pixels.dtype)).clamp(0.0, 1.0)

    # -- persistence -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().cpu().contiguous() for k, v in self.tensors.items()}

    def load_state_dict(self, state: dict[str, Any], source: str = "prompt") -> None:
        import torch

        check_state(state, self.config, source)
        with torch.no_grad():
            for name, param in self.tensors.items():
                param.copy_(state[name].to(dtype=param.dtype, device=param.device))

    def digest(self) -> str:
        """A short hash of the prompt's values (they change the scores)."""
        h = hashlib.sha256()
        for name, value in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(value.float().numpy().tobytes())
        return h.hexdigest()[:16]


def check_state(state: dict[str, Any], config: PromptConfig, source: str) -> None:
    expected = config.shapes()
    if set(state) != set(expected):
        raise IqaError(f"{source}: tensors {sorted(state)} do not match a {config.type} prompt {sorted(expected)}")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise IqaError(f"{source}: tensor {name} has shape {tuple(state[name].shape)}, expected {shape} "
                           f"for a {config.type} prompt of {config.size} px on {config.image_size} px images")


def read_prompt_file(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors (and metadata) from a .safetensors file, or a .pt/.pth state dict read with
    weights_only=True (plain tensors only; objects are never unpickled)."""

    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise IqaError(f"{path}: prompt file not found")
    if path.suffix == ".safetensors":
        from iqabench.models.safe_load import read_safetensors

        return read_safetensors(path, "pt")  # a pickle renamed .safetensors is one line, never unpickled
    if path.suffix in (".pt", ".pth", ".bin"):
        from iqabench.models.safe_load import load_tensors_only

        state = load_tensors_only(path)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise IqaError(f"{path}: expected a dict of tensors")
        # A state dict saved from a wrapper module carries a prefix ("visual_prompter.pad_up").
        return {str(k).rsplit(".", 1)[-1]: v for k, v in state.items()}, {}
    raise IqaError(f"{path}: unknown prompt file type (use .safetensors, .pt or .pth)")


def save_prompt_file(path: Path, state: dict[str, Any], metadata: dict[str, str]) -> None:
    """Write tensors + string metadata atomically (serialised in memory, then a temp file renamed)."""
    from safetensors.torch import save

    from iqabench.io import write_bytes_atomic

    write_bytes_atomic(Path(path), save({k: v.contiguous() for k, v in state.items()}, metadata=metadata))


def prompt_figure(prompt: VisualPrompt, scorer: Any, samples: Sequence[Any], title: str) -> Any:
    """Seed 000's Fig. 2: the learned prompt alone (tanh(p) drawn around mid-grey), then each image as
    the model sees it, without and with the prompt, captioned with its score each way."""
    import torch

    from iqabench.report.figures import caption, grid, to_image

    size = prompt.config.image_size
    width = max(size, 160)  # tiny models see tiny images: scaled up (nearest) to stay readable
    with torch.no_grad():
        pixels = scorer.pixels([s.image for s in samples])
        prompted = prompt.apply(pixels)
        plain_scores = scorer.score_pixels(pixels).float().cpu().tolist()
        prompted_scores = scorer.score_pixels(prompted).float().cpu().tolist()
        alone = (0.5 + 0.5 * prompt.additive()[0].float()).clamp(0.0, 1.0)
    cfg = prompt.config
    rows = [[caption(to_image(alone), f"prompt: {cfg.type} {cfg.size} px\n{cfg.num_params():,} parameters", width=width)]]
    for sample, before, after, s0, s1 in zip(samples, pixels, prompted, plain_scores, prompted_scores):
        rows.append([caption(to_image(before), f"{sample.id}\nno prompt: {s0:.3f}", width=width),
                     caption(to_image(after), f"label {sample.label:g}\nprompted: {s1:.3f}", width=width)])
    return grid(rows, title=title)
