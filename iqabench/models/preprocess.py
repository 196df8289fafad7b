"""Image preprocessing shared by the MLLM backends: PIL geometry, then [0, 1] tensors.

Centre-crop offsets are where published pipelines differ: Hugging Face's CLIP image processor
takes floor((L - S) / 2); torchvision's CenterCrop takes round((L - S) / 2) with Python's
round-half-to-even, one pixel further when L - S = 3 (mod 4). The shorter-side resize is the same
in both (the longer side becomes int(S * long / short), bicubic).
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

MAX_ASPECT = 8.0
CropOffset = Literal["floor", "round"]


def central_band(image: Any, max_aspect: float = MAX_ASPECT) -> Any:
    """Crop the longer side of a very elongated image to `max_aspect` x the shorter side, centred.

    A shorter-side resize followed by a centre crop uses only the middle of the longer side, so
    this changes no output pixel; it keeps a 1 x 100000 image from being upscaled whole first."""
    w, h = image.size
    short, long = min(w, h), max(w, h)
    if long <= max_aspect * short:
        return image
    keep = int(max_aspect * short)
    start = (long - keep) // 2
    return image.crop((start, 0, start + keep, h) if w > h else (0, start, w, start + keep))


def crop_offset(excess: int, rule: CropOffset) -> int:
    """Where a centre crop starts when the side is `excess` pixels longer than the crop."""
    if rule == "floor":
        return excess // 2
    if rule == "round":
        return round(excess / 2.0)  # round-half-to-even, as torchvision's CenterCrop
    raise ValueError(f"crop offset rule {rule!r}: expected floor or round")


def resize_center_crop(image: Any, size: int, offset: CropOffset = "floor") -> Any:
    """Shorter side to `size` (bicubic), then a centred `size` x `size` crop."""
    from PIL import Image

    image = central_band(image)
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)  # floor, as both the CLIP processor and torchvision
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    image = image.resize((new_w, new_h), Image.BICUBIC)
    left, top = crop_offset(new_w - size, offset), crop_offset(new_h - size, offset)
    return image.crop((left, top, left + size, top + size))


def pad_to_square(image: Any, colour: tuple[int, int, int]) -> Any:
    """Centre the image on a square canvas of `colour` (Q-Align's and LLaVA's expand-to-square)."""
    from PIL import Image

    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    canvas = Image.new(image.mode, (side, side), colour)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


def square_image(image: Any, size: int, policy: str, fill: tuple[int, int, int] = (0, 0, 0)) -> Any:
    """A PIL image -> size x size RGB PIL image, by a fixed-grid resize policy.

    crop: shorter side to `size` (bicubic), then centre crop (the CLIP processor's offset);
    torchvision: the same with torchvision's offset; pad: pad to a square with `fill` (the mean
    colour, as LLaVA and Q-Align do), then resize; squash: resize both sides, ignoring aspect."""
    from PIL import Image

    from iqabench.errors import IqaError

    image = image.convert("RGB")
    if policy == "squash":
        return image.resize((size, size), Image.BICUBIC)
    if policy == "pad":
        return pad_to_square(image, fill).resize((size, size), Image.BICUBIC)
    if policy in ("crop", "torchvision"):
        return resize_center_crop(image, size, "round" if policy == "torchvision" else "floor")
    raise IqaError(f"resize {policy!r}: not a square-image policy (crop, torchvision, pad, squash)")


def unit_tensor(images: Sequence[Any]):
    """Same-size PIL RGB images -> float32 tensor [B, 3, H, W] in [0, 1]."""
    import numpy as np
    import torch

    return torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1) for im in images])
