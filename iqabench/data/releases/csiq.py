"""CSIQ: 30 references, 866 distorted images (6 distortion types, 4-5 levels), DMOS on 0-1."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from iqabench.data.card import DatasetCard
from iqabench.data.formats import read_xlsx
from iqabench.data.releases._common import FileIndex, cell_text
from iqabench.errors import IqaError

METADATA = "csiq.DMOS.xlsx"
SHEET = "all_by_image"
# dst_type in the workbook -> (folder under dst_imgs/, tag in the file name 1600.AWGN.1.png)
DISTORTIONS = {
    "noise": ("awgn", "AWGN"),
    "jpeg": ("jpeg", "JPEG"),
    "jpeg 2000": ("jpeg2000", "jpeg2000"),
    "fnoise": ("fnoise", "fnoise"),
    "blur": ("blur", "BLUR"),
    "contrast": ("contrast", "contrast"),
}
# Spellings seen in copies of the workbook that were re-typed or converted to csv.
KIND_ALIASES = {"awgn": "noise", "jpeg2000": "jpeg 2000", "jp2k": "jpeg 2000", "1/f noise": "fnoise"}


def read(folder: Path) -> pd.DataFrame:
    path = Path(folder) / METADATA
    meta = read_xlsx(path, required=("image", "dst_type", "dst_lev", "dmos"), sheet=SHEET)
    distorted = FileIndex(folder, "dst_imgs", recursive=True)  # per-type folders, or flattened
    references = FileIndex(folder, "src_imgs")
    rows = []
    for image, kind, level, dmos in meta[["image", "dst_type", "dst_lev", "dmos"]].itertuples(index=False):
        image, kind, level = cell_text(image), cell_text(kind).lower(), cell_text(level)
        kind = KIND_ALIASES.get(kind, kind)
        if kind not in DISTORTIONS:
            raise IqaError(f"{path}: unknown dst_type {kind!r} for image {image!r}; "
                           f"known: {', '.join(DISTORTIONS)}")
        subdir, tag = DISTORTIONS[kind]
        name = f"{image}.{tag}.{level}.png"
        rows.append((name, distorted.path(name, f"dst_imgs/{subdir}/{name}"), dmos, image,
                     references.path(f"{image}.png")))
    return pd.DataFrame(rows, columns=["id", "path", "label", "ref", "ref_path"])


CARD = DatasetCard(
    name="csiq",
    title="CSIQ (categorical subjective image quality database)",
    url="https://s2.smu.edu/~eclarson/csiq.html",
    folder_names=("CSIQ", "csiq"),
    layout=(METADATA, "dst_imgs/<type>/<image>.<TYPE>.<level>.png", "src_imgs/<image>.png"),
    read=read,
    label_name="dmos",
    score_range=(0.0, 1.0),
    higher_better=False,
    default_split="byref-ratio80-10-10-seed42",
    synthetic_distortions=True,
    label_scale=1.0,
    notes=("DMOS from csiq.DMOS.xlsx, sheet all_by_image (the table starts below/right of A1; the header "
           "row is found by its column names). Lower is better. Distorted files are found by name "
           "anywhere under dst_imgs/, without regard to case."),
)
