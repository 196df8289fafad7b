"""A plain csv file is split without pandas (formats.plain_csv_cells); pandas, reading every cell as
text, stays the reference: on every file both read, the cells are the same."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from iqabench.data import formats
from iqabench.data.columns import Columns

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "reference" / "data"  # as conftest.py names it


def _pandas_cells(path) -> Columns:
    return Columns.from_frame(formats.read_csv(path, dtype=str, keep_default_na=False, na_values=[""]))


def _same(a: Columns, b: Columns) -> None:
    assert a.columns == b.columns
    for name in a.columns:
        assert a[name] == b[name], name


CELLS = ["", "", "a", "0001", "1e3", "3.50", " padded ", "NA", "null", "nan", "-", "é.png", "x y", "10", "\t"]
TRICKY = ['"quoted, with comma"', '""', 'say ""hi""', "", "  "]


def _text(rng: random.Random, tricky: bool) -> str:
    width = rng.randint(1, 5)
    names = [rng.choice(["id", "mos", "Image Name", " ref ", "set", "dmos", "x"]) + str(k) for k in range(width)]
    if tricky and rng.random() < 0.3:
        names[rng.randrange(width)] = names[0] if width > 1 and rng.random() < 0.5 else ""
    rows = [[rng.choice(CELLS) for _ in range(width)] for _ in range(rng.randint(0, 6))]
    lines = [",".join(names)] + [",".join(r) for r in rows]
    if tricky:
        kind = rng.randrange(4)
        if kind == 0 and rows:
            lines[rng.randrange(1, len(lines))] += "," + rng.choice(TRICKY)  # a row wider than the header
        elif kind == 1:
            lines.insert(rng.randint(1, len(lines)), rng.choice(["", "  "]))  # a blank line
        elif kind == 2 and rows:
            cells = lines[1].split(",")
            cells[0] = rng.choice(TRICKY)
            lines[1] = ",".join(cells)
        elif kind == 3 and rows and width > 1:
            lines[-1] = lines[-1].rsplit(",", 1)[0]  # a row narrower than the header
    end = rng.choice(["\n", "\r\n"])
    return end.join(lines) + rng.choice([end, ""])


@pytest.mark.parametrize("tricky", [False, True])
def test_the_cells_equal_pandas_on_random_files(tmp_path, tricky):
    rng = random.Random(7 + tricky)
    plain = compared = 0
    for k in range(300):
        path = tmp_path / f"t{k}.csv"
        path.write_bytes(_text(rng, tricky).encode("utf-8") if rng.random() < 0.8
                         else b"\xef\xbb\xbf" + _text(rng, tricky).encode("utf-8"))
        try:
            reference = _pandas_cells(path)
        except formats.IqaError:
            continue  # pandas refuses the file (a row too wide): the fallback gives that same error
        compared += 1
        plain += formats.plain_csv_cells(formats._utf8_text(path)) is not None
        _same(formats.read_csv_cells(path), reference)
    assert compared > 200
    if tricky:
        assert 0 < plain < compared  # both paths ran
    else:
        assert plain > 0.8 * compared  # split without pandas (a one-column row of "" is a blank line: pandas')


def test_a_file_pandas_refuses_is_refused_the_same_way(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(formats.IqaError) as ours:
        formats.read_csv_cells(path)
    with pytest.raises(formats.IqaError) as reference:
        _pandas_cells(path)
    assert str(ours.value) == str(reference.value)


def test_a_missing_column_is_named(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("name,mos\na.png,3\n")
    with pytest.raises(formats.IqaError, match="t.csv: missing column.*dmos; found name, mos"):
        formats.read_csv_cells(path, required=["dmos"])


@pytest.mark.needs_shared_data
def test_the_published_metadata_files_read_the_same(tmp_path):
    files = sorted(SHARED_DATA.glob("*.csv"))
    assert len(files) >= 3
    plain = 0
    for path in files:
        plain += formats.plain_csv_cells(formats._utf8_text(path)) is not None
        _same(formats.read_csv_cells(path), _pandas_cells(path))
    assert plain >= 2  # KADID-10k and KonIQ-10k are plain; AGIQA-3K's quoted prompts go to pandas
