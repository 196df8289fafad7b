"""Image preprocessing shared by the MLLM backends."""
from __future__ import annotations

from typing import Any

MAX_ASPECT = 8.0


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
