"""Paper-table suites: the committed files load and resolve, bad files fail in one line, a small suite
runs end to end (zero-shot and cross-dataset trained rows) and its table shows the runs' own numbers
beside the file's published ones."""
from __future__ import annotations

import csv
import functools
import json
import re
import statistics
import tomllib
from pathlib import Path

import pytest

from iqabench import registry
from iqabench.cli.suite_cmd import suite_group
from iqabench.data.card import DatasetCard
from iqabench.data.splits import expand
from iqabench.data.union import canonical
from iqabench.errors import IqaError
from iqabench.locations import shipped_folder
from iqabench.suite import list_suites, load_suite
from iqabench.suite.index import RunIndex
from iqabench.suite.table import render_suite
from iqabench.tasks.mcq_suite import list_accuracy_suites

SUITES = shipped_folder("suites")
LINEUPS = {"demo.toml"}  # the demo's own line-up (another format, read by `iqabench demo` and as a suite)
ACCURACY_TABLES = {p.name for _, p in list_accuracy_suites()}  # another kind (iqabench/tasks/mcq_suite.py)


# -- a second tiny dataset (cross-dataset rows need two) and a GPU-only method ------------------------
def _tiny_b_card() -> DatasetCard:
    tiny = registry.datasets.get("tiny")  # tests/plugins/tiny_dataset_plugin.py, loaded by conftest
    return DatasetCard(name="tiny-b", title="second test-only tiny set", url="built by the tests",
                       folder_names=("tiny-b",), layout=tiny.layout, label_name="mos", score_range=(0.0, 6.0),
                       higher_better=True, default_split="byref-ratio34-33-33-seed1", synthetic_distortions=True,
                       reader={"format": "csv", "id": "{image}", "ref": "{ref}", "images": {"folders": ["images"]}},
                       builder=functools.partial(tiny.builder, size=48))


@pytest.fixture(scope="module", autouse=True)
def _suite_plugins(test_plugins):
    """tiny-b and gpu-only-sharpness, registered for this module's tests and undone after them."""
    from iqabench.api import MethodInfo
    from iqabench.registry import register_method

    class GpuOnlySharpness(registry.methods.get("slow-sharpness")):  # tests/plugins/slow_method.py
        name = "gpu-only-sharpness"
        info = MethodInfo(kind="classic", description="test plugin marked GPU-only", needs_gpu=True)

    with registry.scratch():
        registry.register_dataset(_tiny_b_card())
        register_method(GpuOnlySharpness)
        yield


# -- every committed suite ------------------------------------------------------------------------------
def test_suites_folder_holds_only_paper_tables_besides_the_demo():
    names = {p.name for p in SUITES.glob("*.toml")} - ACCURACY_TABLES
    assert names == {p.name for _, p in list_suites()}
    assert len(names - LINEUPS) >= 8
    assert all(tomllib.loads((SUITES / n).read_text()).get("kind") == "paper-table" for n in names - LINEUPS)


@pytest.mark.parametrize("path", [p for _, p in list_suites()], ids=lambda p: p.stem)
def test_committed_suite_loads_resolves_and_keeps_its_published_numbers(path):
    suite = load_suite(path)
    raw = tomllib.loads(path.read_text())
    cells = suite.cells()
    assert cells, f"{path.name}: no row x column the harness can compute"
    for cell in cells:
        assert registry.methods.get(cell.method).name == cell.method
        for unit in cell.units:
            assert registry.datasets.get(unit.dataset).name == unit.dataset
            if unit.train_dataset:  # one dataset, or a mix of registered ones
                assert canonical(unit.train_dataset) == unit.train_dataset
    if path.name in LINEUPS:  # a line-up: one row per method it names, nothing published
        assert [r.method for r in suite.rows] == list(dict.fromkeys(raw["zero_shot"] + raw["trained"]))
        assert not any(r.published for r in suite.rows)
        return
    # the loaded published numbers are the file's, cell by cell
    keys = [c.get("key") or c["dataset"] for c in raw["columns"]]
    for raw_row, row in zip(raw["rows"], suite.rows):
        assert row.label == raw_row["label"]
        for key, metrics in raw_row.get("published", {}).items():
            assert key in keys
            assert {m: float(v) for m, v in row.published[key].items()} == {m: float(v) for m, v in metrics.items()}
    assert raw["source"]["table"] and raw["source"]["paper"]


