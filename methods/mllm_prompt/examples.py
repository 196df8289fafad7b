"""In-context examples from `-o examples=CSV`: columns `image`, `score` and, for full-reference
prompts, `reference`; paths absolute or relative to the CSV's folder. Scores are mapped from
`examples_range` (lo,hi; higher-better) to the prompt's 0..100. The images named must stay inside the
CSV's folder (symbolic links resolved); `example_files` lists them, so their content is in the run key. Every problem is one line naming
the file and row. (A method class that says `wants_prompt_source` is given the split's train part
as `ctx.prompt_source`; this one does not ask for it yet.)"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from iqabench.errors import IqaError
from iqabench.io import named_by, read_csv_rows, sha256_file


@dataclasses.dataclass(frozen=True)
class Example:
    image: Any  # PIL RGB
    score: float  # on 0..100
    reference: Any = None
    path: str = ""


def file_hash(path: str) -> str:
    return sha256_file(Path(path).expanduser())


def _rows(path: str, need_reference: bool) -> tuple[Path, list[dict]]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise IqaError(f"examples={path}: no such file")
    fields, rows = read_csv_rows(file, "examples CSV")
    columns = set(fields)
    needed = {"image", "score"} | ({"reference"} if need_reference else set())
    if not needed <= columns:
        raise IqaError(f"{file}: needs columns {', '.join(sorted(needed))}; found {', '.join(sorted(columns)) or 'none'}")
    if not rows:
        raise IqaError(f"{file}: no examples")
    return file, rows


def example_files(path: str, need_reference: bool) -> dict[str, Path]:
    """Every image the examples CSV names (row:column -> file), checked to stay inside its folder."""
    file, rows = _rows(path, need_reference)
    keys = ("image", "reference") if need_reference else ("image",)
    return {f"{line}:{key}": _where(file, line, row, key) for line, row in enumerate(rows, 2) for key in keys}


def read_examples(path: str, score_range: tuple[float, float], need_reference: bool) -> list[Example]:
    lo, hi = score_range
    if not hi > lo:
        raise IqaError(f"examples_range={lo},{hi}: needs lo < hi")
    file, rows = _rows(path, need_reference)
    out = []
    for line, row in enumerate(rows, 2):
        try:
            raw = float(row["score"])
        except (TypeError, ValueError):
            raise IqaError(f"{file}:{line}: score {row['score']!r} is not a number") from None
        if not lo <= raw <= hi:
            raise IqaError(f"{file}:{line}: score {raw:g} is outside examples_range {lo:g},{hi:g}")

        out.append(Example(_image(file, line, row, "image"), (raw - lo) / (hi - lo) * 100.0,
                           _image(file, line, row, "reference") if need_reference else None, row["image"]))
    return out


def _where(file: Path, line: int, row: dict, key: str) -> Path:
    name = (row.get(key) or "").strip()
    where = named_by(file, name, f"line {line}: {key}") if name else None
    if where is None or not where.is_file():
        raise IqaError(f"{file}:{line}: {key} {name!r}: no such file")
    return where


def _image(file: Path, line: int, row: dict, key: str) -> Any:
    """The row's image in column `key`, decoded to RGB, or one line naming file, row and column."""
    from PIL import Image

    where = _where(file, line, row, key)
    try:
        with Image.open(where) as im:
            return im.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - any decoder error is this one row's problem
        raise IqaError(f"{file}:{line}: {key} {row[key].strip()}: cannot decode ({type(exc).__name__})") from None
