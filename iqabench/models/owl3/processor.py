"""mPLUG-Owl3's image processor: adaptive crops (slices) plus a global view, and the text that
announces them.

Each image is resized to the grid of crops (rows x columns of S x S) that best fits its shape,
cut into those crops (row by row), and followed by the whole image resized to S x S (the global
view); all with bicubic resampling, scaled to [0, 1] and normalised with mean = std = 0.5. Its
`<|image|>` in the prompt becomes
    "Cut to {h} rows {w} columns with a global view\n" + one line per row of
    "subimg(i,j)<|image|>" joined by spaces + "\nglobal_view<|image|>",
one marker per crop. The grids are the official processor's default set (2x2, 1x3, 1x4, 3x1,
4x1, 2x3, 3x2: never a single crop). The grid is chosen as the official rule does: highest
(shape IoU * 100 + IoU) between the grid's pixel box and the image's box, where the shape IoU
compares the grid with the image's aspect ratio at the grid's width (that height truncated to
an integer, as the official integer boxes do).

Several images in one prompt: each gets its own grid here. The official processor of the
240728 release reads the grid of the k-th image from a list that also holds one (1, 1) entry per
global view, so from the second image on it announces the wrong grid and passes fewer markers
than crops (measured on a tiny random model: single-image prompts agree to 2e-6, two-image
prompts with crops differ; with crops off they agree again). This module does not copy that.

`resize="squash"` turns the crops off (the official `cut_enable=False`): one S x S view per
image and the marker stays a single `<|image|>`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IMAGE_MARK = "<|image|>"
GRIDS: tuple[tuple[int, int], ...] = ((2, 2), (1, 3), (1, 4), (3, 1), (4, 1), (2, 3), (3, 2))  # (rows, columns)
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def _iou(box_w, box_h, other_w, other_h, eps: float = 1e-5):
    """IoU of boxes anchored at the origin, in torch's float32 from integer sides (as the official)."""
    import torch

    inter = torch.minimum(box_w, other_w) * torch.minimum(box_h, other_h)
    union = box_w * box_h + other_w * other_h - inter
    return inter / (union + eps)


def choose_grid(width: int, height: int, side: int, grids: Sequence[tuple[int, int]] = GRIDS) -> tuple[int, int]:
    """(rows, columns) of crops for an image of `width` x `height` with crops of `side` pixels."""
    import torch

    grid_w = torch.tensor([c * side for _, c in grids], dtype=torch.long)
    grid_h = torch.tensor([r * side for r, _ in grids], dtype=torch.long)
    iou = _iou(grid_w, grid_h, torch.tensor(width), torch.tensor(height))
    shape_h = (grid_w * (height / width)).long()  # float32 product truncated, as the official integer boxes
    shape_iou = _iou(grid_w, grid_h, grid_w, shape_h)
    best = int(torch.argmax(shape_iou * 100 + iou))
    return grids[best]


def _unit(image: Any):
    import numpy as np
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


def _normalized(image: Any):
    return (_unit(image) - 0.5) / 0.5


def cut_text(rows: int, cols: int) -> str:
    lines = "\n".join(" ".join(f"subimg({i},{j}){IMAGE_MARK}" for j in range(cols)) for i in range(rows))
    return f"Cut to {rows} rows {cols} columns with a global view\n{lines}\nglobal_view{IMAGE_MARK}"


def process_image(image: Any, side: int, crops: bool = True):
    """One PIL image -> (normalised views [n, 3, side, side], the text its marker becomes)."""
    import torch
    from PIL import Image

    image = image.convert("RGB")
    whole = _normalized(image.resize((side, side), Image.BICUBIC))[None]
    if not crops:
        return whole, IMAGE_MARK
    rows, cols = choose_grid(image.width, image.height, side)
    big = _normalized(image.resize((cols * side, rows * side), Image.BICUBIC))
    tiles = big.view(3, rows, side, cols, side).permute(1, 3, 0, 2, 4).reshape(rows * cols, 3, side, side)
    return torch.cat([tiles, whole]), cut_text(rows, cols)
