"""KADID-style distortions at five levels, deterministic for a given seed.

Each takes an RGB uint8 array and a level 1..5 (1 mildest) and returns an RGB uint8 array.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def gaussian_blur(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    radius = (0.6, 1.2, 2.0, 3.2, 5.0)[level - 1]
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))


def motion_blur(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    length = (3, 5, 9, 13, 19)[level - 1]
    kernel = np.zeros(length ** 2)
    kernel.reshape(length, length)[length // 2, :] = 1.0 / length  # horizontal streak
    filt = ImageFilter.Kernel((length, length), kernel.tolist(), scale=1) if length <= 5 else None
    if filt is not None:
        return np.asarray(Image.fromarray(img).filter(filt))
    pad = length // 2
    padded = np.pad(img.astype(np.float32), ((0, 0), (pad, pad), (0, 0)), mode="edge")
    out = sum(padded[:, i:i + img.shape[1]] for i in range(length)) / length
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def white_noise(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (4, 8, 14, 22, 34)[level - 1]
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def impulse_noise(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    density = (0.005, 0.015, 0.04, 0.08, 0.15)[level - 1]
    out = img.copy()
    hit = rng.random(img.shape[:2])
    out[hit < density / 2] = 0
    out[(hit >= density / 2) & (hit < density)] = 255
    return out


def jpeg(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    quality = (50, 25, 12, 6, 2)[level - 1]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def darken(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    gamma = (1.3, 1.7, 2.2, 2.9, 3.8)[level - 1]
    return np.clip(255.0 * (img / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)


def contrast_decrease(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    keep = (0.75, 0.55, 0.4, 0.27, 0.15)[level - 1]
    mean = img.reshape(-1, 3).mean(axis=0)
    return np.clip(mean + (img - mean) * keep + 0.5, 0, 255).astype(np.uint8)


def pixelate(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    factor = (2, 3, 5, 8, 12)[level - 1]
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((max(1, w // factor), max(1, h // factor)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.NEAREST))


DISTORTIONS = {
    "gaussian_blur": gaussian_blur,
    "motion_blur": motion_blur,
    "white_noise": white_noise,
    "impulse_noise": impulse_noise,
    "jpeg": jpeg,
    "darken": darken,
    "contrast_decrease": contrast_decrease,
    "pixelate": pixelate,
}
