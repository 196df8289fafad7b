"""Image-score-pair prompts (ISPPs): which pairs, their pixels, and a user's prompt file.

Selection (section 4.4 A of seed 003): "interval" ranks the candidates by score and takes k at
uniform intervals, both extremes included (the paper's default for testing); "random" draws k
with a seeded generator; a fixed list of ids is taken as given. Scores are the engine's targets
(oriented higher-better, in [0, 1]), the space the network was trained in.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path

from iqabench.errors import IqaError, one_line


@dataclasses.dataclass
class Prompt:
    """k image-score pairs: ids (or file names), scores, and the resized uint8 pixels (k, 3, S, S)."""

    ids: list[str]
    scores: list[float]
    pixels: object  # torch.uint8 tensor
    source: str  # "checkpoint" | "engine" | "file"
    selection: str  # "interval" | "random (seed N)" | "fixed list" | a file name

    def describe(self) -> dict:
        digest = hashlib.sha256(self.pixels.numpy().tobytes()).hexdigest()[:16]
        scores = [round(s, 6) for s in self.scores]
        return {"source": self.source, "selection": self.selection, "size": len(self.ids), "ids": self.ids,
                "scores": scores, "pixels_sha256": digest,
                "hash": hashlib.sha256(json.dumps([self.ids, scores, digest]).encode()).hexdigest()[:16]}


def interval(candidates: Sequence[tuple[str, float]], k: int) -> list[tuple[str, float]]:
    """k (id, score) pairs at uniform intervals of the candidates ranked by score, both extremes included."""
    if k > len(candidates):
        raise IqaError(f"prompt_size={k}: only {len(candidates)} labelled images to draw the prompt from")
    ranked = sorted(candidates, key=lambda kv: (kv[1], kv[0]))
    if k == 1:
        return [ranked[len(ranked) // 2]]
    return [ranked[round(i * (len(ranked) - 1) / (k - 1))] for i in range(k)]


def random_ids(ids: Sequence[str], k: int, seed: int) -> list[str]:
    if k > len(ids):
        raise IqaError(f"prompt_size={k}: only {len(ids)} labelled images to draw the prompt from")
    return random.Random(seed).sample(sorted(ids), k)


def check_fixed(ids: Sequence[str], fixed: Sequence[str]) -> list[str]:
    known = set(ids)
    missing = [i for i in fixed if i not in known]
    if missing:
        raise IqaError(f"prompt_ids: {', '.join(missing[:3])} not among the {len(known)} images the prompt is "
                       "drawn from (the train part)")
    return list(fixed)


def resize_pixels(images: Sequence, size: int):
    """PIL images -> uint8 tensor (n, 3, size, size), bicubic resize of the whole image (no crop)."""
    import numpy as np
    import torch
    from PIL import Image

    arrays = [np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC)) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def normalise(pixels):
    """uint8 (n, 3, S, S) -> float in [-1, 1]: x / 255, then mean 0.5 and std 0.5 (the authors' code)."""
    return (pixels.float() / 255.0 - 0.5) / 0.5


def read_prompt_file(path: str | Path, size: int) -> Prompt:
    """A CSV `image,score` (header required): image paths relative to the CSV's folder, scores in
    [0, 1] on the scale to predict (min-max normalise raw MOS first; for a lower-better label, either
    flip it or keep it: the model follows the prompt's direction if it was trained with flipping)."""
    import pandas as pd

    from iqabench.data.images import open_rgb

    path = Path(path).expanduser()
    table = _table(path)
    files = prompt_images(path, table)
    scores = pd.to_numeric(table["score"], errors="coerce")
    bad = table["image"][~scores.between(0.0, 1.0)].tolist()
    if bad:
        raise IqaError(f"prompt_file {path}: score of {bad[0]} is not a number in [0, 1] "
                       "(min-max normalise the labels of the prompt first)")
    images = []
    for name in table["image"].astype(str):
        try:
            images.append(open_rgb(files[name]))
        except Exception as exc:  # noqa: BLE001 - one line naming the image
            raise IqaError(f"prompt_file {path}: image {name}: {one_line(exc, 120)}") from None
    ids = table["image"].astype(str).tolist()
    return Prompt(ids, [float(s) for s in scores], resize_pixels(images, size), "file", path.name)


def _table(path: Path):
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={"image": str}, encoding="utf-8")
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and pandas' parser errors included
        raise IqaError(f"prompt_file {path}: cannot read it as CSV ({one_line(exc, 120)})") from None
    if not {"image", "score"} <= set(table.columns):
        raise IqaError(f"prompt_file {path}: needs the columns image,score (has {', '.join(map(str, table.columns))})")
    if len(table) < 1:
        raise IqaError(f"prompt_file {path}: no rows")
    return table


def prompt_images(path: str | Path, table=None) -> dict[str, Path]:
    """The images a prompt file names (name -> file), each inside the CSV's folder (symlinks resolved)."""
    from iqabench.io import named_by

    path = Path(path).expanduser()
    table = _table(path) if table is None else table
    return {name: named_by(path, name, "image") for name in table["image"].astype(str)}
