"""Pixel normalisers: what turns [0, 1] pixels (after any pixel edit, e.g. a visual prompt) into
the model's input. "model" is the backend's own mean/std; "imagenet" is what the public
visual-prompt code uses instead of the model's CLIP statistics."""
from __future__ import annotations

from typing import Any, Literal

Normalization = Literal["model", "imagenet"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pixel_normalizer(backend: Any, which: Normalization):
    """The normalisation applied after any pixel edit: the model's own or ImageNet's."""
    if which == "model":
        return backend.normalize
    import torch

    def imagenet(pixels):
        mean = torch.tensor(IMAGENET_MEAN, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
        return (pixels - mean) / std

    return imagenet
