"""Writing a run's records as a csv file (predictions.csv), byte for byte as pandas' to_csv wrote it.

A run used to build a DataFrame only to write this file, and importing pandas costs more CPU than
the engine spends on a 100-image run. The file's format is kept exactly (tests/test_table_csv.py
compares it with pandas on random records): a column's values are written as the DataFrame column
pandas infers from them would be. Records hold JSON values (text, numbers, booleans, null, lists).
"""
from __future__ import annotations

import csv
import math
from typing import Any, Iterable, TextIO


def write_records_csv(out: TextIO, rows: list[dict], first: Iterable[str], lineterminator: str = "\n") -> None:
    """`rows` as csv: the `first` columns, then every other key in the order it first appears;
    a missing key or null is an empty cell."""
    first = list(first)
    names = list(first)
    seen = set(names)
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                names.append(key)
    columns = [_cells([row.get(name) for row in rows]) for name in names]
    writer = csv.writer(out, lineterminator=lineterminator)
    writer.writerow(names)
    writer.writerows(zip(*columns))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cells(values: list) -> list:
    """One column's cells, as pandas writes the column it infers: numbers with a gap or a fraction
    are floats (3 -> 3.0), whole numbers without a gap stay whole, anything mixed is written value by value."""
    present = [v for v in values if not _missing(v)]
    numbers = bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if numbers and (len(present) < len(values) or any(isinstance(v, float) for v in present)):
        return ["" if _missing(v) else repr(float(v)) for v in values]
    return ["" if _missing(v) else v for v in values]
