"""LIVE In the Wild Image Quality Challenge database (LIVE Challenge, CLIVE): 1,162 photos."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from iqabench.data.card import DatasetCard
from iqabench.data.formats import mat_numbers, mat_strings, read_mat
from iqabench.errors import IqaError

NAMES = "Data/AllImages_release.mat"
MOS = "Data/AllMOS_release.mat"
# The release lists its 7 practice images first (t1.bmp..t7.bmp, in Images/trainingImages/);
# raters saw them to learn the task, so they are excluded as in every published protocol.
TRAINING_IMAGE = re.compile(r"^t\d+\.bmp$", re.IGNORECASE)


def read(folder: Path) -> pd.DataFrame:
    folder = Path(folder)
    names = mat_strings(read_mat(folder / NAMES, ["AllImages_release"])["AllImages_release"],
                        folder / NAMES, "AllImages_release")
    mos = mat_numbers(read_mat(folder / MOS, ["AllMOS_release"])["AllMOS_release"], folder / MOS, "AllMOS_release")
    if len(names) != len(mos):
        raise IqaError(f"{folder / MOS}: {len(mos)} scores for {len(names)} image names in {folder / NAMES}")
    keep = [i for i, n in enumerate(names) if not TRAINING_IMAGE.match(n)]
    return pd.DataFrame({
        "id": [names[i] for i in keep],
        "path": [f"Images/{names[i]}" for i in keep],
        "label": mos[keep],
    })


CARD = DatasetCard(
    name="livec",
    title="LIVE In the Wild Image Quality Challenge Database",
    url="https://live.ece.utexas.edu/research/ChallengeDB/index.html",
    folder_names=("ChallengeDB_release", "LIVEC", "livec", "LIVE-Challenge", "LIVEChallenge", "CLIVE", "clive"),
    layout=(NAMES, MOS, "Data/AllStdDev_release.mat", "Images/", "Images/trainingImages/"),
    read=read,
    label_name="AllMOS_release",
    score_range=(0.0, 100.0),
    higher_better=True,
    default_split="ratio80-10-10-seed42",
    label_scale=100.0,
    notes=("1,169 names in AllImages_release.mat; the 7 training images t1..t7.bmp (listed first, stored "
           "in Images/trainingImages/) are excluded, leaving 1,162. MOS observed 3.4-92.4 on a 0-100 scale."),
    aliases=("livechallenge", "live-challenge", "clive", "live-itw"),
)
