"""LIVE Image Quality Assessment Database, Release 2: 29 references, 779 distorted images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from iqabench.data.card import DatasetCard
from iqabench.data.formats import mat_numbers, mat_strings, read_mat
from iqabench.errors import IqaError

METADATA = "dmos.mat"
REFNAMES = "refnames_all.mat"
# dmos.mat lists the five distortion folders in this order, each as img1.bmp..imgN.bmp.
FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))
TOTAL = sum(n for _, n in FOLDERS)  # 982, references included


def image_paths() -> list[str]:
    """Relative paths of the 982 entries of dmos.mat, in order."""
    return [f"{folder}/img{k}.bmp" for folder, count in FOLDERS for k in range(1, count + 1)]


def read(folder: Path) -> pd.DataFrame:
    folder = Path(folder)
    scores = read_mat(folder / METADATA, ["dmos", "orgs"])
    dmos = mat_numbers(scores["dmos"], folder / METADATA, "dmos")
    orgs = mat_numbers(scores["orgs"], folder / METADATA, "orgs")
    refs = mat_strings(read_mat(folder / REFNAMES, ["refnames_all"])["refnames_all"],
                       folder / REFNAMES, "refnames_all")
    for what, values in (("dmos", dmos), ("orgs", orgs)):
        if len(values) != TOTAL:
            raise IqaError(f"{folder / METADATA}: {what} has {len(values)} entries, expected {TOTAL} "
                           "(jp2k 227, jpeg 233, wn 174, gblur 174, fastfading 174)")
    if len(refs) != TOTAL:
        raise IqaError(f"{folder / REFNAMES}: refnames_all has {len(refs)} entries, expected {TOTAL}")
    paths = image_paths()
    keep = np.flatnonzero(orgs == 0)  # orgs == 1 marks a reference shown as a distorted image
    return pd.DataFrame({
        "id": [paths[i] for i in keep],  # img1.bmp repeats across folders: the id is the path
        "path": [paths[i] for i in keep],
        "label": dmos[keep],
        "ref": [refs[i] for i in keep],
        "ref_path": [f"refimgs/{refs[i]}" for i in keep],
    })


CARD = DatasetCard(
    name="live",
    title="LIVE Image Quality Assessment Database, Release 2",
    url="https://live.ece.utexas.edu/research/quality/subjective.htm",
    folder_names=("databaserelease2", "LIVE", "live", "LIVE_R2", "live_r2", "LIVEIQA", "liveiqa"),
    layout=(METADATA, REFNAMES, "jp2k/", "jpeg/", "wn/", "gblur/", "fastfading/", "refimgs/"),
    read=read,
    label_name="dmos",
    score_range=(0.0, 100.0),
    higher_better=False,
    default_split="byref-ratio80-10-10-seed42",
    synthetic_distortions=True,
    label_scale=100.0,
    notes=("DMOS from dmos.mat (not the realigned dmos_realigned.mat); lower is better. The 982 entries "
           "run jp2k 227, jpeg 233, wn 174, gblur 174, fastfading 174, each folder img1.bmp..imgN.bmp; "
           "the 203 with orgs == 1 are references and are excluded, leaving 779. References come from "
           "refnames_all.mat (files in refimgs/)."),
    aliases=("live-iqa", "liveiqa", "live-r2", "live2"),
)
