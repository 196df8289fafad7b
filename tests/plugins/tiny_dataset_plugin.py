"""A dataset plugin used by the tests: registers `tiny` (36 images, built from scikit-image photos)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from iqabench import registry
from iqabench.data.card import DatasetCard

TINY_LEVELS = (1, 3, 5)
TINY_DISTORTIONS = ("gaussian_blur", "white_noise", "jpeg", "contrast_decrease")


def build_tiny(folder: Path, size: int = 64) -> None:
    """3 references x 4 distortions x 3 levels of 64x64 images; label = 6 - level (+ small offsets)."""
    from skimage import data as skdata

    from iqabench.builders.distortions import DISTORTIONS

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    rows = []
    for r, name in enumerate(("astronaut", "chelsea", "coffee")):
        ref = np.asarray(Image.fromarray(getattr(skdata, name)()).convert("RGB").resize((size, size), Image.BICUBIC))
        Image.fromarray(ref).save(folder / "refs" / f"{name}.png")  # full-reference methods read these
        for d, dist in enumerate(TINY_DISTORTIONS):
            for level in TINY_LEVELS:
                out = DISTORTIONS[dist](ref, level, np.random.default_rng(100 * r + 10 * d + level))
                fname = f"{name}_{dist}_{level}.png"
                Image.fromarray(out).save(folder / "images" / fname)
                rows.append({"image": fname, "ref": name, "mos": 6.0 - level + 0.1 * r + 0.05 * d})
    pd.DataFrame(rows).to_csv(folder / "mos.csv", index=False)


# A card built in code, as a plugin may: the generic csv reader, and a builder function.
TINY_CARD = DatasetCard(
    name="tiny", title="test-only tiny set", url="built by the tests", folder_names=("tiny",),
    layout=("mos.csv", "images/"), label_name="mos", score_range=(0.0, 6.0),
    higher_better=True, default_split="byref-ratio34-33-33-seed0", synthetic_distortions=True,
    reader={"format": "csv", "id": "{image}", "ref": "{ref}", "images": {"folders": ["images"]},
            "refs": {"name": "refs/{ref}.png"}},
    builder=build_tiny,
)
if "tiny" not in registry.datasets.names():
    registry.register_dataset(TINY_CARD)
