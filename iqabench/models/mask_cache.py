"""A disk cache of segmentation masks, shared by every run that uses the same segmenter.

Key: (dataset, image id, segmenter fingerprint). The fingerprint holds the model identity
and every generator setting, so a change of judge reuses the masks and a change of
segmenter does not. Files are compressed numpy (`np.savez_compressed`), read with
`allow_pickle=False`, written atomically (temporary file + rename) so a killed run never
leaves a half-written entry.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from iqabench import io

SCHEMA = 1


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] or "_"


class MaskCache:
    def __init__(self, root: Path, dataset: str, segmenter_fingerprint: dict[str, Any]):
        text = json.dumps({"schema": SCHEMA, "segmenter": segmenter_fingerprint}, sort_keys=True, default=str)
        self.key = hashlib.sha256(text.encode()).hexdigest()[:16]
        self.folder = Path(root) / "masks" / self.key / _safe(dataset)
        self.folder.mkdir(parents=True, exist_ok=True)
        about = self.folder.parent / "segmenter.json"
        if not about.exists():  # says what the hashed folder holds, for people browsing the cache
            io.write_bytes_atomic(about, json.dumps({"schema": SCHEMA, "segmenter": segmenter_fingerprint}, indent=1, sort_keys=True, default=str).encode())

    def path(self, image_id: str) -> Path:
        digest = hashlib.sha256(image_id.encode()).hexdigest()[:16]
        return self.folder / f"{_safe(image_id)}-{digest}.npz"

    def load(self, image_id: str, size: tuple[int, int] | None = None) -> np.ndarray | None:
        """Masks bool [N, H, W] for `image_id`, or None when absent, unreadable or of another
        size (`size` is (width, height) of the image being scored)."""
        path = self.path(image_id)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["image_id"]) != image_id:
                    return None
                shape = tuple(int(v) for v in data["shape"])
                masks = np.unpackbits(data["bits"], count=int(np.prod(shape)) if shape[0] else 0).reshape(shape).astype(bool)
        except (OSError, ValueError, KeyError):
            return None  # a damaged entry is recomputed, not trusted
        if size is not None and (shape[2], shape[1]) != tuple(size):
            return None
        return masks

    def save(self, image_id: str, masks: np.ndarray) -> None:
        masks = np.asarray(masks, dtype=bool)
        path = self.path(image_id)
        with io.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, bits=np.packbits(masks.ravel()), shape=np.array(masks.shape, dtype=np.int64),
                                image_id=np.array(image_id))
