"""A dataset's table as plain columns: what a run reads, without pandas.

Importing pandas costs about 0.3 s of CPU (pandas 3 also imports pyarrow), more than the engine's
whole per-run cost; a run needs only the id, file, label and a few group columns of each image.
The dataset layer therefore reads and validates its tables as lists, one per column, and builds
a DataFrame only for whoever asks for one (`to_frame`: reports, imports, a card's own reader).
A missing cell is None.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Mapping


class Columns:
    """Named columns of equal length, used as a DataFrame is: `table[name]` is the column (a list),
    `len(table)` the number of rows, `name in table` and `table.columns` the column names. Read-only
    by convention: a step that changes a column builds a new Columns (`replace`)."""

    def __init__(self, columns: Mapping[str, list]):
        self._columns = {str(k): list(v) for k, v in columns.items()}
        lengths = {len(v) for v in self._columns.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k} {len(v)}" for k, v in self._columns.items())
            raise ValueError(f"columns of different lengths ({sizes})")
        self._rows = lengths.pop() if lengths else 0

    @classmethod
    def from_frame(cls, frame: Any) -> Columns:
        """A DataFrame's columns, its missing cells (NaN, None, NA) as None."""
        return cls({str(c): [None if is_missing(v) else v for v in frame[c].tolist()] for c in frame.columns})

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({k: [float("nan") if v is None and _numeric(col) else v for v in col]
                             for k, col in self._columns.items()})

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    @property
    def empty(self) -> bool:
        return self._rows == 0

    def replace(self, **columns: list) -> Columns:
        return Columns({**self._columns, **columns})

    def rows(self, n: int) -> Columns:
        """The first n rows."""
        return Columns({k: v[:n] for k, v in self._columns.items()})

    def __getitem__(self, name: str) -> list:
        return self._columns[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return self._rows

    def __contains__(self, name: object) -> bool:
        return name in self._columns


def is_missing(value: Any) -> bool:
    """None, NaN, or pandas' NA and NaT."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    try:
        return bool(value != value)  # NaN-like scalars (numpy, NaT) are not equal to themselves
    except (TypeError, ValueError):  # pandas.NA refuses bool(); arrays are not cells
        return type(value).__name__ in ("NAType", "NaTType")


def _numeric(column: list) -> bool:
    """A column of numbers with gaps becomes a float column with NaN, as pandas reads it."""
    present = [v for v in column if v is not None]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
