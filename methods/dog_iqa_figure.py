"""Dog-IQA's Fig. 5 (seed 004): an image with its final score (upper left), its segmentation with
the mask count (upper left), and three of its crops, chosen to show varying quality (the best,
middle and worst scored), each with its score (upper left) and area weight (lower right)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from iqabench.methods import dog_iqa_aggregate as agg

CROPS_SHOWN = 3
PANEL = 160  # px: every panel's width (tiny test images are scaled up with nearest neighbours)


def segment_overlay(pixels: np.ndarray, regions: Sequence[agg.LocalRegion], seed: int = 0) -> np.ndarray:
    """The image with each region tinted a colour of its own (the uncovered-area mask in grey)."""
    rng = np.random.default_rng(seed)
    out = pixels.astype(np.float32).copy()
    for region in regions:
        colour = np.array([128, 128, 128] if region.uncovered else rng.integers(40, 255, 3), dtype=np.float32)
        out[region.mask] = 0.45 * out[region.mask] + 0.55 * colour
    return out.clip(0, 255).astype(np.uint8)


def chosen_crops(scores: Sequence[float], count: int = CROPS_SHOWN) -> list[int]:
    """Indices of the best, middle and worst scored crops (fewer when the image has fewer)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if len(order) <= count:
        return order
    picks = [order[0], order[len(order) // 2], order[-1]][:count]
    return list(dict.fromkeys(picks))


def segments_figure(rows: Sequence[tuple[Any, float, list[agg.LocalRegion], list[float]]], title: str,
                    crop: agg.Crop = "bbox"):
    """rows: (sample, final score, the regions the judge scored, their scores) per image."""
    from PIL import Image

    from iqabench.report.figures import caption, grid, label

    def panel(array_or_image) -> Any:
        image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
        height = max(1, round(image.height * PANEL / image.width))
        return image.convert("RGB").resize((PANEL, height), Image.NEAREST)

    lines = []
    for sample, score, regions, crop_scores in rows:
        image = sample.image.convert("RGB")
        pixels = np.asarray(image)
        line = [caption(label(panel(image), f"{score:.2f}"), f"{sample.id}\nlabel {sample.label:g}"),
                caption(label(panel(segment_overlay(pixels, regions)), f"{len(regions)}"), "segments")]
        if crop_scores:
            total = float(sum(r.area for r in regions))
            for i in chosen_crops(crop_scores):
                crop_view = panel(agg.crop_region(pixels, regions[i], crop))
                crop_view = label(label(crop_view, f"{crop_scores[i]:.2f}"), f"{regions[i].area / total:.2f}", corner="bottom-right")
                line.append(caption(crop_view, "uncovered area" if regions[i].uncovered else f"mask {i + 1}"))
        lines.append(line)
    return grid(lines, title=title)
