"""The reporter, on result folders written here with metrics computed by iqabench.metrics."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from iqabench.errors import IqaError
from iqabench.metrics import compute
from iqabench.report import build_report
from iqabench.report.collect import find_runs
from iqabench.report.plots import plot_run
from iqabench.report.tables import tex_escape

N_BOOT = 40  # enough to give intervals; kept small so the tests stay fast


def write_run(root, label, dataset, split, pred, target, *, part="test", method_hb=True, dataset_hb=True,
              n_failed=0, status="complete", dirname=None, drop_params=False, mtime=None, extra=None):
    """A run folder as the runner writes it; returns its metrics dict."""
    pred, target = np.asarray(pred, float), np.asarray(target, float)
    metrics = compute(pred, target, method_higher_better=method_hb, dataset_higher_better=dataset_hb,
                      n_boot=N_BOOT, seed=0)
    if drop_params:
        metrics.pop("logistic_params", None)
    method = label.split("@")[0]
    metrics.update({"method": method, "method_label": label, "dataset": dataset, "split": split,
                    "split_hash": f"hash-{split}", "part": part, "n": len(pred) + n_failed,
                    "n_failed": n_failed, "status": status, **(extra or {})})
    run_dir = root / dataset / f"{split}-{part}" / (dirname or label.replace("@", "_"))
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps(
        {"method": method, "method_label": label, "options": {}, "dataset": dataset, "split": split,
         "split_hash": metrics["split_hash"], "part": part}))
    rows = [{"id": f"img{i}", "score": repr(float(p)), "label": repr(float(t)), "error": ""}
            for i, (p, t) in enumerate(zip(pred, target))]
    rows += [{"id": f"bad{i}", "score": "", "label": "3.0", "error": "decode failed"} for i in range(n_failed)]
    pd.DataFrame(rows, columns=["id", "score", "label", "error"]).to_csv(run_dir / "predictions.csv", index=False)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if mtime is not None:
        os.utime(run_dir / "metrics.json", (mtime, mtime))
    return metrics


def noisy(target, noise, seed):
    return target + np.random.default_rng(seed).normal(0, noise, len(target))


@pytest.fixture()
def target():
    return np.random.default_rng(1).uniform(1, 5, 60)


def main_table(md: str) -> dict[str, dict[str, str]]:
    """The first Markdown table as {method: {column header: cell text}}."""
    lines = [ln for ln in md.split("## Runs")[0].splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split(" | ")]
    out = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        out[cells[0].replace("\\_", "_")] = dict(zip(head[1:], cells[1:]))
    return out


def plain(cell: str) -> str:
    return cell.strip("*_")


def test_cells_equal_metrics_and_best_is_marked(tmp_path, target):
    results = tmp_path / "results"
    metrics = {name: write_run(results, name, "koniq", "official", noisy(target, noise, seed), target)
               for name, noise, seed in (("good_m", 0.3, 2), ("mid_m", 1.0, 3), ("weak_m", 3.0, 4))}
    # a DMOS dataset (lower is better) scored by a lower-better method: both are negated, SRCC stays positive
    live = write_run(results, "good_m", "live", "all", -noisy(target, 0.5, 5), -target,
                     method_hb=False, dataset_hb=False)
    summary = build_report(results, tmp_path / "out")

    md = summary["table_md"].read_text()
    table = main_table(md)
    for name, m in metrics.items():
        assert plain(table[name]["koniq SRCC"]) == f"{m['srcc']:.3f}"
        assert plain(table[name]["koniq PLCC"]) == f"{m['plcc']:.3f}"
    assert plain(table["good_m"]["live SRCC"]) == f"{live['srcc']:.3f}" and live["srcc"] > 0.8
    assert table["mid_m"]["live SRCC"] == "—"  # no run: an empty cell, not a number
    assert "after the VQEG four-parameter logistic fit" in md and "sign-aware" in md

    tex = summary["table_tex"].read_text()
    for metric in ("srcc", "plcc"):
        order = sorted(metrics, key=lambda k: metrics[k][metric], reverse=True)
        best, second, third = (f"{metrics[k][metric]:.3f}" for k in order)
        assert rf"\textbf{{{best}}}" in tex and rf"\underline{{{second}}}" in tex
        assert rf"\textbf{{{third}}}" not in tex and rf"\underline{{{third}}}" not in tex
        assert plain(table[order[0]][f"koniq {metric.upper()}"]) == best
        assert table[order[0]][f"koniq {metric.upper()}"] == f"**{best}**"
        assert table[order[1]][f"koniq {metric.upper()}"] == f"_{second}_"
    assert r"good\_m" in tex and "good_m" not in tex.replace(r"good\_m", "")  # underscores escaped
    assert r"\toprule" in tex and r"\bottomrule" in tex


def test_null_cells_and_failed_counts(tmp_path, target):
    results = tmp_path / "results"
    constant = write_run(results, "flat_m", "koniq", "official", np.full(len(target), 2.0), target)
    assert constant["srcc"] is None and constant["plcc"] is None
    write_run(results, "ok_m", "koniq", "official", noisy(target, 0.5, 2), target, n_failed=7)
    write_run(results, "cut_m", "koniq", "official", noisy(target, 0.5, 3), target, status="partial",
              extra={"n_missing": 5})
    summary = build_report(results, tmp_path / "out")
    md_text = summary["table_md"].read_text()
    assert "| cut\\_m | koniq | official | test | 1 | 60 | 0 | partial |" in md_text
    assert "5 image(s) not scored yet (run not finished)" in md_text

    table = main_table(summary["table_md"].read_text())
    assert table["flat_m"]["koniq SRCC"] == "—" and table["flat_m"]["koniq PLCC"] == "—"
    tex = summary["table_tex"].read_text()
    flat_line = next(ln for ln in tex.splitlines() if ln.startswith(r"flat\_m &"))
    assert flat_line == r"flat\_m & -- & -- \\"
    ok_run_line = next(ln for ln in tex.splitlines() if ln.startswith(r"ok\_m & koniq"))
    assert "& 67 & 7 &" in ok_run_line  # n and failed shown in the runs table
    md_runs = summary["table_md"].read_text().split("## Runs")[1]
    assert "| ok\\_m | koniq | official | test | 1 | 67 | 7 | complete |" in md_runs
    assert "constant predictions or labels" in md_runs

    csv = pd.read_csv(summary["table_csv"])
    flat = csv[csv.method_label == "flat_m"].iloc[0]
    assert pd.isna(flat.srcc) and pd.isna(flat.plcc) and flat.undefined_reason == "constant predictions or labels"
    assert csv[csv.method_label == "ok_m"].iloc[0].n_failed == 7


def test_median_over_seeded_splits(tmp_path, target):
    results = tmp_path / "results"
    per_seed = [write_run(results, "m", "kadid", f"byref-ratio80-0-20-seed{s}", noisy(target, 0.2 * s, s), target)
                for s in range(1, 11)]
    # a second method with one undefined seed: its median must stay undefined
    write_run(results, "n", "kadid", "byref-ratio80-0-20-seed1", noisy(target, 0.5, 1), target)
    write_run(results, "n", "kadid", "byref-ratio80-0-20-seed2", np.ones(len(target)), target)
    # a different protocol is a different column
    write_run(results, "m", "kadid", "ratio80-0-20-seed1", noisy(target, 0.5, 1), target)
    summary = build_report(results, tmp_path / "out")

    csv = pd.read_csv(summary["table_csv"])
    row = csv[(csv.method_label == "m") & (csv.split == "byref-ratio80-0-20-seed*")].iloc[0]
    assert row.n_splits == 10 and row.seeds == " ".join(map(str, range(1, 11)))
    assert row.srcc == pytest.approx(np.median([m["srcc"] for m in per_seed]), abs=1e-12)
    assert row.plcc == pytest.approx(np.median([m["plcc"] for m in per_seed]), abs=1e-12)
    assert row.n == 10 * len(target)
    # a single seeded split is shown as the plain run it is, not as a median
    other = csv[(csv.method_label == "m") & (csv.split == "ratio80-0-20-seed1")].iloc[0]
    assert other.n_splits == 1
    undefined = csv[csv.method_label == "n"].iloc[0]
    assert undefined.n_splits == 2 and pd.isna(undefined.srcc)
    assert "srcc, krcc, plcc, plcc_raw, rmse undefined in 1 of 2 split(s)" in undefined.notes

    table = main_table(summary["table_md"].read_text())
    header = "kadid (byref-ratio80-0-20 median, test) SRCC"
    assert plain(table["m"][header]) == f"{np.median([m['srcc'] for m in per_seed]):.3f}"
    assert table["n"][header] == "—"
    assert "median over 10 split(s), seeds 1-10" in summary["table_md"].read_text()
    assert len(summary["plots"]) == 13  # one per seed run, not one per median


def test_csv_round_trip_full_precision(tmp_path, target):
    results = tmp_path / "results"
    written = {name: write_run(results, name, "spaq", "all", noisy(target, noise, 7), target, n_failed=fail)
               for name, noise, fail in (("a", 0.4, 0), ("b", 0.9, 3))}
    summary = build_report(results, tmp_path / "out")
    csv = pd.read_csv(summary["table_csv"]).set_index("method_label")
    for name, m in written.items():
        row = csv.loc[name]
        for key in ("srcc", "krcc", "plcc", "plcc_raw", "rmse"):
            assert row[key] == m[key]  # exact: repr of the float survives the round trip
        for key in ("srcc", "krcc", "plcc_raw"):
            assert [row[f"{key}_ci95_lo"], row[f"{key}_ci95_hi"]] == m["ci95"][key]
        assert (row.n, row.n_failed, row.n_scored) == (m["n"], m["n_failed"], m["n_scored"])
        assert row.plcc_kind.startswith("after 4-parameter logistic fit")


def test_plots_are_valid_images_and_negative_srcc_stays_negative(tmp_path, target):
    results = tmp_path / "results"
    backwards = write_run(results, "backwards_m", "koniq", "official", -noisy(target, 0.5, 2), target)
    write_run(results, "fine_m", "koniq", "official", noisy(target, 0.5, 3), target, drop_params=True)
    assert backwards["srcc"] < -0.5
    summary = build_report(results, tmp_path / "out")

    assert len(summary["plots"]) == 2
    for path in summary["plots"]:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 300
            assert len(np.unique(np.asarray(image.convert("L")))) > 10  # something is drawn

    # a falling logistic: PLCC carries the fit's direction (negative), flagged, never ranked
    assert backwards["logistic_params"][0] < backwards["logistic_params"][1] and backwards["plcc"] < 0
    plcc_cell = main_table(summary["table_md"].read_text())["backwards_m"]["koniq PLCC"]
    assert plcc_cell == f"{backwards['plcc']:.3f}†"
    assert f"{-backwards['plcc']:.3f}$^\\dagger$ \\\\" in summary["table_tex"].read_text()
    assert any("decreasing logistic fit" in note for note in summary["notes"])

    expected = f"{backwards['srcc']:.3f}"
    assert expected.startswith("-")
    table = main_table(summary["table_md"].read_text())
    assert plain(table["backwards_m"]["koniq SRCC"]) == expected
    assert "$-$" + expected[1:] in summary["table_tex"].read_text()
    csv = pd.read_csv(summary["table_csv"])
    assert csv[csv.method_label == "backwards_m"].iloc[0].srcc == backwards["srcc"]


def test_plot_without_logistic_params_draws_no_curve(tmp_path, target):
    results = tmp_path / "results"
    write_run(results, "m", "koniq", "official", noisy(target, 0.5, 3), target, drop_params=True, n_failed=2)
    run = find_runs(results)[0]
    drawn = plot_run(run, tmp_path / "p.png")
    assert drawn == {"n_scored": len(target), "n_failed": 2, "curve": False}
    write_run(results, "k", "koniq", "official", noisy(target, 0.5, 3), target)
    run = next(r for r in find_runs(results) if r.metrics["method_label"] == "k")
    assert plot_run(run, tmp_path / "q.png")["curve"] is True


def test_most_recent_complete_run_is_kept(tmp_path, target):
    results = tmp_path / "results"
    old = write_run(results, "m", "koniq", "official", noisy(target, 0.3, 2), target, dirname="m-old", mtime=1e9)
    write_run(results, "m", "koniq", "official", noisy(target, 2.0, 3), target, dirname="m-older", mtime=9e8)
    write_run(results, "m", "koniq", "official", noisy(target, 3.0, 4), target, dirname="m-new-partial",
              status="partial", mtime=2e9)
    summary = build_report(results, tmp_path / "out")
    csv = pd.read_csv(summary["table_csv"])
    assert len(csv) == 1 and csv.iloc[0].srcc == old["srcc"] and csv.iloc[0].status == "complete"
    assert "kept m-old (most recent complete run)" in csv.iloc[0].notes
    assert "m-new-partial (partial)" in csv.iloc[0].notes
    assert any("kept m-old" in note for note in summary["notes"])

    # the runner's `created` timestamp outranks the file time
    write_run(results, "m", "koniq", "official", noisy(target, 1.0, 5), target, dirname="m-created",
              mtime=5e8, extra={"created": "2040-01-01T00:00:00+00:00"})
    write_run(results, "m", "koniq", "official", noisy(target, 1.0, 6), target, dirname="m-partial-created",
              status="partial", mtime=5e8, extra={"created": "2041-01-01T00:00:00+00:00", "n_missing": 4})
    csv = pd.read_csv(build_report(results, tmp_path / "out2")["table_csv"])
    assert "kept m-created (most recent complete run)" in csv.iloc[0].notes


def test_empty_results_folder_is_an_error(tmp_path):
    (tmp_path / "results").mkdir()
    with pytest.raises(IqaError, match="no metrics.json"):
        build_report(tmp_path / "results", tmp_path / "out")


def test_latex_special_characters_are_escaped():
    assert tex_escape("a_b&c%d$e#f{g}h~i^j\\k") == (
        r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k")
