"""Helpers shared by the release readers."""
from __future__ import annotations

import math
from pathlib import Path

from iqabench.errors import IqaError


def cell_text(value: object) -> str:
    """A spreadsheet cell as text: image names such as 1600 arrive as numbers (1600.0)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value).strip()


class FileIndex:
    """Files under `folder/subdir`, looked up by name without regard to case.

    Releases made on Windows list names in one case and store them in another (TID2013's
    `I01.BMP` vs `i01`), and some users flatten per-type sub-folders (CSIQ's `dst_imgs/awgn/`).
    The metadata stays the authority: ids and references come from it, only paths from disk."""

    def __init__(self, folder: Path, subdir: str, recursive: bool = False):
        self.subdir = subdir
        self._by_name: dict[str, str] = {}
        base = Path(folder) / subdir
        if base.is_dir():
            files = base.rglob("*") if recursive else base.iterdir()
            for f in sorted(files):
                if f.is_file():
                    self._by_name.setdefault(f.name.lower(), f.relative_to(folder).as_posix())

    def path(self, name: str, expected: str | None = None) -> str:
        """The relative path of `name` as found on disk, else the path the release layout gives."""
        found = self._by_name.get(name.lower())
        if found is not None:
            return found
        return expected if expected is not None else f"{self.subdir}/{name}"


def first_existing(folder: Path, candidates: tuple[str, ...], probe: str) -> str:
    """The first candidate sub-folder (\"\" = the folder itself) holding `probe`, else the first."""
    for candidate in candidates:
        if (Path(folder) / candidate / probe).is_file():
            return candidate
    return candidates[0]


def join(subdir: str, name: str) -> str:
    return f"{subdir}/{name}" if subdir else name


def image_names(values, path: Path, column: str) -> list[str]:
    """Image names from a metadata column; an empty cell is an error naming its row."""
    out = []
    for row, value in enumerate(values, start=1):
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else cell_text(value)
        if not text:
            raise IqaError(f"{path}: empty {column} in data row {row}")
        out.append(text)
    return out