def test_seeded_family_expands_to_its_splits():
    assert expand("byref-ratio80-0-20-seed{1..10}") == [f"byref-ratio80-0-20-seed{i}" for i in range(1, 11)]
    assert expand("official") == ["official"]


# -- bad files ---------------------------------------------------------------------------------------------
GOOD = """
kind = "paper-table"
title = "t"
metrics = ["srcc"]
[source]
paper = "p"
table = "Table 9"
[protocol]
split = "all"
[[columns]]
key = "tiny"
label = "Tiny"
dataset = "tiny"
[[rows]]
label = "Sharp"
method = "slow-sharpness"
[rows.published]
tiny = { srcc = 0.5 }
"""


@pytest.mark.parametrize("edit, where", [
    (lambda s: s.replace('title = "t"', 'title = "t"\ncolour = "red"'), "colour"),
    (lambda s: s.replace('"slow-sharpness"', '"no-such-method"'), "rows[0] (Sharp).method"),
    (lambda s: s.replace('dataset = "tiny"', 'dataset = "no-such-set"'), "columns[0] (Tiny).dataset"),
    (lambda s: s.replace("tiny = { srcc", "nowhere = { srcc"), "rows[0] (Sharp).published.nowhere"),
    (lambda s: s.replace("{ srcc = 0.5 }", "{ plcc = 0.5 }"), "rows[0] (Sharp).published.tiny.plcc"),
    (lambda s: s.replace("0.5", "1.5"), "rows[0] (Sharp).published.tiny.srcc"),
    (lambda s: s.replace("0.5", '"0.5"'), "rows[0] (Sharp).published.tiny.srcc"),
    (lambda s: s.replace('method = "slow-sharpness"', 'method = "slow-sharpness"\noptions = { delay = "x" }'),
     "rows[0] (Sharp).options"),
    (lambda s: s.replace('"slow-sharpness"', '"brisque-svr"'), "rows[0] (Sharp).method"),
    (lambda s: s.replace('split = "all"', 'split = "ratio80-0-20-seed{1..3}"'), "protocol.aggregate"),
    (lambda s: s.replace('split = "all"', 'split = "ratio80-0-20-seed{3..1}"'), "protocol.split: split "),
    (lambda s: s.replace('split = "all"', 'split = "ratio80-0-20-seed{1..4000000000}"\naggregate = "median"'),
     "more than the 1000 a family may name"),
    (lambda s: s + '\n[[rows]]\nlabel = "Sharp"\nmethod = "slow-sharpness"\n', "rows[1] (Sharp).label"),
    (lambda s: s.replace('kind = "paper-table"', 'kind = "paper-table"\ntitle = "x"'), "not valid TOML"),
])
def test_bad_suite_file_is_one_line_naming_file_and_key(tmp_path, edit, where):
    path = tmp_path / "bad.toml"
    path.write_text(edit(GOOD))
    with pytest.raises(IqaError) as info:
        load_suite(path)
    message = str(info.value)
    assert str(path) in message and where in message and "\n" not in message


def test_the_good_file_of_those_cases_loads(tmp_path):
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    [cell] = load_suite(path).cells()
    assert (cell.method, cell.units[0].dataset, cell.units[0].split) == ("slow-sharpness", "tiny", "all")


def test_unknown_suite_name_suggests_close_ones():
    with pytest.raises(IqaError, match="did you mean seed004-table2"):
        load_suite("seed004-tabel2")


