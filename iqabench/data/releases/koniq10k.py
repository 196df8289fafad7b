"""KonIQ-10k: 10,073 in-the-wild images with crowd MOS and an official train/val/test split."""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import pandas as pd

from iqabench.data.card import DatasetCard
from iqabench.data.formats import read_csv
from iqabench.data.releases._common import image_names
from iqabench.errors import IqaError

METADATA = "koniq10k_distributions_sets.csv"
RESOLUTIONS = ("1024x768", "512x384")  # auto prefers the full-size release
OFFICIAL_SETS = {"training": "train", "validation": "val", "test": "test"}


def read(folder: Path, resolution: str = "auto") -> pd.DataFrame:
    """The sets csv with images from `resolution`/ ("auto": the first of 1024x768/, 512x384/
    that exists, else 1024x768/). The choice is recorded in every row's `path`."""
    folder = Path(folder)
    meta = read_csv(folder / METADATA, required=("image_name", "MOS", "set"), dtype={"image_name": str})
    if resolution == "auto":
        resolution = next((r for r in RESOLUTIONS if (folder / r).is_dir()), RESOLUTIONS[0])
    elif resolution not in RESOLUTIONS:
        raise IqaError(f"koniq10k: unknown image resolution {resolution!r}; use {', '.join(RESOLUTIONS)} or auto")
    sets = meta["set"].astype(str).str.strip().str.lower()
    unknown = sorted(set(sets) - set(OFFICIAL_SETS))
    if unknown:
        raise IqaError(f"{folder / METADATA}: unknown value(s) in column set: {', '.join(unknown)} "
                       f"(expected {', '.join(OFFICIAL_SETS)})")
    names = image_names(meta["image_name"], folder / METADATA, "image_name")
    return pd.DataFrame({
        "id": names,
        "path": [f"{resolution}/{n}" for n in names],
        "label": meta["MOS"],
        "official_set": sets.map(OFFICIAL_SETS),
    })


CARD = DatasetCard(
    name="koniq10k",
    title="KonIQ-10k (Konstanz authentic image quality database)",
    url="https://database.mmsp-kn.de/koniq-10k-database.html",
    folder_names=("koniq10k", "koniq-10k", "KonIQ-10k", "KonIQ10k", "koniq"),
    layout=(METADATA, "1024x768/", "512x384/"),
    read=read,
    label_name="MOS",
    score_range=(0.0, 100.0),
    higher_better=True,
    default_split="official",
    label_scale=100.0,
    notes=("Labels: MOS on 0-100 from koniq10k_distributions_sets.csv (the scores_and_distributions csv "
           "holds MOS on 1-5 and MOS_zscore on 0-100 instead). The `set` column gives the official split "
           "training/validation/test = 7,058/1,000/2,015. Images: 1024x768/ when present, else 512x384/ "
           "(the chosen folder is part of every path); the card koniq10k-512x384 forces the half-size "
           "images, as several papers score them."),
    aliases=("koniq-10k", "koniq"),
)

# The same dataset scored on the half-size release; ids (and so splits) are identical.
CARD_512 = dataclasses.replace(
    CARD, name="koniq10k-512x384", read=functools.partial(read, resolution="512x384"),
    layout=(METADATA, "512x384/"), aliases=(),
    title=CARD.title + ", 512x384 images")
