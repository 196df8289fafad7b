import json

import pandas as pd
import pytest

from iqabench.data import splits
from iqabench.errors import IqaError


def table(n_refs=10, per_ref=5):
    rows = [{"id": f"r{r}_{k}", "path": f"r{r}_{k}.png", "label": float(k), "ref": f"r{r}"}
            for r in range(n_refs) for k in range(per_ref)]
    return pd.DataFrame(rows)


def test_ratio_split_sizes_and_determinism():
    t = table(20, 5)
    a = splits.make_split("x", t, "ratio80-10-10-seed42")
    b = splits.make_split("x", t, "ratio80-10-10-seed42")
    c = splits.make_split("x", t, "ratio80-10-10-seed43")
    assert [len(a.parts[p]) for p in splits.PARTS] == [80, 10, 10]
    assert a.parts == b.parts and a.hash == b.hash and a.hash != c.hash
    assert sorted(sum(a.parts.values(), [])) == sorted(t["id"])


def test_by_reference_split_keeps_references_apart():
    t = table(10, 5)
    s = splits.make_split("x", t, "byref-ratio60-20-20-seed1")
    ref_of = dict(zip(t["id"], t["ref"]))
    refs = {p: {ref_of[i] for i in s.parts[p]} for p in splits.PARTS}
    assert not (refs["train"] & refs["test"]) and not (refs["train"] & refs["val"]) and not (refs["val"] & refs["test"])
    assert [len(refs[p]) for p in splits.PARTS] == [6, 2, 2]


def test_per_image_split_mixes_references_and_is_named_so():
    t = table(10, 5)
    s = splits.make_split("x", t, "ratio60-20-20-seed1")
    ref_of = dict(zip(t["id"], t["ref"]))
    assert {ref_of[i] for i in s.parts["train"]} & {ref_of[i] for i in s.parts["test"]}


def test_official_split_and_errors():
    t = table(2, 3).assign(official_set=["train", "train", "val", "test", "test", "train"])
    s = splits.make_split("x", t, "official")
    assert [len(s.parts[p]) for p in splits.PARTS] == [3, 1, 2]
    with pytest.raises(IqaError, match="no official split"):
        splits.make_split("x", table(), "official")
    with pytest.raises(IqaError, match="sum to 100"):
        splits.make_split("x", table(), "ratio80-10-20-seed1")
    with pytest.raises(IqaError, match="unknown split name"):
        splits.make_split("x", table(), "random")
    with pytest.raises(IqaError, match="no reference column"):
        splits.make_split("x", table().drop(columns="ref"), "byref-ratio80-10-10-seed1")


def test_hash_is_order_independent_and_membership_sensitive():
    s = splits.make_split("x", table(), "ratio80-10-10-seed42")
    reordered = {p: list(reversed(v)) for p, v in s.parts.items()}
    assert splits.membership_hash(reordered) == s.hash
    moved = {p: list(v) for p, v in s.parts.items()}
    moved["val"].append(moved["train"].pop())
    assert splits.membership_hash(moved) != s.hash


def test_recorded_split_is_checked(tmp_path):
    t = table()
    s = splits.load_or_make("x", t, "ratio80-10-10-seed42", tmp_path)
    recorded = json.loads((tmp_path / "x" / "ratio80-10-10-seed42.json").read_text())
    assert recorded["hash"] == s.hash and recorded["parts"] == s.parts
    with pytest.raises(IqaError, match="metadata changed"):
        splits.load_or_make("x", t.iloc[:-1], "ratio80-10-10-seed42", tmp_path)
