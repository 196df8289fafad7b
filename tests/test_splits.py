import json
import re
from pathlib import Path

import pandas as pd
import pytest

from iqabench.data import splits
from iqabench.errors import IqaError
from iqabench.locations import shipped_folder


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


# -- committed split files -----------------------------------------------------------------------

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "reference" / "data"
needs_shared = pytest.mark.needs_shared_data  # skips, or fails under IQABENCH_REQUIRE_SHARED=1


def write_json_split(root: Path, dataset: str, name: str, parts: dict, **fields) -> Path:
    """A committed split in our format, hash and sizes computed as a generator would."""
    doc = splits.Split(dataset, name, parts, "test fixture").to_json()
    doc.update(fields)
    path = root / dataset / "splits" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def some_parts(t: pd.DataFrame) -> dict:
    ids = t["id"].tolist()
    return {"train": ids[:30], "val": ids[30:40], "test": ids[40:]}


def one_line_error(call, *texts) -> str:
    with pytest.raises(IqaError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for text in texts:
        assert str(text) in message, message
    return message


def test_file_split_loads_is_listed_and_recorded(tmp_path):
    t, root, results = table(), tmp_path / "datasets", tmp_path / "results"
    parts = some_parts(t)
    path = write_json_split(root, "x", "paper-a", parts)
    assert splits.available_splits("x", datasets_root=root)[0] == "paper-a"
    assert "official" not in splits.available_splits("x", t, datasets_root=root)
    assert "byref-ratio{TR}-{VA}-{TE}-seed{S}" in splits.available_splits("x", t, datasets_root=root)
    s = splits.load_or_make("x", t, "paper-a", results, datasets_root=root)
    assert s.parts == parts and s.source == "test fixture" and s.file == path
    recorded = json.loads((results / "x" / "paper-a.json").read_text())
    assert recorded["hash"] == s.hash == splits.membership_hash(parts) and recorded["source"] == "test fixture"
    # The file is regenerated with one image moved: the recorded hash no longer matches.
    moved = {p: list(v) for p, v in parts.items()}
    moved["test"].append(moved["train"].pop())
    write_json_split(root, "x", "paper-a", moved)
    one_line_error(lambda: splits.load_or_make("x", t, "paper-a", results, datasets_root=root),
                   results / "x" / "paper-a.json", path, "changed since it was recorded")
    # Computed names keep working beside file splits.
    assert splits.make_split("x", t, "ratio80-10-10-seed42", datasets_root=root).file is None


def test_csv_side_car_with_a_part_column(tmp_path):
    t, root = table(), tmp_path / "datasets"
    parts = some_parts(t)
    folder = root / "x" / "splits"
    folder.mkdir(parents=True)
    rows = [f"{i},{ {'train': 'training', 'val': 'validation', 'test': 'test'}[p]},1.0"
            for p in splits.PARTS for i in parts[p]]
    (folder / "published.csv").write_text("image,set,mos\n" + "\n".join(rows) + "\n")
    (folder / "paper-b.toml").write_text(
        'source = "github.com/o/r @ abc : split.csv"\nfile = "published.csv"\nid_column = "image"\n'
        'part_column = "set"\npart_values = { train = "training", val = "validation", test = "test" }\n')
    s = splits.make_split("x", t, "paper-b", datasets_root=root)
    assert s.parts == parts and s.source.startswith("github.com/o/r")
    assert splits.available_splits("x", datasets_root=root)[0] == "paper-b"  # the CSV itself is not a split


def test_csv_side_car_with_one_file_per_part(tmp_path):
    t, root = table(), tmp_path / "datasets"
    ids = t["id"].tolist()
    folder = root / "x" / "splits"
    folder.mkdir(parents=True)
    (folder / "tr.txt").write_text("\n".join(ids[:35]) + "\n")
    (folder / "te.txt").write_text("\n".join(ids[35:]) + "\n")
    (folder / "paper-c.toml").write_text('source = "s"\nheader = false\nempty_parts = ["val"]\n'
                                         'files = { train = "tr.txt", test = "te.txt" }\n')
    s = splits.make_split("x", t, "paper-c", datasets_root=root)
    assert s.parts == {"train": ids[:35], "val": [], "test": ids[35:]}


def _torn(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


BAD_JSON = {
    "unknown id": (lambda p: {**p, "test": p["test"] + ["nope.png"]}, {}, None, "not in dataset x"),
    "duplicate across parts": (lambda p: {**p, "val": p["val"] + p["train"][:1]}, {}, None, "in both train and val"),
    "missing part": (lambda p: {"train": p["train"], "test": p["test"]}, {}, None, "missing part(s) val"),
    "torn": (lambda p: p, {}, _torn, "not valid JSON"),
    "stale hash": (lambda p: p, {"hash": "0123456789abcdef"}, None, "does not match its parts"),
    "wrong sizes": (lambda p: p, {"sizes": {"train": 1, "val": 1, "test": 1}}, None, "does not match the parts"),
    "no source": (lambda p: p, {"source": ""}, None, "`source`"),
}


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_bad_json_split_file_is_one_line_naming_it(tmp_path, case):
    change_parts, fields, damage, text = BAD_JSON[case]
    t, root = table(), tmp_path / "datasets"
    path = write_json_split(root, "x", "bad", change_parts(some_parts(t)), **fields)
    if damage:
        damage(path)
    one_line_error(lambda: splits.make_split("x", t, "bad", datasets_root=root), path, text)


BAD_TOML = {
    "unmapped part value": ('file = "p.csv"\nid_column = "image"\npart_column = "set"\n',
                            "image,set\n{a},train\n{b},dev\n", "'dev' are not mapped"),
    "missing part": ('file = "p.csv"\nid_column = "image"\npart_column = "set"\n', "image,set\n{a},train\n{b},test\n",
                     "missing part 'val'"),
    "escaping file": ('file = "../../p.csv"\nid_column = "image"\npart_column = "set"\n', "", "relative path inside"),
    "torn toml": ('file = "p.csv\nid_column = ', "", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOML))
def test_bad_side_car_is_one_line_naming_it(tmp_path, case):
    spec, csv, text = BAD_TOML[case]
    t, root = table(), tmp_path / "datasets"
    folder = root / "x" / "splits"
    folder.mkdir(parents=True)
    (folder / "p.csv").write_text(csv.format(a=t["id"][0], b=t["id"][1]))
    path = folder / "bad.toml"
    path.write_text('source = "s"\n' + spec)
    one_line_error(lambda: splits.make_split("x", t, "bad", datasets_root=root), text)
    if case != "unmapped part value":  # that one names the CSV, which names the side-car
        one_line_error(lambda: splits.make_split("x", t, "bad", datasets_root=root), path)


def test_torn_record_is_refused_with_what_to_do(tmp_path):
    t = table()
    splits.load_or_make("x", t, "ratio80-10-10-seed42", tmp_path)
    record = tmp_path / "x" / "ratio80-10-10-seed42.json"
    _torn(record)
    one_line_error(lambda: splits.load_or_make("x", t, "ratio80-10-10-seed42", tmp_path),
                   record, "not valid JSON", "delete it to re-record")
    record.write_text("[]")
    one_line_error(lambda: splits.load_or_make("x", t, "ratio80-10-10-seed42", tmp_path), record, "no hash")


def test_split_names_cannot_leave_their_folder(tmp_path):
    root = tmp_path / "datasets"
    write_json_split(root, "x", "paper-a", some_parts(table()))
    one_line_error(lambda: splits.make_split("x", table(), "../paper-a", datasets_root=root), "letters, digits")
    one_line_error(lambda: splits.make_split("x", table(), "paper-z", datasets_root=root), "paper-a", "unknown split")


# -- the committed files, against the real metadata -------------------------------------------------

def real_table(dataset: str) -> pd.DataFrame:
    """The ids of a dataset as its official metadata lists them."""
    if dataset == "kadid10k":
        meta = pd.read_csv(SHARED_DATA / "kadid10k-dmos.csv", dtype={"dist_img": str})
        return pd.DataFrame({"id": meta["dist_img"], "ref": meta["ref_img"]})
    if dataset == "agiqa3k":
        return pd.DataFrame({"id": pd.read_csv(SHARED_DATA / "agiqa3k-data.csv", dtype={"name": str})["name"]})
    if dataset == "koniq10k":
        meta = pd.read_csv(SHARED_DATA / "koniq10k_distributions_sets.csv", dtype={"image_name": str})
        return pd.DataFrame({"id": meta["image_name"]})
    if dataset == "livec":
        from scipy.io import loadmat

        cells = loadmat(SHARED_DATA / "livec-Data" / "AllImages_release.mat")["AllImages_release"]
        names = [str(c[0][0]) for c in cells]
        return pd.DataFrame({"id": [n for n in names if not re.match(r"^t\d+\.bmp$", n)]})  # the card's rule
    raise AssertionError(f"no metadata reader for {dataset} in this test")


COMMITTED = sorted((d.name, p) for d in shipped_folder("datasets").iterdir() if d.is_dir()
                   for p in splits.file_splits(d.name).values())


def test_seed000_files_are_committed():
    assert {("kadid10k", "seed000-vp"), ("agiqa3k", "seed000-vp")} <= {(d, p.stem) for d, p in COMMITTED}


@pytest.mark.parametrize("dataset,path", COMMITTED, ids=[f"{d}/{p.stem}" for d, p in COMMITTED])
def test_committed_split_is_consistent(dataset, path):
    s = splits.read_split_file(path, dataset)  # hash, sizes, parts and duplicates checked against itself
    recorded = json.loads(path.read_text())
    assert s.hash == recorded["hash"] and {p: len(v) for p, v in s.parts.items()} == recorded["sizes"]
    assert s.parts["test"] and "github.com/" in s.source and "@" in s.source


# SPAQ's metadata (an xlsx workbook) is not in the shared folder: its files are checked on their own only.
WITH_METADATA = [(d, p) for d, p in COMMITTED if d in {"kadid10k", "agiqa3k", "koniq10k", "livec"}]


@needs_shared
@pytest.mark.parametrize("dataset,path", WITH_METADATA, ids=[f"{d}/{p.stem}" for d, p in WITH_METADATA])
def test_committed_split_resolves_against_real_metadata(dataset, path, tmp_path):
    s = splits.load_or_make(dataset, real_table(dataset), path.stem, tmp_path)
    assert s.file == path and s.hash == json.loads(path.read_text())["hash"]


@needs_shared
@pytest.mark.parametrize("dataset", ["kadid10k", "agiqa3k"])
def test_seed000_split_covers_the_dataset(dataset):
    t = real_table(dataset)
    s = splits.make_split(dataset, t, "seed000-vp")
    recorded = json.loads((splits.splits_folder(dataset) / "seed000-vp.json").read_text())
    assert {p: len(s.parts[p]) for p in splits.PARTS} == recorded["sizes"]
    assert sorted(i for part in s.parts.values() for i in part) == sorted(t["id"])  # each image once
    assert "yahya-ben/mplug2-vp-for-nriqa" in s.source


# -- the split-name grammar -----------------------------------------------------------------------
@pytest.mark.parametrize("text, kind, ratios, seed, byref, protocol", [
    ("official", "official", None, None, False, "official"),
    ("all", "all", None, None, False, "all"),
    ("ratio80-10-10-seed42", "ratio", (80, 10, 10), 42, False, "ratio80-10-10"),
    ("byref-ratio80-0-20-seed3", "ratio", (80, 0, 20), 3, True, "byref-ratio80-0-20"),
    ("qalign-split2", "named", None, None, False, "qalign-split2"),
    ("mine-seed7", "named", None, 7, False, "mine"),
    ("ratio80-0-20", "named", None, None, False, "ratio80-0-20"),  # no seed: not the computed form
])
def test_split_names_are_read_by_one_grammar(text, kind, ratios, seed, byref, protocol):
    name = splits.parse_name(text)
    assert (name.kind, name.ratios, name.seed, name.byref, name.protocol) == (kind, ratios, seed, byref, protocol)
    assert list(name.members()) == [text] and len(name) == 1
    assert name.portable == (kind in ("all", "ratio"))


def test_a_family_expands_lazily_to_its_members():
    family = splits.parse_name("byref-ratio80-0-20-seed{1..10}")
    assert family.kind == "family" and len(family) == 10 and family.portable
    members = family.members()
    assert next(members) == "byref-ratio80-0-20-seed1"  # a generator: nothing built ahead
    assert splits.expand("byref-ratio80-0-20-seed{1..10}") == [f"byref-ratio80-0-20-seed{i}" for i in range(1, 11)]
    committed = splits.parse_name("compare2score-test{1..10}")
    assert not committed.portable and list(committed.members())[-1] == "compare2score-test10"
    assert splits.expand(None) == [None] and splits.expand("official") == ["official"]


@pytest.mark.parametrize("text, message", [
    ("ratio80-0-20-seed{3..1}", "the range {3..1} is empty"),
    ("ratio80-0-20-seed{1..4000000000}", "the range {1..4000000000} names 4000000000 splits, more than the 1000 "
                                         "a family may name"),
])
def test_a_bad_family_is_one_line_and_never_expanded(text, message):
    with pytest.raises(IqaError) as info:
        splits.parse_name(text)
    assert str(info.value) == f"split {text!r}: {message}"


def test_the_cap_is_inclusive():
    assert len(splits.parse_name(f"ratio80-0-20-seed{{1..{splits.FAMILY_CAP}}}")) == splits.FAMILY_CAP


def test_run_refuses_a_huge_family_in_one_line_before_expanding_it(tmp_path):
    """issue 20: `seed{1..4000000000}` used to be expanded into a list first and took the memory."""
    from click.testing import CliRunner

    from iqabench.cli.main import cli

    result = CliRunner().invoke(cli, ["run", "--method", "piqe", "--dataset", "synthetic", "--split",
                                      "ratio80-0-20-seed{1..4000000000}", "--results", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "more than the 1000 a family may name" in result.stderr and "'--split'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_split_leaving_few_test_images_warns_once(tiny_root, tmp_path, capsys):
    """A private set's default split that leaves fewer than 10 test images says so (once per split)."""
    import dataclasses

    from iqabench import registry
    from iqabench.data import views
    from iqabench.layout import ResultsLayout

    card = dataclasses.replace(registry.datasets.get("tiny"), default_split="ratio80-0-20-seed3")
    folder, table = card.load(tiny_root)
    split = splits.make_split("tiny", table, card.default_split)
    n_test = len(split.parts["test"])
    assert 0 < n_test < views.FEW_TEST_IMAGES
    warning = views.few_test_images(card, split, default=True)
    assert f"the card's default split ratio80-0-20-seed3 leaves only {n_test} test image(s) (of {len(table)})" in warning
    whole = splits.make_split("tiny", table, "all")
    assert views.few_test_images(card, whole, default=False) is None  # 36 test images: nothing to say
    layout = ResultsLayout(tmp_path / "r")
    for _ in range(2):
        views.load_dataset("tiny", tiny_root, "ratio80-0-20-seed4", layout)
    err = capsys.readouterr().err
    assert err.count("iqabench: warning: tiny: split ratio80-0-20-seed4 leaves only") == 1
