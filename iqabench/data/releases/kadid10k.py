"""KADID-10k: 81 pristine images x 25 distortion types x 5 levels = 10,125 images."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from iqabench.data.card import DatasetCard
from iqabench.data.formats import read_csv
from iqabench.data.releases._common import FileIndex, image_names

METADATA = "dmos.csv"


def read(folder: Path) -> pd.DataFrame:
    path = Path(folder) / METADATA
    meta = read_csv(path, required=("dist_img", "ref_img", "dmos"), dtype={"dist_img": str, "ref_img": str})
    images = FileIndex(folder, "images")
    distorted = image_names(meta["dist_img"], path, "dist_img")
    refs = image_names(meta["ref_img"], path, "ref_img")
    return pd.DataFrame({
        "id": distorted,
        "path": [images.path(n) for n in distorted],
        "label": meta["dmos"],
        "ref": refs,
        "ref_path": [images.path(n) for n in refs],
    })


CARD = DatasetCard(
    name="kadid10k",
    title="KADID-10k (Konstanz artificially distorted image quality database)",
    url="https://database.mmsp-kn.de/kadid-10k-database.html",
    folder_names=("kadid10k", "KADID-10k", "kadid-10k", "KADID10k"),
    layout=(METADATA, "images/"),
    read=read,
    label_name="dmos",
    score_range=(1.0, 5.0),
    higher_better=True,
    default_split="byref-ratio80-10-10-seed42",
    synthetic_distortions=True,
    label_scale=5.0,
    notes=("dmos.csv's `dmos` is a degradation-category mean on 1-5 where 5 means imperceptible: "
           "higher is better despite the name. References live in images/ beside the distorted images "
           "(I01.png ...). The VP paper split 80/10/10 per image (references cross parts); "
           "the default here splits by reference image."),
    aliases=("kadid-10k", "kadid"),
)
