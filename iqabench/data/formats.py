"""Small readers for the file formats dataset releases ship their scores in.

Each reader raises IqaError naming the file and the problem (missing file, wrong encoding,
missing columns or variables listed). The generic readers (iqabench.data.readers) build on them.

Encoding policy for text files: UTF-8 (a leading byte-order mark is accepted). Anything else is
refused rather than guessed: decoding with the wrong code page silently changes image names,
and a changed name is a missing image later. The error says how to fix the file.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from iqabench.data.columns import Columns
from iqabench.errors import IqaError, one_line

if TYPE_CHECKING:  # pandas is imported by the readers that need it: a plain csv file is read without it
    import pandas as pd

HEADER_SEARCH_ROWS = 20  # spreadsheets sometimes start their table below a title


def read_csv(path: Path, required: Iterable[str] = (), **kwargs) -> pd.DataFrame:
    """A UTF-8 csv file as a DataFrame; `required` columns must be present."""
    import pandas as pd

    path = _existing(path)
    try:
        table = pd.read_csv(path, encoding="utf-8-sig", **kwargs)
    except UnicodeDecodeError as exc:
        raise IqaError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                       "re-save the file as UTF-8") from exc
    except pd.errors.EmptyDataError as exc:
        raise IqaError(f"{path}: empty file") from exc
    except pd.errors.ParserError as exc:
        raise IqaError(f"{path}: not a valid csv file ({one_line(exc)})") from exc
    table.columns = [str(c).strip() for c in table.columns]
    return require_columns(table, required, path)


def read_csv_cells(path: Path, required: Iterable[str] = ()) -> Columns:
    """Every cell of a UTF-8 csv file as text, an empty cell as None; `required` columns must be
    present. As pandas reads it with dtype=str, keep_default_na=False, na_values=[""] (`read_csv`),
    which stays the reference: a plain file is split here, without importing pandas, and any file
    with something pandas decides (quotes, blank lines, rows narrower or wider than the header,
    header names missing or repeated) is read by pandas itself."""
    path = _existing(path)
    text = _utf8_text(path)
    table = plain_csv_cells(text)
    if table is None:
        table = Columns.from_frame(read_csv(path, dtype=str, keep_default_na=False, na_values=[""]))
    return require_columns(table, required, path)


def plain_csv_cells(text: str) -> Columns | None:
    """The cells of csv text with nothing for a parser to decide, or None for any other text."""
    if '"' in text or "\x00" in text or "\r" in text.replace("\r\n", ""):
        return None
    lines = text.split("\n")
    if lines[-1] == "":  # the final line break
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if not lines or any(not line.strip() for line in lines):
        return None
    names = [name.strip() for name in lines[0].split(",")]
    if any(not name for name in names) or len(set(names)) != len(names):
        return None
    rows = [line.split(",") for line in lines[1:]]
    if any(len(row) != len(names) for row in rows):
        return None
    return Columns({name: [row[k] if row[k] != "" else None for row in rows] for k, name in enumerate(names)})


def read_xlsx(path: Path, required: Sequence[str], sheet: str | int = 0) -> pd.DataFrame:
    """One sheet of an Excel workbook; the header is the first row holding every `required` column
    (leading empty rows and columns are dropped, as some releases start their table at B2)."""
    import pandas as pd

    path = _existing(path)
    try:
        import openpyxl  # noqa: F401  (pandas needs it for xlsx; say so plainly if absent)
    except ImportError as exc:
        raise IqaError(f"{path}: reading .xlsx needs openpyxl (pip install openpyxl)") from exc
    from zipfile import BadZipFile

    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = pd.ExcelFile(path, engine="openpyxl")
    except (BadZipFile, InvalidFileException, ValueError, OSError, KeyError) as exc:
        raise IqaError(f"{path}: not a readable .xlsx workbook ({one_line(exc)})") from exc
    with workbook:
        if isinstance(sheet, str) and sheet not in workbook.sheet_names:
            raise IqaError(f"{path}: no sheet {sheet!r}; sheets: {', '.join(workbook.sheet_names)}")
        raw = pd.read_excel(workbook, sheet_name=sheet, header=None)
    raw = raw.dropna(how="all").dropna(axis=1, how="all")
    wanted = set(required)
    for pos in range(min(HEADER_SEARCH_ROWS, len(raw))):
        cells = [str(v).strip() for v in raw.iloc[pos]]
        if wanted <= set(cells):
            table = raw.iloc[pos + 1:].copy()
            table.columns = cells
            return table.reset_index(drop=True)
    first = [str(v).strip() for v in raw.iloc[0]] if len(raw) else []
    missing = sorted(wanted - set(first))
    raise IqaError(f"{path}: sheet {sheet!r} has no header row with column(s) {', '.join(missing)} "
                   f"(first row: {', '.join(first) or 'none'})")


def read_mat(path: Path, variables: Sequence[str]) -> dict[str, np.ndarray]:
    """Named variables of a MATLAB .mat file (formats v4 to v7).

    v7.3 files are HDF5 containers that scipy cannot read; they are refused with the fix
    (re-save with `save(..., '-v7')`) rather than read through an extra dependency."""
    path = _existing(path)
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        content = loadmat(path, variable_names=list(variables))
    except NotImplementedError as exc:  # scipy's answer to v7.3 (HDF5) files
        raise IqaError(f"{path}: MATLAB v7.3 (HDF5) file, which is not supported; "
                       "re-save it in MATLAB with save(file, '-v7')") from exc
    except (MatReadError, ValueError, OSError, TypeError) as exc:
        raise IqaError(f"{path}: not a readable .mat file ({one_line(exc)})") from exc
    missing = [v for v in variables if v not in content]
    if missing:
        try:
            from scipy.io import whosmat
            present = [name for name, _, _ in whosmat(path)]
        except (MatReadError, ValueError, OSError):
            present = []
        raise IqaError(f"{path}: missing variable(s) {', '.join(missing)}; "
                       f"the file holds {', '.join(present) or 'none'}")
    return {v: content[v] for v in variables}


def mat_strings(array: np.ndarray, path: Path, variable: str) -> list[str]:
    """A MATLAB cell array of strings (any shape) as a flat list, in MATLAB's column order."""
    out = []
    for cell in np.asarray(array, dtype=object).ravel(order="F"):
        value = cell
        while isinstance(value, np.ndarray):  # cells arrive as nested 1x1 arrays
            if value.size != 1:
                break
            value = value.ravel()[0]
        if isinstance(value, np.ndarray) or not isinstance(value, str):
            raise IqaError(f"{path}: variable {variable!r} is not a cell array of strings")
        out.append(value.strip())
    return out


