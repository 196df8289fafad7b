"""SPAQ: 11,125 smartphone photos with MOS and image attribute scores."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from iqabench.data.card import DatasetCard
from iqabench.data.formats import read_xlsx
from iqabench.data.releases._common import image_names

METADATA = "Annotations/MOS and Image attribute scores.xlsx"


def read(folder: Path) -> pd.DataFrame:
    path = Path(folder) / METADATA
    meta = read_xlsx(path, required=("Image name", "MOS"))
    names = image_names(meta["Image name"], path, "Image name")
    return pd.DataFrame({"id": names, "path": [f"TestImage/{n}" for n in names], "label": meta["MOS"].to_numpy()})


CARD = DatasetCard(
    name="spaq",
    title="SPAQ (smartphone photography attribute and quality database)",
    url="https://github.com/h4nwei/SPAQ",
    folder_names=("SPAQ", "spaq", "SPAQ zip"),
    layout=(METADATA, "TestImage/"),
    read=read,
    label_name="MOS",
    score_range=(0.0, 100.0),
    higher_better=True,
    default_split="ratio80-10-10-seed42",
    label_scale=100.0,
    notes=("Labels: `MOS` from the Annotations workbook (needs openpyxl); the attribute columns are not "
           "used. Images are full-size phone photos; pyiqa and PromptIQA resize the shorter side to "
           "448/512 before scoring, which is the method's business, not the card's."),
)
