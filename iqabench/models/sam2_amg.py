"""SAM2's automatic mask generator, on transformers' Sam2Model and Sam2Processor.

Follows the semantics of the official `SAM2AutomaticMaskGenerator` (facts, our code): a grid
of single-point prompts per crop, several masks per point, filtering by predicted IoU (>)
and stability score (>=), dropping boxes that touch a crop edge inside the image, box NMS
within each crop, NMS across crops preferring smaller crops. `min_mask_region_area` fills
holes and removes sprinkles of up to that many pixels in the low-resolution logits, as the
official predictor does with it (8-connected components). transformers' own
`mask-generation` pipeline differs (one NMS, strict `>` on stability, no hole filling), which
is why this module drives the model directly.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class AmgSettings:
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    multimask_output: bool = True


@dataclasses.dataclass
class MaskSet:
    """Masks of one image: bool [N, H, W], predicted IoU [N], boxes [N, 4] (x0, y0, x1, y1 inclusive)."""

    masks: np.ndarray
    iou: np.ndarray
    boxes: np.ndarray

    @classmethod
    def empty(cls, height: int, width: int) -> MaskSet:
        return cls(np.zeros((0, height, width), bool), np.zeros(0, np.float32), np.zeros((0, 4), np.int64))


def point_grid(n_per_side: int) -> np.ndarray:
    """n*n points at the centres of an n x n tiling of [0, 1]^2, as (x, y)."""
    side = (np.arange(n_per_side) + 0.5) / n_per_side
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def crop_boxes(height: int, width: int, n_layers: int, overlap_ratio: float) -> list[tuple[tuple[int, int, int, int], int]]:
    """The whole image, then for layer i a (2^i) x (2^i) grid of overlapping crops (x0, y0, x1, y1)."""
    boxes = [((0, 0, width, height), 0)]
    short = min(height, width)
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short * (2 / per_side))
        crop_w = math.ceil((overlap * (per_side - 1) + width) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + height) / per_side)
        xs = [int((crop_w - overlap) * i) for i in range(per_side)]
        ys = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in itertools.product(xs, ys):
            boxes.append(((x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)), layer))
    return boxes


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:  # noqa: F821
    """bool [N, H, W] -> [N, 4] inclusive (x0, y0, x1, y1); zeros for empty masks."""
    import torch

    n = masks.shape[0]
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.int64)
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    h, w = masks.shape[1:]
    ar_h = torch.arange(h).expand(n, h)
    ar_w = torch.arange(w).expand(n, w)
    y1 = torch.where(rows, ar_h, -1).max(dim=1).values
    y0 = torch.where(rows, ar_h, h).min(dim=1).values
    x1 = torch.where(cols, ar_w, -1).max(dim=1).values
    x0 = torch.where(cols, ar_w, w).min(dim=1).values
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    empty = ~rows.any(dim=1)
    boxes[empty] = 0
    return boxes


def stability_scores(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:  # noqa: F821
    """IoU between the masks binarised at threshold+offset and at threshold-offset."""
    import torch

    inter = (logits > threshold + offset).flatten(1).sum(1).float()
    union = (logits > threshold - offset).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


def near_crop_edge(boxes: torch.Tensor, crop: tuple[int, int, int, int], image: tuple[int, int, int, int], atol: float = 20.0) -> torch.Tensor:  # noqa: F821
    """Boxes (in full-image coordinates) touching a crop edge that is not an image edge."""
    import torch

    crop_t = torch.tensor(crop, dtype=torch.float32)
    image_t = torch.tensor(image, dtype=torch.float32)
    b = boxes.float()
    near_crop = torch.isclose(b, crop_t[None], atol=atol, rtol=0)
    near_image = torch.isclose(b, image_t[None], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def fill_small_regions(logits: torch.Tensor, max_area: int, threshold: float) -> torch.Tensor:  # noqa: F821
    """Fill holes and remove islands of at most `max_area` pixels (8-connected) in mask logits [N, h, w]."""
    import torch
    from scipy import ndimage

    if max_area <= 0 or logits.shape[0] == 0:
        return logits
    out = logits.detach().cpu().float().numpy().copy()
    eight = np.ones((3, 3), dtype=bool)
    for i in range(out.shape[0]):
        for region, value in ((out[i] <= threshold, threshold + 10.0), (out[i] > threshold, threshold - 10.0)):
            labels, count = ndimage.label(region, structure=eight)
            if count == 0:
                continue
            sizes = np.bincount(labels.ravel())
            small = (sizes <= max_area)
            small[0] = False
            out[i][small[labels]] = value
    return torch.from_numpy(out).to(logits.device, logits.dtype)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:  # noqa: F821
    import torch
    from torchvision.ops import nms

    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    return nms(boxes.float(), scores.float(), iou_threshold)


class Sam2AutoMaskGenerator:
    """Automatic masks from a transformers Sam2Model."""

    def __init__(self, model: Any, processor: Any, settings: AmgSettings, device: str = "cpu"):
        self.model = model
        self.processor = processor
        self.settings = settings
        self.device = device
        self.dtype = next(model.parameters()).dtype
        self.grids = [point_grid(int(settings.points_per_side / settings.crop_n_points_downscale_factor**i))
                      for i in range(settings.crop_n_layers + 1)]

    def generate(self, image: np.ndarray) -> MaskSet:
        """`image`: uint8 RGB [H, W, 3] -> the image's masks in full resolution."""
        import torch

        s = self.settings
        height, width = image.shape[:2]
        crops = crop_boxes(height, width, s.crop_n_layers, s.crop_overlap_ratio)
        parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        with torch.inference_mode():
            for crop, layer in crops:
                masks, iou, boxes = self._process_crop(image, crop, layer)
                area = float((crop[2] - crop[0]) * (crop[3] - crop[1]))
                parts.append((masks, iou, boxes, torch.full((masks.shape[0],), 1.0 / area)))
        masks = torch.cat([p[0] for p in parts])
        iou = torch.cat([p[1] for p in parts])
        boxes = torch.cat([p[2] for p in parts])
        if len(crops) > 1 and masks.shape[0]:
            keep = batched_nms(boxes, torch.cat([p[3] for p in parts]), s.crop_nms_thresh)  # smaller crops win
            masks, iou, boxes = masks[keep], iou[keep], boxes[keep]
        if masks.shape[0] == 0:
            return MaskSet.empty(height, width)
        return MaskSet(masks.numpy(), iou.float().numpy(), boxes.numpy())

    def _process_crop(self, image: np.ndarray, crop: tuple[int, int, int, int], layer: int):
        import torch

        s = self.settings
        height, width = image.shape[:2]
        x0, y0, x1, y1 = crop
        patch = np.array(image[y0:y1, x0:x1], copy=True)  # writable: torch.from_numpy warns on read-only arrays
        ch, cw = patch.shape[:2]
        inputs = self.processor(images=patch, return_tensors="pt")
        embeddings = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device, self.dtype))
        points = self.grids[layer] * np.array([[cw, ch]], dtype=np.float64)
        masks_all, iou_all, boxes_all = [], [], []
        for start in range(0, len(points), s.points_per_batch):
            batch = points[start:start + s.points_per_batch]
            m, i, b = self._process_batch(embeddings, batch, (ch, cw), crop, (height, width))
            masks_all.append(m)
            iou_all.append(i)
            boxes_all.append(b)
        masks = torch.cat(masks_all)
        iou = torch.cat(iou_all)
        boxes = torch.cat(boxes_all)
        if masks.shape[0]:
            keep = batched_nms(boxes, iou, s.box_nms_thresh)
            masks, iou, boxes = masks[keep], iou[keep], boxes[keep]
        return masks, iou, boxes

    def _process_batch(self, embeddings, points: np.ndarray, crop_hw, crop, image_hw):
        import torch

        s = self.settings
        ch, cw = crop_hw
        height, width = image_hw
        prompts = self.processor(
            original_sizes=[[ch, cw]],
            input_points=[[[list(map(float, p))] for p in points]],
            input_labels=[[[1] for _ in points]],
            return_tensors="pt",
        )
        out = self.model(
            image_embeddings=embeddings,
            input_points=prompts["input_points"].to(self.device, self.dtype),
            input_labels=prompts["input_labels"].to(self.device),
            multimask_output=s.multimask_output,
        )
        low = out.pred_masks[0].float()  # [P, M, h, w]
        iou = out.iou_scores[0].float().flatten()  # [P*M]
        low = low.flatten(0, 1)
        if s.pred_iou_thresh > 0:  # before upsampling: the IoU filter needs no full-size mask
            keep = iou > s.pred_iou_thresh
            low, iou = low[keep], iou[keep]
        low = fill_small_regions(low, s.min_mask_region_area, s.mask_threshold)
        logits = self.processor.post_process_masks([low[:, None]], [[ch, cw]], mask_threshold=s.mask_threshold, binarize=False)[0][:, 0]
        if s.stability_score_thresh > 0:
            keep = stability_scores(logits, s.mask_threshold, s.stability_score_offset) >= s.stability_score_thresh
            logits, iou = logits[keep], iou[keep]
        masks = (logits > s.mask_threshold).cpu()
        iou = iou.cpu()
        boxes = masks_to_boxes(masks) + torch.tensor([crop[0], crop[1], crop[0], crop[1]])
        keep = ~near_crop_edge(boxes, crop, (0, 0, width, height))
        masks, iou, boxes = masks[keep], iou[keep], boxes[keep]
        x0, y0, x1, y1 = crop
        if (x0, y0, x1, y1) != (0, 0, width, height):
            full = torch.zeros((masks.shape[0], height, width), dtype=torch.bool)
            full[:, y0:y1, x0:x1] = masks
            masks = full
        return masks, iou, boxes