# -- end to end: `iqabench suite run`, then the suite table -----------------------------------------------
E2E = """
kind = "paper-table"
title = "End-to-end test table"
metrics = ["srcc", "plcc"]
notes = "test only"
[source]
paper = "a test"
table = "Table 1"
[protocol]
split = "all"
training = "cross"

[[columns]]
label = "KonIQ"
dataset = "koniq10k"
[[columns]]
label = "SPAQ"
dataset = "spaq"
[[columns]]
label = "KADID"
dataset = "kadid10k"
[[columns]]
key = "broken"
label = "Broken split"
dataset = "koniq10k"
split = "ratio50-50-50-seed1"
[[columns]]
key = "elsewhere"
label = "Elsewhere"
published_only = true

[[rows]]
label = "PIQE"
method = "pyiqa:piqe"
[rows.published]
koniq10k = { srcc = 0.25, plcc = 0.5 }
elsewhere = { srcc = 0.75 }

[[rows]]
label = "BRISQUE-SVR (trained on KonIQ)"
method = "brisque-svr"
options = { c_grid = [1.0, 8.0], gamma_grid = [0.1] }
train = { dataset = "koniq10k" }
columns = ["spaq"]
[rows.published]
spaq = { srcc = 0.125 }

[[rows]]
label = "BRISQUE-SVR (trained on SPAQ)"
method = "brisque-svr"
options = { c_grid = [1.0, 8.0], gamma_grid = [0.1] }
train = { dataset = "spaq" }
columns = ["koniq10k"]

[[rows]]
label = "GPU only"
method = "gpu-only-sharpness"
columns = ["koniq10k"]

[[rows]]
label = "HyperIQA"
published_only = true
[rows.published]
koniq10k = { srcc = 0.875, plcc = 0.625 }
"""
MAP = {"koniq10k": "tiny", "spaq": "tiny-b"}


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """One `suite run` of the test table on the two tiny sets, shared by the checks below."""
    base = tmp_path_factory.mktemp("suite-e2e")
    data_root, results = base / "data", base / "results"
    registry.datasets.get("tiny").load(data_root)
    path = base / "e2e.toml"
    path.write_text(E2E)
    args = ["run", str(path), "--data-root", str(data_root), "--results", str(results), "--device", "cpu",
            "--no-progress"] + [a for k, v in MAP.items() for a in ("--dataset-map", f"{k}={v}")]
    code, out = _invoke(args)
    return {"path": path, "data_root": data_root, "results": results, "args": args, "code": code, "out": out}


def _invoke(args) -> tuple[int, str]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = suite_group.main(args, prog_name="iqabench suite", standalone_mode=False)
    return code, buf.getvalue()


def _metrics_by_cell(results: Path) -> dict[tuple, dict]:
    """Every finished run found by walking the folders: (method, dataset, trained on) -> metrics.json."""
    out = {}
    for manifest_path in results.rglob("manifest.json"):
        manifest = json.loads(manifest_path.read_text())
        metrics = json.loads((manifest_path.parent / "metrics.json").read_text())
        trained_on = ((manifest.get("checkpoint") or {}).get("trained_on") or {}).get("dataset")
        out[(manifest["method"], manifest["dataset"], trained_on)] = metrics
    return out


def test_suite_run_does_what_can_run_and_says_why_not_for_the_rest(e2e):
    out = e2e["out"]
    assert e2e["code"] == 1  # one cell failed
    done = out.split("done: ", 1)[1]
    assert done.startswith("4 cell(s) (4 run(s) now, 0 already complete)")
    summary = out.split("\nsuite e2e: ", 1)[1]
    assert "dataset kadid10k not found under" in summary and "1 cell(s): PIQE x KADID" in summary
    assert "method gpu-only-sharpness needs a GPU" in summary and "1 cell(s): GPU only x KonIQ" in summary
    assert "failed: 1 cell(s)\n  tiny/ratio50-50-50-seed1/test: scoring: split" in summary
    assert "1 cell(s): PIQE x Broken split" in summary
    runs = _metrics_by_cell(e2e["results"])
    assert set(runs) == {("pyiqa:piqe", "tiny", None), ("pyiqa:piqe", "tiny-b", None),
                         ("brisque-svr", "tiny-b", "tiny"), ("brisque-svr", "tiny", "tiny-b")}
    for metrics in runs.values():
        assert metrics["status"] == "complete" and metrics["n"] == 36 and metrics["n_failed"] == 0
    # cross-dataset: each checkpoint was trained on the other set's train part, selected on its val part
    for ckpt in (e2e["results"] / "checkpoints").rglob("train_manifest.json"):
        manifest = json.loads(ckpt.read_text())
        assert manifest["n_train"] == 12 and manifest["n_val"] == 12
    assert (e2e["results"] / "report" / "suites" / "e2e.md").is_file()


