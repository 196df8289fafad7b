"""BRISQUE natural-scene-statistics features (Mittal et al., 2012), 36 per image.

At two scales: the generalised-Gaussian fit (shape, variance) of the mean-subtracted
contrast-normalised (MSCN) luminance, and the asymmetric generalised-Gaussian fit (shape,
mean, left and right variance) of the products of neighbouring MSCN coefficients along
four orientations.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.special import gamma as gamma_fn

_SHAPES = np.arange(0.2, 10.0, 0.001)
_GGD_RATIO = gamma_fn(1.0 / _SHAPES) * gamma_fn(3.0 / _SHAPES) / gamma_fn(2.0 / _SHAPES) ** 2
N_FEATURES = 36


def mscn(gray: np.ndarray, sigma: float = 7.0 / 6.0) -> np.ndarray:
    mu = gaussian_filter(gray, sigma, truncate=3.0)
    var = gaussian_filter(gray * gray, sigma, truncate=3.0) - mu * mu
    return (gray - mu) / (np.sqrt(np.abs(var)) + 1.0)


def fit_ggd(x: np.ndarray) -> tuple[float, float]:
    x = x.ravel()
    variance = float(np.mean(x * x))
    mean_abs = float(np.mean(np.abs(x)))
    rho = variance / (mean_abs * mean_abs + 1e-12)
    shape = float(_SHAPES[np.argmin(np.abs(_GGD_RATIO - rho))])
    return shape, variance


def fit_aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    x = x.ravel()
    left, right = x[x < 0], x[x > 0]
    left_std = np.sqrt(np.mean(left * left)) if left.size else 1e-6
    right_std = np.sqrt(np.mean(right * right)) if right.size else 1e-6
    gamma_hat = left_std / (right_std + 1e-12)
    r_hat = np.mean(np.abs(x)) ** 2 / (np.mean(x * x) + 1e-12)
    r_norm = r_hat * (gamma_hat ** 3 + 1) * (gamma_hat + 1) / (gamma_hat ** 2 + 1) ** 2
    shape = float(_SHAPES[np.argmin(np.abs(_GGD_RATIO ** -1 - r_norm))])
    const = np.sqrt(gamma_fn(1.0 / shape) / gamma_fn(3.0 / shape))
    mean = (right_std - left_std) * (gamma_fn(2.0 / shape) / gamma_fn(1.0 / shape)) * const
    return shape, float(mean), float(left_std ** 2), float(right_std ** 2)


def _scale_features(gray: np.ndarray) -> list[float]:
    m = mscn(gray)
    feats = list(fit_ggd(m))
    for shifted in (np.roll(m, 1, axis=1), np.roll(m, 1, axis=0),
                    np.roll(np.roll(m, 1, axis=0), 1, axis=1), np.roll(np.roll(m, 1, axis=0), -1, axis=1)):
        feats.extend(fit_aggd((m * shifted)[1:-1, 1:-1]))
    return feats


def brisque_features(image: Image.Image) -> np.ndarray:
    """36 features of an RGB PIL image. Raises ValueError for images too small to analyse."""
    gray_img = image.convert("L")
    w, h = gray_img.size
    if min(w, h) < 16:
        raise ValueError(f"image {w}x{h} is too small for BRISQUE features (needs at least 16 px a side)")
    full = np.asarray(gray_img, dtype=np.float64)
    half = np.asarray(gray_img.resize((w // 2, h // 2), Image.BICUBIC), dtype=np.float64)
    return np.asarray(_scale_features(full) + _scale_features(half), dtype=np.float64)
