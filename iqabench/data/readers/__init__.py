"""Generic readers: a card's `[reader]` table says how to turn a metadata file into the table
every dataset yields (id, path, label, and optionally ref, ref_path, official_set, extras).

Steps, in order, for each record of the metadata file (see sources.py for the formats):
1. `groups` name consecutive runs of records (`group`, `group_index`); `keep` and `exclude` drop rows;
2. each `match` regex runs on a rendered template, its named groups becoming fields;
3. `id`, then `ref`, `official_set` and `extras` are rendered from templates (templates.py);
   the label is the `label` column read as a number;
4. `images` and `refs` turn names into paths found on disk (files.py).
A referenced empty cell, an unknown mapped value or a failed required match is one error line
naming the metadata file and the row.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from iqabench.data.readers.spec import FORMATS, ReaderSpec, parse_reader

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FORMATS", "ReaderSpec", "parse_reader", "read_table"]


def read_table(spec: ReaderSpec, folder: Path) -> "pd.DataFrame":
    """The dataset's table from the metadata in `folder`, as `spec` describes it."""
    from iqabench.data.readers.table import read_table as read  # pandas only when a table is read

    return read(spec, folder)