def test_suite_table_shows_the_runs_numbers_beside_the_files(e2e, tmp_path):
    suite = load_suite(e2e["path"]).adapted(MAP)
    files = render_suite(suite, e2e["results"], tmp_path / "table")
    rows = list(csv.DictReader(files["csv"].open()))
    runs = _metrics_by_cell(e2e["results"])
    raw = tomllib.loads(E2E)
    published = {(r["label"], col, m): v for r in raw["rows"] for col, ms in r.get("published", {}).items()
                 for m, v in ms.items()}
    expected_cells = {("PIQE", "koniq10k"): ("pyiqa:piqe", "tiny", None),
                      ("PIQE", "spaq"): ("pyiqa:piqe", "tiny-b", None),
                      ("BRISQUE-SVR (trained on KonIQ)", "spaq"): ("brisque-svr", "tiny-b", "tiny"),
                      ("BRISQUE-SVR (trained on SPAQ)", "koniq10k"): ("brisque-svr", "tiny", "tiny-b")}
    seen = set()
    for line in rows:
        key = (line["row"], line["column"])
        pub = published.get((line["row"], line["column"], line["metric"]))
        assert (float(line["published"]) if line["published"] else None) == pub
        if key in expected_cells:
            ours = runs[expected_cells[key]][line["metric"]]
            assert float(line["ours"]) == ours
            if pub is not None:
                assert float(line["diff"]) == pytest.approx(ours - pub)
            seen.add(key)
        else:
            assert line["ours"] == "", line
    assert seen == set(expected_cells)
    text = files["md"].read_text()
    assert "dataset koniq10k replaced by tiny" in text  # the published numbers are not this data's
    piqe_koniq = runs[("pyiqa:piqe", "tiny", None)]["srcc"]
    assert f"{piqe_koniq:.3f} / 0.250 (" in text
    assert "— / 0.875" in text and "not implemented in iqabench" in text
    assert "no usable run: no run" in text  # the cells that could not run, footnoted
    assert files["tex"].read_text().count("\\\\") >= len(raw["rows"]) + 2


NOTHING_HERE = """
kind = "paper-table"
title = "nothing runs here"
metrics = ["srcc"]
[source]
paper = "p"
table = "T"
[protocol]
split = "all"
[[columns]]
label = "KADID"
dataset = "kadid10k"
[[columns]]
label = "SPAQ"
dataset = "spaq"
[[columns]]
label = "Tiny"
dataset = "tiny"
[[rows]]
label = "PIQE"
method = "pyiqa:piqe"
columns = ["kadid10k", "spaq"]
[[rows]]
label = "Sharp"
method = "slow-sharpness"
columns = ["kadid10k", "spaq"]
[[rows]]
label = "GPU only"
method = "gpu-only-sharpness"
columns = ["tiny"]
"""


def test_suite_run_that_computes_nothing_fails_with_one_line_per_reason(tmp_path):
    path = tmp_path / "nothing.toml"
    path.write_text(NOTHING_HERE)
    empty = tmp_path / "empty-data"
    code, out = _invoke(["run", str(path), "--data-root", str(empty), "--results", str(tmp_path / "results"),
                         "--device", "cpu", "--no-progress"])
    assert code == 1
    assert "[1/5]" not in out  # no cell started
    reasons = [line for line in out.splitlines() if line.startswith("  ") and "cell(s):" in line]
    assert reasons == [f"  dataset kadid10k not found under {empty} (2 cell(s): PIQE x KADID, Sharp x KADID)",
                       f"  dataset spaq not found under {empty} (2 cell(s): PIQE x SPAQ, Sharp x SPAQ)",
                       "  method gpu-only-sharpness needs a GPU (device is cpu; --allow-cpu runs it anyway) "
                       "(1 cell(s): GPU only x Tiny)"]
    assert out.count("not found under") == 2 and out.count("needs a GPU") == 1
    assert "cannot run here: 5 cell(s)" in out and "nothing computed: none of the 5 cell(s) is done" in out


