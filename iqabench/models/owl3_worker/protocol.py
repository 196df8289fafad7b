"""The worker's wire format: one JSON object per line each way; images as base64 PNG or paths.

Kept free of third-party imports except Pillow, so the worker's own virtualenv needs nothing
from this project.
"""
from __future__ import annotations

import base64
import io
import json
from typing import Any

PROTOCOL_VERSION = 1


def encode_image(image: Any) -> dict[str, str]:
    """A PIL image -> {"png_b64": ...} (lossless, so the worker sees the harness's pixels)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return {"png_b64": base64.b64encode(buffer.getvalue()).decode("ascii")}


def decode_image(item: dict[str, str]):
    """{"png_b64": ...} or {"path": ...} -> an RGB PIL image."""
    from PIL import Image

    if "png_b64" in item:
        with Image.open(io.BytesIO(base64.b64decode(item["png_b64"]))) as img:
            return img.convert("RGB")
    if "path" in item:
        with Image.open(item["path"]) as img:
            return img.convert("RGB")
    raise ValueError("image item needs png_b64 or path")


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":")) + "\n"


def loads(line: str) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict):
        raise TypeError("a protocol line must hold a JSON object")
    return message