def mat_numbers(array: np.ndarray, path: Path, variable: str) -> np.ndarray:
    """A MATLAB numeric vector (row or column) as a flat float array."""
    arr = np.asarray(array)
    if arr.dtype.kind not in "biuf" or (arr.ndim == 2 and min(arr.shape) > 1):
        raise IqaError(f"{path}: variable {variable!r} is not a numeric vector (shape {arr.shape}, {arr.dtype})")
    return arr.astype(float).ravel(order="F")


def read_whitespace_table(path: Path, columns: Sequence[str], numeric: Sequence[str] = ()) -> pd.DataFrame:
    """A text file with one record per line, fields separated by spaces or tabs (e.g. TID2013's
    `mos_with_names.txt`: `5.51429 i01_01_1.bmp`). Blank lines are skipped."""
    import pandas as pd

    records, lines = read_whitespace_records(path, columns)
    table = records.to_frame()
    for column in numeric:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna()
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0])
            raise IqaError(f"{path}: {column} {table[column].iloc[first]!r} is not a number "
                           f"(line {lines[first]})")
        table[column] = values
    return table


def read_whitespace_records(path: Path, columns: Sequence[str]) -> tuple[Columns, list[int]]:
    """As read_whitespace_table, all fields as text, plus the line number of every record."""
    path = _existing(path)
    text = _utf8_text(path)
    rows, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(columns):
            raise IqaError(f"{path}: line {number} has {len(fields)} field(s), expected {len(columns)} "
                           f"({' '.join(columns)}): {line.strip()[:80]!r}")
        rows.append(fields)
        lines.append(number)
    if not rows:
        raise IqaError(f"{path}: empty file")
    return Columns({name: [row[k] for row in rows] for k, name in enumerate(columns)}), lines


def cell_text(value: object) -> str:
    """A metadata cell as text ("" when empty): spreadsheets and .mat files store names such as
    1600 as numbers (1600.0), which must read back as "1600"."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        if math.isfinite(value) and float(value).is_integer():
            return str(int(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value).strip()


def require_columns(table, required: Iterable[str], path: Path):
    """`table` (a DataFrame or Columns) when it has every `required` column."""
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise IqaError(f"{path}: missing column(s) {', '.join(missing)}; "
                       f"found {', '.join(map(str, table.columns)) or 'none'}")
    return table


def _utf8_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IqaError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                       "re-save the file as UTF-8") from exc


def _existing(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise IqaError(f"{path}: file not found")
    return path

