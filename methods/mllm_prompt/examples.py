"""In-context examples from `-o examples=CSV`: columns `image`, `score` and, for full-reference
prompts, `reference`; paths absolute or relative to the CSV's folder. Scores are mapped from
`examples_range` (lo,hi; higher-better) to the prompt's 0..100. Every problem is one line naming
the file and row. (A method class that says `wants_prompt_source` is given the split's train part
as `ctx.prompt_source`; this one does not ask for it yet.)"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

from iqabench.errors import IqaError
from iqabench.io import sha256_file


@dataclasses.dataclass(frozen=True)
class Example:
    image: Any  # PIL RGB
    score: float  # on 0..100
    reference: Any = None
    path: str = ""


def file_hash(path: str) -> str:
    return sha256_file(Path(path).expanduser())


def read_examples(path: str, score_range: tuple[float, float], need_reference: bool) -> list[Example]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise IqaError(f"examples={path}: no such file")
    lo, hi = score_range
    if not hi > lo:
        raise IqaError(f"examples_range={lo},{hi}: needs lo < hi")
    with file.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or ())
        needed = {"image", "score"} | ({"reference"} if need_reference else set())
        if not needed <= columns:
            raise IqaError(f"{file}: needs columns {', '.join(sorted(needed))}; found {', '.join(sorted(columns)) or 'none'}")
        rows = list(reader)
    if not rows:
        raise IqaError(f"{file}: no examples")
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


def _image(file: Path, line: int, row: dict, key: str) -> Any:
    """The row's image in column `key`, decoded to RGB, or one line naming file, row and column."""
    from PIL import Image

    name = (row.get(key) or "").strip()
    where = Path(name).expanduser()
    where = where if where.is_absolute() else file.parent / where
    if not name or not where.is_file():
        raise IqaError(f"{file}:{line}: {key} {name!r}: no such file")
    try:
        with Image.open(where) as im:
            return im.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - any decoder error is this one row's problem
        raise IqaError(f"{file}:{line}: {key} {name}: cannot decode ({type(exc).__name__})") from None