def test_a_shipped_suite_with_no_data_exits_non_zero_in_a_few_lines(tmp_path):
    name = "seed004-table2"
    n_cells = len(load_suite(name).cells())
    code, out = _invoke(["run", name, "--data-root", str(tmp_path / "empty"), "--results", str(tmp_path / "r"),
                         "--no-progress"])
    assert code == 1 and "nothing computed" in out
    reasons = [line for line in out.splitlines() if line.startswith("  ") and "cell(s):" in line]
    suite = load_suite(name)
    # one line per distinct reason: at most one per method and one per dataset, never one per cell
    assert len(set(reasons)) == len(reasons) <= len({c.method for c in suite.cells()}) + len(suite.datasets())
    counted = [int(re.search(r" \((\d+) cell\(s\): ", line)[1]) for line in reasons]
    assert sum(counted) >= n_cells and max(counted) > 1
    assert len(out.splitlines()) < 10 + len(reasons)


def test_the_demo_line_up_runs_as_a_suite_end_to_end_offline(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    results = tmp_path / "results"
    code, out = _invoke(["run", "demo", "--data-root", str(synthetic_root), "--results", str(results),
                         "--no-progress"])
    lineup = tomllib.loads((SUITES / "demo.toml").read_text())
    methods = lineup["zero_shot"] + lineup["trained"]
    assert code == 0, out
    assert f"done: {len(methods)} cell(s) ({len(methods)} run(s) now, 0 already complete)" in out
    assert "cannot run here" not in out and "failed" not in out
    runs = _metrics_by_cell(results)
    assert {m for m, _, _ in runs} == set(methods)
    rows = {line["row"]: line for line in csv.DictReader((results / "report" / "suites" / "demo.csv").open())
            if line["metric"] == "srcc"}
    for (method, dataset, trained_on), metrics in runs.items():
        assert dataset == lineup["dataset"] and metrics["status"] == "complete" and metrics["n_failed"] == 0
        assert trained_on == (dataset if method in lineup["trained"] else None)
        assert float(rows[method]["ours"]) == metrics["srcc"] and rows[method]["published"] == ""


def test_suite_run_again_does_only_what_is_left(e2e):
    before = {p: p.stat().st_mtime_ns for p in e2e["results"].rglob("metrics.json")}
    code, out = _invoke(e2e["args"])
    assert code == 1
    assert "done: 4 cell(s) (0 run(s) now, 4 already complete)" in out
    assert {p: p.stat().st_mtime_ns for p in e2e["results"].rglob("metrics.json")} == before


OPTIONED = """
kind = "paper-table"
title = "with options"
metrics = ["srcc"]
[source]
paper = "p"
table = "T"
[protocol]
split = "all"
[[columns]]
key = "koniq10k"
label = "KonIQ"
dataset = "koniq10k"
[[columns]]
key = "spaq"
label = "SPAQ"
dataset = "spaq"
[[rows]]
label = "Sharp"
method = "slow-sharpness"
[rows.published]
koniq10k = { srcc = 0.5 }
spaq = { srcc = 0.5 }
[[rows]]
label = "PIQE"
method = "pyiqa:piqe"
"""


def _report(results: Path, data_root: Path, *args: str) -> tuple[int, str, list[dict]]:
    from click.testing import CliRunner

    from iqabench.cli.main import cli

    result = CliRunner().invoke(cli, ["report", "--results", str(results), "--data-root", str(data_root), *args])
    rows = list(csv.DictReader((results / "report" / "suites" / "optioned.csv").open()))
    return result.exit_code, result.output, rows


def test_report_suite_finds_what_suite_run_made_with_its_options_and_dataset_map(tmp_path):
    path = tmp_path / "optioned.toml"
    path.write_text(OPTIONED)
    results, tiny_root = tmp_path / "results", tmp_path / "data"
    registry.datasets.get("tiny").load(tiny_root)
    flags = ["--dataset-map", "koniq10k=tiny", "--dataset-map", "spaq=tiny-b", "-o", "delay=0.0001"]
    code, out = _invoke(["run", str(path), "--data-root", str(tiny_root), "--results", str(results), "--device",
                         "cpu", "--no-progress", *flags])
    assert code == 0, out
    _, _, by_suite_run = _report(results, tiny_root, "--suite", str(path), *flags)

    def filled(rows):
        return {(r["row"], r["column"]): r["ours"] for r in rows}

    cells = filled(by_suite_run)
    assert set(cells) == {("Sharp", "koniq10k"), ("Sharp", "spaq"), ("PIQE", "koniq10k"), ("PIQE", "spaq")}
    assert all(cells.values()), cells  # every cell filled, as `suite run` left the table
    code, output, rows = _report(results, tiny_root, "--suite", str(path))  # no flags: what suite run recorded
    assert code == 0 and filled(rows) == cells and "-o delay=0.0001" in output
    # a run folder moved elsewhere under the results folder is still found (one finder for every reader)
    moved = next(p.parent for p in (results / "runs").rglob("manifest.json") if "slow-sharpness" in str(p))
    (results / "kept").mkdir()
    moved.rename(results / "kept" / moved.name)
    assert filled(_report(results, tiny_root, "--suite", str(path))[2]) == cells
    # the options matter: without them the suite's cells are other runs, which do not exist
    _, _, plain = _report(results, tiny_root, "--suite", str(path), "--dataset-map", "koniq10k=tiny",
                          "--dataset-map", "spaq=tiny-b")
    assert not any(r["ours"] for r in plain if r["row"] == "Sharp")
    assert all(r["ours"] for r in plain if r["row"] == "PIQE")  # a row without that option is the same run


# -- matching runs to cells: seeds, smoke tests, unfinished runs, training sources ------------------------
SEEDED = """
kind = "paper-table"
title = "seeded"
metrics = ["srcc"]
[source]
paper = "p"
table = "T"
[protocol]
split = "ratio80-0-20-seed{1..4}"
aggregate = "median"
[[columns]]
label = "Tiny"
dataset = "tiny"
[[rows]]
label = "Sharp"
method = "slow-sharpness"
[rows.published]
tiny = { srcc = 0.5 }
"""


def _fake_run(results: Path, cell, unit, srcc: float, *, status="complete", limit=None, created="2024-01-01T00:00:00",
              name="a", trained_on=None, **metrics):
    run_dir = results / "runs" / unit.dataset / f"{unit.split}-{unit.part}" / f"{cell.method}-{name}"
    run_dir.mkdir(parents=True)
    checkpoint = {"kind": "trained", "trained_on": trained_on} if trained_on else None
    manifest = {"method": cell.method, "dataset": unit.dataset, "split": unit.split, "part": unit.part,
                "limit": limit, "fingerprint": {"method": cell.method, "options": cell.fingerprint_options},
                "checkpoint": checkpoint}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    metrics = {"status": status, "srcc": srcc, "created": created, **metrics}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def test_seeded_cell_is_the_median_of_the_usable_runs_found(tmp_path):
    path = tmp_path / "seeded.toml"
    path.write_text(SEEDED)
    suite = load_suite(path)
    [cell] = suite.cells()
    u1, u2, u3, u4 = cell.units
    results = tmp_path / "results"
    _fake_run(results, cell, u1, 0.10)
    _fake_run(results, cell, u1, 0.90, created="2023-01-01T00:00:00", name="older")  # a rerun wins
    _fake_run(results, cell, u2, 0.40)
    _fake_run(results, cell, u3, 0.70)
    _fake_run(results, cell, u4, 0.99, limit=5)  # a smoke test never counts
    _fake_run(results, cell, u4, 0.98, status="partial", name="b")  # nor an unfinished run
    files = render_suite(suite, results, tmp_path / "out")
    [line] = list(csv.DictReader(files["csv"].open()))
    assert float(line["ours"]) == statistics.median([0.10, 0.40, 0.70])
    assert (line["runs_found"], line["runs_expected"]) == ("3", "4")
    assert "median over 3 of 4 splits" in line["notes"]
    assert "median over 3 of 4 splits" in files["md"].read_text()


# -- the reproduction verdict, on hand-made run folders ----------------------------------------------
VERDICT = """
kind = "paper-table"
title = "verdicts"
metrics = ["srcc", "plcc"]
[source]
paper = "p"
table = "T"
[protocol]
split = "all"
[[columns]]
label = "Tiny"
dataset = "tiny"
[[rows]]
label = "Inside"
method = "slow-sharpness"
[rows.published]
tiny = { srcc = 0.62, plcc = 0.7 }
[[rows]]
label = "Above"
method = "slow-sharpness"
[rows.published]
tiny = { srcc = 0.8 }
[[rows]]
label = "Below"
method = "slow-sharpness"
[rows.published]
tiny = { srcc = 0.5 }
[[rows]]
label = "Theirs"
published_only = true
[rows.published]
tiny = { srcc = 0.9 }
"""


def _csv_by(files, key=("row", "metric")) -> dict:
    return {tuple(line[k] for k in key): line for line in csv.DictReader(files["csv"].open())}


def test_verdict_is_reproduced_inside_our_interval_else_the_gap_in_widths(tmp_path):
    path = tmp_path / "verdict.toml"
    path.write_text(VERDICT)
    suite = load_suite(path)
    cell = suite.cells()[0]  # the three rows share one method, so one run fills them all
    low, high = 0.55, 0.65
    _fake_run(tmp_path / "results", cell, cell.units[0], 0.60, plcc=0.71, ci95={"srcc": [low, high]})
    files = render_suite(suite, tmp_path / "results", tmp_path / "out")
    lines = _csv_by(files)
    assert lines[("Inside", "srcc")]["verdict"] == "reproduced"
    assert float(lines[("Inside", "srcc")]["gap"]) == 0.0
    above, below = lines[("Above", "srcc")], lines[("Below", "srcc")]
    assert above["verdict"] == below["verdict"] == "not reproduced"
    assert float(above["gap"]) == pytest.approx(0.8 - high)
    assert float(above["gap_widths"]) == pytest.approx((0.8 - high) / (high - low))
    assert float(below["gap"]) == pytest.approx(0.5 - low)
    assert float(below["gap_widths"]) == pytest.approx((low - 0.5) / (high - low))
    assert lines[("Inside", "plcc")]["verdict"] == ""  # the fitted PLCC has no interval
    assert lines[("Theirs", "srcc")]["verdict"] == ""  # nor a published-only row a number of ours
    summary = "Reproduction: 1 reproduced, 2 not, 1 without an interval to judge by (of 4 published numbers"
    md, tex, html = (files[k].read_text() for k in ("md", "tex", "html"))
    assert "0.600 / 0.620 (−0.020) reproduced" in md
    assert f"0.600 / 0.800 (−0.200) gap {(0.8 - high) / (high - low):.1f}×" in md
    assert summary in md and summary in html and summary.replace("%", "\\%") in tex
    assert "gap 1.5$\\times$" in tex and "reproduced" in tex
    assert html.count('class="reproduced"') == 1 and html.count('class="not-reproduced"') == 2


def test_verdict_of_a_seeded_family_is_judged_by_the_spread_of_its_split_values(tmp_path):
    path = tmp_path / "seeded.toml"
    path.write_text(SEEDED.replace("tiny = { srcc = 0.5 }", "tiny = { srcc = 0.75 }"))
    suite = load_suite(path)
    [cell] = suite.cells()
    values = [0.10, 0.40, 0.70]
    for unit, value in zip(cell.units, values):  # 3 of 4 splits; their own intervals do not count
        _fake_run(tmp_path / "results", cell, unit, value, ci95={"srcc": [0.0, 1.0]})
    [line] = _csv_by(render_suite(suite, tmp_path / "results", tmp_path / "out")).values()
    assert (float(line["low"]), float(line["high"])) == (min(values), max(values))
    assert line["interval"] == "spread of the split values" and line["verdict"] == "not reproduced"
    assert float(line["gap_widths"]) == pytest.approx((0.75 - max(values)) / (max(values) - min(values)))
    path.write_text(SEEDED)  # 0.5 lies inside [0.1, 0.7]
    [line] = _csv_by(render_suite(load_suite(path), tmp_path / "results", tmp_path / "out2")).values()
    assert line["verdict"] == "reproduced"


def test_a_cell_with_only_a_smoke_test_run_stays_empty(tmp_path):
    path = tmp_path / "one.toml"
    path.write_text(GOOD)
    suite = load_suite(path)
    [cell] = suite.cells()
    results = tmp_path / "results"
    _fake_run(results, cell, cell.units[0], 0.3, limit=4)
    record, why = RunIndex(results).best(cell, cell.units[0])
    assert record is None and "--limit" in why
    text = render_suite(suite, results, tmp_path / "out")["md"].read_text()
    assert "— / 0.500" in text and "smoke-test" in text


def test_runs_trained_elsewhere_do_not_fill_a_cross_dataset_cell(tmp_path):
    path = tmp_path / "cross.toml"
    path.write_text(E2E)
    suite = load_suite(path).adapted(MAP)
    cell = next(c for c in suite.cells() if c.row.label.startswith("BRISQUE-SVR (trained on KonIQ)"))
    [unit] = cell.units
    assert (unit.dataset, unit.train_dataset, unit.train_split) == ("tiny-b", "tiny", "byref-ratio34-33-33-seed0")
    results = tmp_path / "results"
    _fake_run(results, cell, unit, 0.6, trained_on={"dataset": "tiny-b", "split": "x", "seed": 42}, name="own")
    assert RunIndex(results).best(cell, unit)[0] is None
    on = {"dataset": "tiny", "split": "byref-ratio34-33-33-seed0", "seed": 42, "limit": None}
    right = _fake_run(results, cell, unit, 0.7, trained_on=on, name="right")
    assert RunIndex(results).best(cell, unit)[0].run_dir == right


def test_dataset_map_and_options_fail_loudly_when_they_name_nothing(tmp_path):
    path = tmp_path / "e2e.toml"
    path.write_text(E2E)
    suite = load_suite(path)
    with pytest.raises(IqaError, match="does not use agiqa3k"):
        suite.adapted({"agiqa3k": "tiny"})
    with pytest.raises(IqaError, match="-o no_such_option: no computable row"):
        suite.adapted({}, {"no_such_option": 1})
    adapted = suite.adapted({}, {"delay": 0.0})  # only the row whose method has it
    assert [c.options.get("delay") for c in adapted.cells() if c.method == "gpu-only-sharpness"] == [0.0]
    assert all("delay" not in c.options for c in adapted.cells() if c.method != "gpu-only-sharpness")


def test_suite_list_and_show_run(capsys):
    assert suite_group.main(["list"], standalone_mode=False) in (0, None)
    listing = capsys.readouterr().out
    assert "seed004-table2" in listing and "INVALID" not in listing
    suite_group.main(["show", "seed004-table4"], standalone_mode=False)
    shown = capsys.readouterr().out
    assert "Table 4" in shown and "8: Area, BBox+Whole, Word, s_seg: dog-iqa" in shown


def test_an_accuracy_table_is_listed_shown_and_refused_by_suite_run_in_one_line(tmp_path):
    """seed002-qbench-a1 (kind accuracy-table): listed with its kind and cells, each cell shown with
    the `iqabench ask` command that computes it and why it cannot run here, and `suite run` says how."""
    from click.testing import CliRunner

    from iqabench.cli.main import cli

    name = "seed002-qbench-a1"
    raw = tomllib.loads((SUITES / f"{name}.toml").read_text())
    computed = [(r["label"], c["label"], c["questions"]) for r in raw["rows"] if r.get("method")
                for c in raw["columns"] if c.get("questions") and not c.get("published_only")]
    listed = CliRunner().invoke(cli, ["suite", "list"])
    assert listed.exit_code == 0, listed.output
    [line] = [line for line in listed.output.splitlines() if line.startswith(f"{name} ")]
    assert line.split()[1:3] == ["accuracy-table", str(len(computed))]
    shown = CliRunner().invoke(cli, ["--results", str(tmp_path / "none"), "suite", "show", name])
    assert shown.exit_code == 0, shown.output
    cells = shown.output.split("\ncells:\n")[1].split("\ncells computed")[0].splitlines()
    assert len(cells) == len(raw["rows"]) * len(raw["columns"])
    for row, col, questions in computed:
        [cell] = [c for c in cells if c.startswith(f"  {row} x {col}: ")]
        assert "`iqabench ask --method " in cell and f"--questions {questions} --images DIR`" in cell
        assert f"; cannot run here: needs the question file {questions}" in cell
    assert sum(": published only" in c for c in cells) == len(cells) - len(computed)
    assert f"cells computed by the harness: {len(computed)}" in shown.output
    for command in ("run", "plan"):
        refused = CliRunner().invoke(cli, ["suite", command, name])
        assert refused.exit_code != 0
        [error] = refused.output.strip().splitlines()
        assert "an accuracy table" in error and "`iqabench ask`" in error and f"suite show {name}" in error
