"""Raw records from a metadata file, one reader per `format`: columns of cells, each row with a
label for messages ("data row 3", "line 7", "entry 12") and each column with the file it came from."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from iqabench.data import formats
from iqabench.data.columns import Columns
from iqabench.data.readers.spec import ReaderSpec
from iqabench.errors import IqaError


@dataclasses.dataclass
class Records:
    table: Columns  # raw cells, as read
    row_names: list[str]  # per row, for messages
    file_of: dict[str, Path]  # column -> the file it came from


def read_records(spec: ReaderSpec, folder: Path) -> Records:
    return _READERS[spec.format](spec, Path(folder))


def _csv(spec: ReaderSpec, folder: Path) -> Records:
    path = folder / spec.file
    # Everything as text: names such as 0001.png or 1e3.jpg must not turn into numbers; only the
    # empty cell is missing (pandas would also read "NA" or "null" as missing).
    table = _drop_trailing_empty_rows(formats.read_csv_cells(path, required=spec.columns_needed()))
    return Records(table, [f"data row {i}" for i in range(1, len(table) + 1)], _all_from(table, path))


def _drop_trailing_empty_rows(table: Columns) -> Columns:
    """Rows of empty cells at the end (`,,,,` lines Excel writes when exporting) are not data.
    Empty rows before the last filled one stay, and fail later as rows without an image name."""
    end = len(table)
    while end > 0 and all(formats.cell_text(table[c][end - 1]) == "" for c in table.columns):
        end -= 1
    return table.rows(end)


def _xlsx(spec: ReaderSpec, folder: Path) -> Records:
    path = folder / spec.file
    table = Columns.from_frame(formats.read_xlsx(path, required=spec.columns_needed(), sheet=spec.sheet))
    return Records(table, [f"data row {i}" for i in range(1, len(table) + 1)], _all_from(table, path))


def _text(spec: ReaderSpec, folder: Path) -> Records:
    path = folder / spec.file
    table, lines = formats.read_whitespace_records(path, spec.columns)
    return Records(table, [f"line {n}" for n in lines], _all_from(table, path))


def _mat(spec: ReaderSpec, folder: Path) -> Records:
    by_file: dict[str, list[str]] = {}
    for variable, file in spec.variables.items():
        by_file.setdefault(file, []).append(variable)
    columns: dict[str, list] = {}
    file_of: dict[str, Path] = {}
    for file, variables in by_file.items():
        path = folder / file
        content = formats.read_mat(path, variables)
        for v in variables:
            file_of[v] = path
            columns[v] = (formats.mat_strings(content[v], path, v) if v in spec.text
                          else list(formats.mat_numbers(content[v], path, v)))
    expected = sum(n for _, n in spec.groups) if spec.groups else None
    first = next(iter(spec.variables))
    for v, values in columns.items():
        if expected is not None and len(values) != expected:
            groups = ", ".join(f"{g} {n}" for g, n in spec.groups)
            raise IqaError(f"{file_of[v]}: {v} has {len(values)} entries, expected {expected} ({groups})")
        if len(values) != len(columns[first]):
            raise IqaError(f"{file_of[v]}: {v} has {len(values)} entries, but {first} in "
                           f"{file_of[first]} has {len(columns[first])}")
    table = Columns(columns)
    return Records(table, [f"entry {i}" for i in range(1, len(table) + 1)], file_of)


def _all_from(table: Columns, path: Path) -> dict[str, Path]:
    return {str(c): path for c in table.columns}


_READERS = {"csv": _csv, "xlsx": _xlsx, "text": _text, "mat": _mat}
