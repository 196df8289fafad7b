"""Dog-IQA's mix-grained aggregation (seed 004, Sec. 3.2 and Algorithm 1) as pure functions.

From an image's masks to the views the judge scores, and from the judge's integer scores to
the final number. No model, no torch: numpy arrays in, floats out.

Paper facts: masks smaller than a threshold t are dropped; each kept mask is scored on the
bounding-box crop of the *original* pixels (zero-filled masks scored much worse); one extra
mask covers the area no kept mask covers; s_local is the area-weighted mean of the crop scores
(mask areas, not box areas, as weights); s_seg = c*K/c_max; final = (s_global + s_local)/2 + s_seg.

Choices of ours (the paper's supplementary is not public): t is a fraction of the image area;
the weighted mean is normalised by the sum of the weights (SAM masks may overlap); c counts
the masks the judge scores (kept + the uncovered-area mask) unless told otherwise.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # numpy is imported where arrays are made, not on import
    import numpy as np


Crop = Literal["bbox", "mask"]  # Table 4: BBox (the paper's choice) vs zero-filled Mask
Weights = Literal["area", "mean"]  # Table 4: area-weighted vs simple mean
Parts = Literal["global+local", "local", "global"]  # Table 4: BBox+Whole, BBox, Whole
SegCount = Literal["scored", "kept", "raw"]
# s_seg: the paper's printed c*K/c_max (default), or two readings of "in the same range as the MLLM
# scores" that avoid its constant offset: minmax rescales the dataset's count range to [0, K], unit is c/c_max
SegFormula = Literal["paper", "minmax", "unit"]


@dataclasses.dataclass(frozen=True)
class AggregationOptions:
    min_area_fraction: float = 0.01  # t, as a fraction of the image area
    crop: Crop = "bbox"
    weights: Weights = "area"
    parts: Parts = "global+local"
    use_s_seg: bool = True
    add_uncovered: bool = True  # Algorithm 1's extra mask for the area no kept mask covers
    seg_count: SegCount = "scored"  # what c counts in s_seg


@dataclasses.dataclass(frozen=True)
class LocalRegion:
    """A region the judge scores: its mask, its area in pixels, its box (x0, y0, x1, y1), exclusive."""

    mask: np.ndarray  # bool [H, W]
    area: int
    box: tuple[int, int, int, int]
    uncovered: bool = False  # True for Algorithm 1's extra mask


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight bounding box (x0, y0, x1, y1) of a boolean mask, end-exclusive; None when empty."""
    import numpy as np

    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def select_regions(masks: np.ndarray, opts: AggregationOptions) -> list[LocalRegion]:
    """Algorithm 1: keep masks of area >= t, then add the uncovered area as one more mask.

    `masks` is bool [N, H, W] (N may be 0). When no mask survives, the uncovered mask is the
    whole image, so an image the segmenter could not split is still scored locally."""
    import numpy as np

    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {masks.shape}")
    n, height, width = masks.shape
    threshold = opts.min_area_fraction * height * width
    regions: list[LocalRegion] = []
    covered = np.zeros((height, width), dtype=bool)
    for i in range(n):
        area = int(masks[i].sum())
        if area == 0 or area < threshold:
            continue
        covered |= masks[i]
        regions.append(LocalRegion(masks[i], area, mask_box(masks[i])))
    if opts.add_uncovered:
        rest = ~covered
        area = int(rest.sum())
        if area > 0:
            regions.append(LocalRegion(rest, area, mask_box(rest), uncovered=True))
    if not regions:  # nothing kept and no uncovered mask asked for: the whole image is the one region
        whole = np.ones((height, width), dtype=bool)
        regions.append(LocalRegion(whole, height * width, (0, 0, width, height), uncovered=True))
    return regions


def crop_region(image: np.ndarray, region: LocalRegion, crop: Crop) -> np.ndarray:
    """The view of `region` the judge sees: its box cut from the original pixels ("bbox"),
    or the same box with pixels outside the mask set to zero ("mask", the paper's ablation)."""
    import numpy as np

    x0, y0, x1, y1 = region.box
    view = np.array(image[y0:y1, x0:x1], copy=True)
    if crop == "mask":
        view[~region.mask[y0:y1, x0:x1]] = 0
    elif crop != "bbox":
        raise ValueError(f"unknown crop {crop!r}")
    return view


def local_score(scores: Sequence[float], areas: Sequence[float], weights: Weights) -> float:
    """s_local: area-weighted mean (the paper) or plain mean (its ablation) of the crop scores."""
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise ValueError("no local scores to aggregate")
    if weights == "mean":
        return float(s.mean())
    a = np.asarray(areas, dtype=np.float64)
    if a.shape != s.shape or a.sum() <= 0:
        raise ValueError("areas must match scores and sum to a positive number")
    return float((s * a).sum() / a.sum())


def seg_score(count: int, levels: int, c_max: int, formula: SegFormula = "paper", c_min: int = 0) -> float:
    """s_seg from the mask count c. paper: c*K/c_max (Sec. 3.2 as printed; equal to K for every image
    when every image has c_max masks); minmax: K*(c - c_min)/(c_max - c_min), 0 when the counts do not
    vary; unit: c/c_max."""
    if c_max <= 0:
        return 0.0
    if formula == "paper":
        return float(count) * levels / float(c_max)
    if formula == "unit":
        return float(count) / float(c_max)
    if formula == "minmax":
        if c_max <= c_min:
            return 0.0
        return levels * float(count - c_min) / float(c_max - c_min)
    raise ValueError(f"unknown s_seg formula {formula!r}")


def mask_count(raw_masks: int, regions: Sequence[LocalRegion], seg_count: SegCount) -> int:
    if seg_count == "raw":
        return raw_masks
    if seg_count == "kept":
        return sum(not r.uncovered for r in regions)
    return len(regions)


def final_score(s_global: float | None, s_local: float | None, s_seg: float | None, parts: Parts) -> float:
    """s_Dog = (s_global + s_local)/2 + s_seg, or one part alone for the Table 4 ablations."""
    if parts == "global+local":
        base = (s_global + s_local) / 2.0
    elif parts == "local":
        base = s_local
    elif parts == "global":
        base = s_global
    else:
        raise ValueError(f"unknown parts {parts!r}")
    return float(base + (s_seg or 0.0))
