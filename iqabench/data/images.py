"""Decoding images robustly: every mode to 8-bit RGB, and bad files refused with a reason."""
from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

MAX_PIXELS = 100_000_000  # larger images are refused as likely decompression bombs
_HEADER_LOCK = threading.Lock()


class ImageDecodeError(Exception):
    pass


def open_rgb(path: Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open `path` as an RGB image fully decoded in memory, or raise ImageDecodeError."""
    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError("file not found")
    if path.stat().st_size == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is a failure, not grey pixels
    try:
        # Pillow warns of a bomb while reading the header; the warning filters are process-wide and
        # catch_warnings is not thread-safe, so decoding threads (prefetch.py) read headers one at a
        # time. The decoding itself, in load(), runs in parallel.
        with _HEADER_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageDecodeError(f"{w}x{h} exceeds the {max_pixels}-pixel limit (decompression bomb?)")
            img.load()
            return to_rgb(img)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"decompression bomb: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageDecodeError("not a readable image (unknown format or wrong extension)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"corrupt image: {exc}") from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; alpha is composited on white, 16-bit is rescaled."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(arr * (255.0 if arr.max() <= 1 else 1.0), 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img.copy()
