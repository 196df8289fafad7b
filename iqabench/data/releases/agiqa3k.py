"""AGIQA-3k: 2,982 images from six text-to-image generators, with quality and alignment MOS."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from iqabench.data.card import DatasetCard
from iqabench.data.formats import read_csv
from iqabench.data.releases._common import first_existing, join, image_names

METADATA = "data.csv"
# Where the images may sit relative to data.csv: the release puts them beside it, some mirrors
# in a sub-folder. The first that holds the first listed image wins (recorded in every path).
IMAGE_FOLDERS = ("", "images", "AGIQA-3K", "AGIQA-3k")


def read(folder: Path) -> pd.DataFrame:
    path = Path(folder) / METADATA
    meta = read_csv(path, required=("name", "mos_quality"), dtype={"name": str})
    names = image_names(meta["name"], path, "name")
    subdir = first_existing(folder, IMAGE_FOLDERS, names[0]) if names else ""
    return pd.DataFrame({
        "id": names,
        "path": [join(subdir, n) for n in names],
        "label": meta["mos_quality"],
    })


CARD = DatasetCard(
    name="agiqa3k",
    title="AGIQA-3k (AI-generated image quality assessment database)",
    url="https://github.com/lcysyzxdxc/AGIQA-3k-Database",
    folder_names=("AGIQA-3K", "AGIQA-3k", "agiqa3k", "agiqa-3k", "AGIQA-3k-Database"),
    layout=(METADATA, "<name>.jpg|.png beside data.csv (or in images/)"),
    read=read,
    label_name="mos_quality",
    score_range=(0.0, 5.0),
    higher_better=True,
    default_split="ratio60-20-20-seed42",
    label_scale=5.0,
    notes=("Labels: perceptual quality MOS `mos_quality` (observed 0-4.49); the text-alignment MOS "
           "`mos_align` is not used. Default split 60/20/20 random per image as in the VP paper: "
           "1,789/596/597 images."),
    aliases=("agiqa-3k", "agiqa"),
)
