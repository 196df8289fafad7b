"""DatasetView.inputs reads the table in one vectorised lookup; it must equal the per-id lookup it replaced
(inputs.json and its hash are part of every run's identity: a resume must see the same bytes)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from iqabench.data.columns import Columns
from iqabench.data.views import BREAKDOWN_COLUMNS, DatasetView
from iqabench.runs import inputs_hash


def _per_id(table: pd.DataFrame, ids: list[str]) -> list[dict]:
    """The plain loop: one .at lookup per id and column."""
    rows = table.set_index("id")
    groups = [c for c in BREAKDOWN_COLUMNS if c in rows.columns]
    out = []
    for i in ids:
        item = {"id": i, "path": str(rows.at[i, "path"]), "label": float(rows.at[i, "label"])}
        for col in groups:
            value = rows.at[i, col]
            if value == value and value is not None:
                item[col] = value.item() if hasattr(value, "item") else value
        out.append(item)
    return out


def _table(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "id": [f"img{i:06d}.png" for i in range(n)], "path": [f"images/img{i:06d}.png" for i in range(n)],
        "label": rng.integers(1, 100, n),  # integer labels become floats
        "ref": [f"ref{i % 17}" for i in range(n)],
        "distortion": [None if i % 5 == 0 else f"d{i % 3}" for i in range(n)],
        "level": [np.nan if i % 7 == 0 else float(i % 5) for i in range(n)],
    })


def test_vectorised_inputs_equal_the_per_id_lookup():
    table = _table(500)
    view = DatasetView(card=None, folder=None, columns=Columns.from_frame(table), split=None)
    ids = list(table["id"].sample(frac=0.6, random_state=1))  # a split part, in its own order
    got, want = view.inputs(ids), _per_id(table, ids)
    assert got == want
    assert [type(v) for r in got for v in r.values()] == [type(v) for r in want for v in r.values()]
    assert inputs_hash(got) == inputs_hash(want)

