"""Splits: a stable name, a membership hash, and a file that records both.

Names:
  official                          the dataset's own split (KonIQ's `set` column)
  ratio{TR}-{VA}-{TE}-seed{S}       random per image, percentages summing to 100
  byref-ratio{TR}-{VA}-{TE}-seed{S} random per reference image: no content crosses parts
  all                               every image in `test` (for zero-shot scoring of a whole set)
`ratio80-0-20-seed{1..10}` are the ten random 80/20 splits of the PromptIQA protocol.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from iqabench.errors import IqaError

PARTS = ("train", "val", "test")
_RATIO = re.compile(r"^(?P<byref>byref-)?ratio(?P<tr>\d+)-(?P<va>\d+)-(?P<te>\d+)-seed(?P<seed>\d+)$")


@dataclasses.dataclass(frozen=True)
class Split:
    dataset: str
    name: str
    parts: dict[str, list[str]]

    @property
    def hash(self) -> str:
        return membership_hash(self.parts)

    def ids(self, part: str) -> list[str]:
        if part not in self.parts:
            raise IqaError(f"split {self.name!r} has no part {part!r}; parts: {', '.join(self.parts)}")
        return self.parts[part]

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "name": self.name, "hash": self.hash,
                "sizes": {k: len(v) for k, v in self.parts.items()}, "parts": self.parts}


def membership_hash(parts: dict[str, list[str]]) -> str:
    canonical = {k: sorted(v) for k, v in sorted(parts.items())}
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()[:16]


def make_split(dataset: str, table: pd.DataFrame, name: str) -> Split:
    ids = table["id"].astype(str).tolist()
    if name == "all":
        return Split(dataset, name, {"train": [], "val": [], "test": ids})
    if name == "official":
        if "official_set" not in table.columns:
            raise IqaError(f"{dataset} has no official split; use e.g. ratio80-10-10-seed42")
        parts = {p: table.loc[table["official_set"] == p, "id"].astype(str).tolist() for p in PARTS}
        unknown = set(table["official_set"]) - set(PARTS)
        if unknown:
            raise IqaError(f"{dataset}: official split has unknown part(s) {sorted(unknown)}")
        return Split(dataset, name, parts)
    match = _RATIO.match(name)
    if not match:
        raise IqaError(f"unknown split name {name!r}: use official, all, ratioA-B-C-seedS or byref-ratioA-B-C-seedS")
    fractions = [int(match[k]) for k in ("tr", "va", "te")]
    if sum(fractions) != 100:
        raise IqaError(f"split {name!r}: percentages must sum to 100")
    seed = int(match["seed"])
    if match["byref"]:
        if "ref" not in table.columns or table["ref"].isna().any():
            raise IqaError(f"{dataset} has no reference column: a by-reference split is not possible")
        groups = sorted(table["ref"].astype(str).unique())
        assigned = _assign(groups, fractions, seed)
        part_of = table["ref"].astype(str).map(assigned)
        parts = {p: table.loc[part_of == p, "id"].astype(str).tolist() for p in PARTS}
    else:
        assigned = _assign(sorted(ids), fractions, seed)
        parts = {p: [i for i in ids if assigned[i] == p] for p in PARTS}
    return Split(dataset, name, parts)


def _assign(units: list[str], percent: list[int], seed: int) -> dict[str, str]:
    """Shuffle units with a seeded generator and cut them by the percentages (rounded)."""
    order = np.random.default_rng(seed).permutation(len(units))
    n = len(units)
    n_train = round(n * percent[0] / 100)
    n_val = round(n * percent[1] / 100)
    out = {}
    for rank, idx in enumerate(order):
        out[units[idx]] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return out


def load_or_make(dataset: str, table: pd.DataFrame, name: str, split_dir: Path) -> Split:
    """Make the split, record it under `split_dir`, and refuse if a recorded one differs."""
    split = make_split(dataset, table, name)
    path = Path(split_dir) / dataset / f"{name}.json"
    if path.exists():
        recorded = json.loads(path.read_text())
        if recorded.get("hash") != split.hash:
            raise IqaError(f"{path}: recorded split hash {recorded.get('hash')} differs from {split.hash}: "
                           "the dataset's metadata changed since it was recorded")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two first users never share a temp file
        tmp.write_text(json.dumps(split.to_json()))
        tmp.replace(path)
    return split
