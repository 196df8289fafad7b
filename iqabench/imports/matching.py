"""Matching a published file's image ids to a dataset card's table, and how far the file's own
labels agree with the card's (a file may carry another scale: a 1-5 MOS beside the card's 0-100)."""
from __future__ import annotations

import dataclasses
import posixpath

import numpy as np

from iqabench.data.card import normalise_path


@dataclasses.dataclass
class Matched:
    ids: dict[str, str]  # the file's id as written -> the card's id
    unmatched: list[str]  # the file's ids that name no image of the card
    duplicates: list[str]  # card ids two entries of the file match (the first is kept)


def match_ids(file_ids: list[str], table) -> Matched:
    """Each file id against the card: its id, else its image path, else the file name when only one
    image of the card has it."""
    by_id = {str(i): str(i) for i in table["id"]}
    by_path = {normalise_path(p): str(i) for i, p in zip(table["id"], table["path"])}
    names: dict[str, list[str]] = {}
    for i, p in zip(table["id"], table["path"]):
        names.setdefault(posixpath.basename(normalise_path(p)), []).append(str(i))
    by_name = {name: ids[0] for name, ids in names.items() if len(ids) == 1}
    out, unmatched, taken, dup = {}, [], set(), []
    for raw in file_ids:
        text = normalise_path(raw)
        card_id = by_id.get(raw) or by_id.get(text) or by_path.get(text) or by_name.get(posixpath.basename(text))
        if card_id is None:
            unmatched.append(raw)
        elif card_id in taken:
            dup.append(card_id)
        else:
            taken.add(card_id)
            out[raw] = card_id
    return Matched(out, unmatched, dup)


def discordant_pairs(a: np.ndarray, b: np.ndarray, chunk: int = 256) -> tuple[int, int]:
    """(pairs ordered oppositely by a and b, pairs ordered by both); ties in either are neither."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    discordant = concordant = 0
    for start in range(0, len(a), chunk):
        stop = min(start + chunk, len(a))
        da = np.sign(a[start:stop, None] - a[None, :])
        db = np.sign(b[start:stop, None] - b[None, :])
        prod = da * db
        upper = np.arange(start, stop)[:, None] < np.arange(len(a))[None, :]  # each pair once
        discordant += int(np.count_nonzero((prod < 0) & upper))
        concordant += int(np.count_nonzero((prod > 0) & upper))
    return discordant, concordant


def label_agreement(file_labels: np.ndarray, card_labels: np.ndarray) -> dict:
    """Rank correlation of the file's labels with the card's, and the pairs of images they order
    differently; the two ranges show when the scales differ."""
    from scipy.stats import spearmanr

    n = len(file_labels)
    if n < 3:
        return {"n": n, "srcc": None, "discordant_pairs": None, "pairs": n * (n - 1) // 2}
    rho = spearmanr(file_labels, card_labels)[0]
    discordant, concordant = discordant_pairs(file_labels, card_labels)
    return {"n": n, "srcc": float(rho) if np.isfinite(rho) else None, "discordant_pairs": discordant,
            "concordant_pairs": concordant, "pairs": n * (n - 1) // 2,
            "file_range": [float(np.min(file_labels)), float(np.max(file_labels))],
            "card_range": [float(np.min(card_labels)), float(np.max(card_labels))]}
