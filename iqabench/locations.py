"""Where the data-only folders that ship with iqabench are: `datasets/` (dataset cards and committed
split files) and `suites/` (paper tables).

In a wheel they are installed as package data inside the iqabench package; in a source checkout
(editable install) they are the top-level folders beside `iqabench/`.
"""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_folder(name: str) -> Path:
    """The folder `name` ("datasets" or "suites") as installed, else as checked out."""
    installed = _PACKAGE / name
    if installed.is_dir():
        return installed
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / name).is_dir():
        return checkout / name
    return installed  # absent: callers treat it as empty
