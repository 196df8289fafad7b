"""The segmenter layer: automatic masks for an image, from SAM2.

Two backends, one option set (SAM2's automatic-mask-generator settings, SAM2's defaults):
- `transformers` (default): transformers-format weights (`facebook/sam2-hiera-large-hf`,
  `facebook/sam2.1-hiera-*`, or a local folder), driven by `sam2_amg.Sam2AutoMaskGenerator`.
- `sam2-package`: the PyPI `sam2` package with an original `.pt` checkpoint and its config,
  for users who hold those; imported only when chosen.

`Segmenter.segment(image)` returns bool masks [N, H, W] at the image's resolution;
`fingerprint()` names everything that changes the masks (the mask cache key uses it).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pydantic

if TYPE_CHECKING:  # numpy is imported where arrays are made, not on import
    import numpy as np

from iqabench import hub
from iqabench.api import stable_hash
from iqabench.errors import IqaError, NotAvailable
from iqabench.io import sha256_file
from iqabench.models.backend import Dtype, resolve_dtype

# Plain ids users know -> repos holding transformers-format weights. SAM 2.1 repos carry
# transformers weights themselves; SAM 2.0 ones hold only .pt files, their -hf twins the rest.
_HF_REPOS = {
    **{f"facebook/sam2-hiera-{size}": f"facebook/sam2-hiera-{size}-hf" for size in ("tiny", "small", "base-plus", "large")},
    **{f"facebook/sam2.1-hiera-{size}": f"facebook/sam2.1-hiera-{size}" for size in ("tiny", "small", "base-plus", "large")},
}
_SHORT = {"t": "tiny", "s": "small", "b+": "base-plus", "l": "large"}


def resolve_model_id(name: str) -> str:
    """Map `facebook/sam2-hiera-large`, `sam2-hiera-large`, `sam2.1_hiera_l`, ... to a
    transformers-format repo; local folders and unknown ids pass through unchanged."""
    if Path(name).expanduser().exists():
        return name
    key = name if name.startswith("facebook/") else f"facebook/{name}"
    key = key.replace("_", "-")
    for short, size in _SHORT.items():
        if key.endswith(f"-hiera-{short}"):
            key = key[: -len(short)] + size
    if key.endswith("-hf") and key[:-3] in _HF_REPOS:
        return key
    return _HF_REPOS.get(key, name)


class SegmenterOptions(pydantic.BaseModel):
    """SAM2 automatic-mask-generator settings (defaults are SAM2's) and the model to use."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    backend: Literal["transformers", "sam2-package"] = "transformers"
    model: str = "facebook/sam2-hiera-large"  # hub id or folder (transformers backend)
    revision: str | None = None
    checkpoint: str | None = None  # .pt file (sam2-package backend)
    config: str | None = None  # sam2 config name, e.g. configs/sam2.1/sam2.1_hiera_l.yaml (sam2-package)
    dtype: Dtype = "float32"
    max_side: int | None = pydantic.Field(None, gt=0)  # segment a copy whose longer side is at most this; masks are upscaled back

    points_per_side: int = pydantic.Field(32, ge=1)
    points_per_batch: int = pydantic.Field(64, ge=1)
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = pydantic.Field(0, ge=0)
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = pydantic.Field(1, ge=1)
    min_mask_region_area: int = pydantic.Field(0, ge=0)
    use_m2m: bool = False  # sam2-package only: one refinement step with the previous mask
    multimask_output: bool = True

    @pydantic.field_validator("config")
    @classmethod
    def _packaged_config(cls, value: str | None) -> str | None:
        # hydra instantiates the classes a config names: only the sam2 package's own configs
        if value is not None and (value.startswith(("/", "~", "\\")) or ".." in Path(value).parts
                                  or not value.endswith(".yaml")):
            raise ValueError(f"{value!r}: give the name of a config shipped in the sam2 package, "
                             "e.g. configs/sam2.1/sam2.1_hiera_l.yaml (no absolute path, no '..')")
        return value

    def amg_settings(self) -> dict[str, Any]:
        return self.model_dump(exclude={"backend", "model", "revision", "checkpoint", "config", "dtype", "max_side"})


class Segmenter:
    """Automatic masks for RGB images."""

    def __init__(self, options: SegmenterOptions, device: str = "cpu"):
        self.options = options
        self.device = device
        self._identity = self._model_identity()
        self._generator: Any = None  # loaded on the first segment(): a fully cached run never loads SAM2

    def _model_identity(self) -> dict[str, Any]:
        """Which weights, computed without loading them (the mask cache key needs it first)."""
        o = self.options
        if o.backend == "sam2-package":
            if not o.checkpoint or not o.config:
                raise IqaError("segmenter backend sam2-package needs both checkpoint (a .pt file) and config (e.g. configs/sam2.1/sam2.1_hiera_l.yaml)")
            ckpt = Path(o.checkpoint).expanduser()
            if not ckpt.is_file():
                raise NotAvailable(f"segmenter checkpoint {ckpt}: file not found")
            return {"backend": "sam2-package", "config": o.config, "checkpoint_sha": sha256_file(ckpt)}
        if o.use_m2m:
            raise IqaError("segmenter option use_m2m: supported with backend=sam2-package only")
        path = resolve_model_id(o.model)
        identity: dict[str, Any] = {"backend": "transformers", "model": path, "revision": o.revision}
        local = Path(path).expanduser()
        if local.is_dir():
            # A local folder's name says nothing about its weights: hash what is in it.
            identity["weights"] = _folder_digest(local)
        return identity

    def _load(self) -> None:
        if self.options.backend == "transformers":
            self._load_transformers()
        else:
            self._load_sam2_package()

    def _torch_dtype(self):
        return resolve_dtype(self.options.dtype, self.device)

    def _load_transformers(self) -> None:
        from transformers import Sam2Model, Sam2Processor

        from iqabench.models.sam2_amg import AmgSettings, Sam2AutoMaskGenerator

        o = self.options
        path = self._identity["model"]
        try:
            local = hub.offline()
            model = Sam2Model.from_pretrained(path, revision=o.revision, dtype=self._torch_dtype(), local_files_only=local)
            processor = Sam2Processor.from_pretrained(path, revision=o.revision, local_files_only=local)
        except OSError as exc:
            raise NotAvailable(f"segmenter model {o.model!r} (-> {path}): cannot load transformers SAM2 weights ({exc})") from exc
        except Exception as exc:  # noqa: BLE001 - a pickled .bin (read weights_only) or a file that is not weights
            from iqabench.models.safe_load import why_refused

            raise IqaError(f"segmenter model {o.model!r} (-> {path}): refused or unreadable weights "
                           f"({why_refused(exc)})") from None
        model = model.to(self.device).eval()
        settings = AmgSettings(**{k: v for k, v in o.amg_settings().items() if k != "use_m2m"})
        self._generator = Sam2AutoMaskGenerator(model, processor, settings, self.device)

    def _load_sam2_package(self) -> None:
        from iqabench.models.safe_load import load_tensors_only

        o = self.options
        try:
            from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
            from sam2.build_sam import build_sam2
        except ImportError as exc:
            raise NotAvailable(
                "segmenter backend sam2-package: the PyPI package `sam2` is not installed "
                "(SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2, or pip install 'iqabench[sam2]')"
            ) from exc
        # the sam2 package reads the file itself: check first that it is plain tensors, never a pickle
        load_tensors_only(Path(o.checkpoint).expanduser(), mmap=True)
        model = build_sam2(o.config, str(Path(o.checkpoint).expanduser()), device=self.device)
        self._generator = SAM2AutomaticMaskGenerator(model, output_mode="binary_mask", **o.amg_settings())

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the masks: model identity and every generator setting."""
        o = self.options
        return {**self._identity, "dtype": o.dtype, "max_side": o.max_side, "settings": o.amg_settings()}

    def fingerprint_hash(self) -> str:
        return stable_hash(self.fingerprint(), 16)

    def segment(self, image: Any) -> np.ndarray:
        """RGB PIL image or uint8 array [H, W, 3] -> bool masks [N, H, W]."""
        import numpy as np
        from PIL import Image

        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
        pil = pil.convert("RGB")
        width, height = pil.size
        small = pil
        o = self.options
        if o.max_side and max(width, height) > o.max_side:
            scale = o.max_side / max(width, height)
            small = pil.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BICUBIC)
        array = np.asarray(small, dtype=np.uint8)
        if self._generator is None:
            self._load()
        if o.backend == "transformers":
            masks = self._generator.generate(array).masks
        else:
            records = self._generator.generate(array)
            masks = np.stack([r["segmentation"] for r in records]) if records else np.zeros((0, *array.shape[:2]), bool)
        if small is not pil:
            masks = np.stack([np.asarray(Image.fromarray(m).resize((width, height), Image.NEAREST)) for m in masks]) if len(masks) else np.zeros((0, height, width), bool)
        return masks.astype(bool)


def _folder_digest(folder: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(folder.glob("*")):
        if f.is_file() and f.suffix in (".json", ".safetensors"):
            h.update(f.name.encode())
            h.update(sha256_file(f).encode())
    return h.hexdigest()[:16]
