"""A dataset card: where a dataset's files are in its official release, and what its labels mean."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

import pandas as pd

from iqabench.errors import IqaError

# The columns every reader returns; `ref` and `official_set` may be absent.
TABLE_COLUMNS = ("id", "path", "label")


@dataclasses.dataclass(frozen=True)
class DatasetCard:
    name: str
    title: str
    url: str  # where the dataset is published
    folder_names: tuple[str, ...]  # folder names tried under the data root
    layout: tuple[str, ...]  # files and folders the official release holds, relative to its folder
    read: Callable[[Path], pd.DataFrame]  # folder -> table with TABLE_COLUMNS (+ ref, official_set)
    label_name: str  # the column the labels come from, as published
    score_range: tuple[float, float]
    higher_better: bool
    default_split: str
    synthetic_distortions: bool = False  # split by reference image by default
    label_scale: float | None = None  # divisor giving labels in [0, 1] for training (seed 000)
    notes: str = ""
    aliases: tuple[str, ...] = ()
    build: Callable[[Path], None] | None = None  # for datasets the project builds itself

    def locate(self, data_root: Path) -> Path | None:
        """The dataset folder under `data_root`, or None when no candidate holds the layout."""
        for folder in self.folder_names:
            candidate = Path(data_root) / folder
            if all((candidate / item).exists() for item in self.required_files()):
                return candidate
        return None

    def required_files(self) -> tuple[str, ...]:
        # The first layout entry is the metadata file; image folders may vary between releases.
        return self.layout[:1]

    def describe_missing(self, data_root: Path) -> str:
        tried = ", ".join(str(Path(data_root) / f) for f in self.folder_names)
        return (f"{self.name}: not found (looked in {tried}); expected layout: "
                f"{'; '.join(self.layout)}; published at {self.url}")

    def load(self, data_root: Path) -> tuple[Path, pd.DataFrame]:
        """Find and read the dataset, validating the table. Raises IqaError naming the file."""
        if self.build is not None and self.locate(data_root) is None:
            self.build(Path(data_root) / self.folder_names[0])
        folder = self.locate(data_root)
        if folder is None:
            raise IqaError(self.describe_missing(data_root))
        try:
            table = self.read(folder)
        except IqaError:
            raise
        except (KeyError, ValueError, UnicodeDecodeError, OSError) as exc:
            raise IqaError(f"{folder / self.layout[0]}: cannot read ({type(exc).__name__}: {exc})") from exc
        return folder, validate_table(table, folder, folder / self.layout[0])


def validate_table(table: pd.DataFrame, folder: Path, source: Path) -> pd.DataFrame:
    """Reject what would corrupt results: missing columns, empty or NaN labels, duplicate ids,
    and paths that leave the dataset folder."""
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise IqaError(f"{source}: missing column(s) {', '.join(missing)}")
    if table.empty:
        raise IqaError(f"{source}: no rows")
    labels = pd.to_numeric(table["label"], errors="coerce")
    bad = table.loc[labels.isna(), "id"].tolist()
    if bad:
        raise IqaError(f"{source}: {len(bad)} row(s) with an empty or non-numeric label, first {bad[0]!r}")
    table = table.assign(label=labels.astype(float), id=table["id"].astype(str))
    dup = table.loc[table["id"].duplicated(), "id"].tolist()
    if dup:
        raise IqaError(f"{source}: duplicate image id(s), first {dup[0]!r} ({len(dup)} in all)")
    # Checked on the text of the paths (".." and absolute paths), not through symlinks: a user may
    # link an image folder to another disk, and that is their choice, not an escape.
    root = os.path.normpath(os.path.abspath(folder))
    for rel in table["path"]:
        full = os.path.normpath(os.path.join(root, str(rel)))
        if full != root and not full.startswith(root.rstrip(os.sep) + os.sep):
            raise IqaError(f"{source}: path {rel!r} escapes the dataset folder {folder}")
    return table.reset_index(drop=True)
