"""TID2013: 25 references x 24 distortion types x 5 levels = 3,000 images."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from iqabench.data.card import DatasetCard
from iqabench.data.formats import read_whitespace_table
from iqabench.data.releases._common import FileIndex
from iqabench.errors import IqaError

METADATA = "mos_with_names.txt"
DISTORTED = re.compile(r"^i(?P<ref>\d+)_\d+_\d+\.bmp$", re.IGNORECASE)


def read(folder: Path) -> pd.DataFrame:
    path = Path(folder) / METADATA
    meta = read_whitespace_table(path, columns=("mos", "name"), numeric=("mos",))
    distorted = FileIndex(folder, "distorted_images")
    references = FileIndex(folder, "reference_images")
    refs = []
    for name in meta["name"]:
        match = DISTORTED.match(name)
        if not match:
            raise IqaError(f"{path}: image name {name!r} is not of the form iNN_TT_L.bmp")
        refs.append(f"I{match['ref']}")  # canonical, whatever case the files use on disk
    return pd.DataFrame({
        "id": meta["name"],
        "path": [distorted.path(n) for n in meta["name"]],
        "label": meta["mos"],
        "ref": refs,
        "ref_path": [references.path(f"{r}.BMP") for r in refs],
    })


CARD = DatasetCard(
    name="tid2013",
    title="TID2013 (Tampere image database 2013)",
    url="https://www.ponomarenko.info/tid2013.htm",
    folder_names=("tid2013", "TID2013"),
    layout=(METADATA, "mos_std.txt", "distorted_images/", "reference_images/"),
    read=read,
    label_name="mos",
    score_range=(0.0, 9.0),
    higher_better=True,
    default_split="byref-ratio80-10-10-seed42",
    synthetic_distortions=True,
    label_scale=9.0,
    notes=("MOS from mos_with_names.txt (lines `<mos> <name>`; scale 0-9, observed 0.24-7.21). "
           "File names are matched without regard to case (the release mixes i01_01_1.bmp and I01.BMP). "
           "pyiqa splits 80/20 by reference, seed 123; the default here is 80/10/10 by reference."),
    aliases=("tid-2013",),
)
