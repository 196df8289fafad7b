"""The embedded default dataset, `synthetic`, built offline on first use.

References: the natural photos scikit-image bundles (colour ones, and greyscale ones as
3-channel images) plus the five pristine images pyiqa's wheel ships in `ResultsCalibra/ref_dir`,
each centre-cropped and resized to 256x256. Each reference is degraded by eight KADID-style
distortions at five levels. Labels are pyiqa's FSIM (a full-reference metric that needs no
downloaded weights) of the distorted image against its reference: in [0, 1], higher is better.
The labels therefore measure fidelity to the reference as FSIM sees it, not human opinion.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from iqabench.data.card import DatasetCard
from iqabench.errors import IqaError

SIZE = 256
LEVELS = (1, 2, 3, 4, 5)
BUILD_VERSION = 1
SKIMAGE_COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
SKIMAGE_GREY = ("camera", "coins", "clock", "brick", "grass", "gravel")


def _square(arr: np.ndarray) -> np.ndarray:
    img = Image.fromarray(arr).convert("RGB")
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return np.asarray(img.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BICUBIC))


def reference_images() -> dict[str, np.ndarray]:
    """Name -> 256x256 RGB uint8 array, from packages installed here (no download)."""
    try:
        from skimage import data as skdata
    except ImportError as exc:
        raise IqaError("building `synthetic` needs scikit-image (pip install 'iqabench[classic]')") from exc
    refs = {}
    for name in SKIMAGE_COLOUR + SKIMAGE_GREY:
        refs[f"sk_{name}"] = _square(getattr(skdata, name)())
    for path in sorted(_pyiqa_reference_dir().glob("*.bmp")):
        refs[f"pyiqa_{path.stem}"] = _square(np.asarray(Image.open(path).convert("RGB")))
    return refs


def _pyiqa_reference_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pyiqa")
    if spec is None or not spec.origin:
        raise IqaError("building `synthetic` needs pyiqa (pip install 'iqabench[classic]')")
    folder = Path(spec.origin).parent.parent / "ResultsCalibra" / "ref_dir"
    if not folder.is_dir():
        raise IqaError(f"{folder}: pyiqa's bundled reference images are missing")
    return folder


def build(folder: Path, progress: bool = True) -> None:
    """Write images and labels.csv into `folder`, atomically (a partial build is never used)."""
    import torch
    from tqdm import tqdm

    from iqabench.data.distortions import DISTORTIONS
    from iqabench.models.pyiqa_support import create_metric

    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    fsim = create_metric("fsim", "cpu", ())
    refs = reference_images()
    rows = []
    todo = [(r, d, lv) for r in refs for d in DISTORTIONS for lv in LEVELS]
    for ref_name, dist_name, level in tqdm(todo, desc="building synthetic", disable=not progress, unit="img"):
        ref = refs[ref_name]
        seed = int(hashlib.sha256(f"{ref_name}/{dist_name}/{level}".encode()).hexdigest()[:8], 16)
        out = DISTORTIONS[dist_name](ref, level, np.random.default_rng(seed))
        name = f"{ref_name}__{dist_name}__{level}.png"
        Image.fromarray(out).save(tmp / "images" / name)
        to_t = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1)[None]  # noqa: E731
        with torch.no_grad():
            label = float(fsim(to_t(out), to_t(ref)).flatten()[0])
        rows.append({"dist_img": f"images/{name}", "ref_img": f"refs/{ref_name}.png",
                     "distortion": dist_name, "level": level, "fsim": round(label, 6)})
    (tmp / "refs").mkdir()
    for ref_name, arr in refs.items():
        Image.fromarray(arr).save(tmp / "refs" / f"{ref_name}.png")
    pd.DataFrame(rows).to_csv(tmp / "labels.csv", index=False)
    (tmp / "build.json").write_text(json.dumps({"build_version": BUILD_VERSION, "size": SIZE, "references": len(refs),
                                                "distortions": list(DISTORTIONS), "levels": list(LEVELS),
                                                "label": "pyiqa fsim vs reference"}, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)


def read(folder: Path) -> pd.DataFrame:
    table = pd.read_csv(folder / "labels.csv")
    return pd.DataFrame({
        "id": table["dist_img"].str.removeprefix("images/"),
        "path": table["dist_img"],
        "label": table["fsim"],
        "ref": table["ref_img"].str.removeprefix("refs/"),
        "distortion": table["distortion"],
        "level": table["level"],
    })


CARD = DatasetCard(
    name="synthetic",
    title="iqabench embedded synthetic-distortion set",
    url="built locally from images bundled with scikit-image and pyiqa (no download)",
    folder_names=("synthetic",),
    layout=("labels.csv", "images/", "refs/"),
    read=read,
    label_name="fsim",
    score_range=(0.0, 1.0),
    higher_better=True,
    default_split="byref-ratio60-20-20-seed42",
    synthetic_distortions=True,
    label_scale=1.0,
    notes=("18 references x 8 KADID-style distortions x 5 levels = 720 images, 256x256; labels are pyiqa FSIM "
           "against the reference (0-1, higher better), a full-reference proxy for quality, not human MOS."),
    build=build,
)
