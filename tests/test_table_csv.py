"""predictions.csv is written without pandas (iqabench/table_csv.py), in the bytes pandas' to_csv wrote."""
from __future__ import annotations

import io
import random

import pandas as pd
import pytest

from iqabench.table_csv import write_records_csv

FIRST = ("id", "score", "label", "error")


def _pandas_bytes(rows: list[dict], lineterminator: str) -> str:
    """What the store wrote before: a DataFrame of the records, the first columns moved to the front."""
    frame = pd.DataFrame(rows)
    for col in FIRST:
        if col not in frame.columns:
            frame[col] = None
    frame = frame[list(FIRST) + [c for c in frame.columns if c not in FIRST]]
    out = io.StringIO()
    frame.to_csv(out, index=False, lineterminator=lineterminator)
    return out.getvalue()


def _ours(rows: list[dict], lineterminator: str) -> str:
    out = io.StringIO()
    write_records_csv(out, rows, FIRST, lineterminator)
    return out.getvalue()


VALUES = [None, 0, 3, -7, 10 ** 12, 2.5, 0.1 + 0.2, 1e-7, 1e16, -0.0, float("nan"), float("inf"), True, False,
          "", "a.png", "x,y", 'say "hi"', "line\nbreak", "tab\there", "é", "3", "nan", [1, 2], {"k": 1}]
KINDS = {"floats": [2.5, 0.1 + 0.2, 1e-7, 1e16, -0.0, 3.0, float("inf")], "ints": [0, 3, -7, 10 ** 12],
         "text": ["a.png", "x,y", 'say "hi"', "é", "", "3"], "bools": [True, False], "any": VALUES}


def _rows(rng: random.Random) -> list[dict]:
    keys = rng.sample(["id", "score", "label", "error", "seconds", "answer", "attempt", "extra"], rng.randint(1, 8))
    kind = {k: rng.choice(list(KINDS)) for k in keys}
    rows = []
    for i in range(rng.randint(0, 6)):
        row = {}
        for k in keys:
            if rng.random() < 0.15:
                continue  # a record without this key
            pool = KINDS[kind[k]] + ([None] if rng.random() < 0.3 else [])
            row[k] = rng.choice(pool)
        row.setdefault("id", f"img{i}.png")
        rows.append(row)
    return rows


@pytest.mark.parametrize("lineterminator", ["\n", "\r\n"])
def test_the_file_equals_pandas_to_csv_on_random_records(lineterminator):
    rng = random.Random(11)
    for _ in range(600):
        rows = _rows(rng)
        assert _ours(rows, lineterminator) == _pandas_bytes(rows, lineterminator), rows


def test_a_run_like_file_equals_pandas():
    rows = [{"id": f"{i:04d}.png", "score": None if i == 3 else i / 7, "label": float(i % 5), "seconds": 0.01 * i,
             "error": "decode failed: truncated" if i == 3 else None} for i in range(50)]
    assert _ours(rows, "\n") == _pandas_bytes(rows, "\n")
    assert _ours([], "\n") == _pandas_bytes([], "\n") == "id,score,label,error\n"
