"""The reporter, on run folders written here by hand (manifest, inputs, predictions, metrics as the
runner writes them; metrics computed by iqabench.metrics), so no model ever runs."""
from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from iqabench.errors import IqaError
from iqabench.metrics import compute
from iqabench.report import ReportOptions, build_report, summary_lines
from iqabench.report.collect import collect
from iqabench.report.identity import identity_of
from iqabench.report.latex import tex_escape
from iqabench.report.plots import label_axis_title, scatter
from iqabench.report.select import runs_of, select
from iqabench.runs import inputs_hash

N_BOOT = 40  # the runs' own CIs: small, these tests do not look at them
FAST = dict(progress=False, bootstrap_resamples=200, plots=False)


def write_run(results, method, dataset, split, pred, labels, *, part="test", options=None, key=None,
              method_hb=True, label_hb=True, label_name="MOS", limit=None, status=None, checkpoint=None,
              batch_size=1, created="2030-01-01T00:00:00+00:00", groups=None, failed=0, ids=None,
              finished=True, method_label=None, manifest_extra=None):
    """A run folder as the runner writes it (manifest, inputs, predictions, metrics); returns metrics."""
    pred, labels = np.asarray(pred, float), np.asarray(labels, float)
    ids = list(ids) if ids is not None else [f"img{i:03d}" for i in range(len(pred))]
    options = dict(options or {})
    fingerprint = {"method": method, "options": options}
    identity = {"fingerprint": fingerprint, "dataset": dataset, "split": split, "part": part, "limit": limit,
                "batch_size": batch_size, "checkpoint": checkpoint}
    key = key or hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    run_dir = results / "runs" / dataset / f"{split}-{part}" / f"{method.replace(':', '-')}-{key}"
    run_dir.mkdir(parents=True)
    manifest = {"method": method, "method_label": method_label or method, "method_kind": "classic",
                "options": options, "dataset": dataset, "split": split, "split_hash": f"h-{dataset}-{split}",
                "part": part, "n_images": len(pred) + failed, "limit": limit, "device": "cpu",
                "batch_size": batch_size, "seed": 42, "checkpoint": checkpoint, "label_name": label_name,
                "label_range": [1, 5], "label_higher_better": label_hb, "method_higher_better": method_hb,
                "fingerprint": fingerprint, "identity": identity, "key": key, **(manifest_extra or {})}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    images = []
    for k, (sid, y) in enumerate(zip(ids, labels)):
        item = {"id": sid, "path": f"images/{sid}.png", "label": float(y)}
        for name, values in (groups or {}).items():
            item[name] = values[k]
        images.append(item)
    images += [{"id": f"bad{i}", "path": f"images/bad{i}.png", "label": 3.0} for i in range(failed)]
    (run_dir / "inputs.json").write_text(json.dumps({"hash": inputs_hash(images), "images": images}))
    with open(run_dir / "predictions.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "score", "label", "error"])
        writer.writerows([sid, repr(float(p)), repr(float(y)), ""] for sid, p, y in zip(ids, pred, labels))
        writer.writerows([f"bad{i}", "", "3.0", "decode: broken file"] for i in range(failed))
    metrics = compute(pred, labels, method_higher_better=method_hb, dataset_higher_better=label_hb,
                      n_boot=N_BOOT, seed=0)
    metrics.update({"method": method, "method_label": method_label or method, "dataset": dataset, "split": split,
                    "split_hash": manifest["split_hash"], "part": part, "limit": limit, "checkpoint": checkpoint,
                    "n": len(pred) + failed, "n_failed": failed, "n_missing": 0, "key": key, "created": created,
                    "status": status or "complete"})
    if status == "partial":
        metrics["n_missing"] = 5
    if finished:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return metrics


def trained(dataset, split, seed=42, limit=None):
    return {"kind": "trained", "dir": f"results/checkpoints/{dataset}/{split}/m-x", "files": {"w.pt": split},
            "trained_on": {"dataset": dataset, "split": split, "split_hash": "h", "seed": seed, "limit": limit}}


def noisy(target, noise, seed):
    return target + np.random.default_rng(seed).normal(0, noise, len(target))


@pytest.fixture(scope="module")
def target():
    return np.random.default_rng(1).uniform(1, 5, 80)


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def md_table(md: str) -> dict[str, dict[str, str]]:
    """The first Markdown table of table.md as {method label: {header: cell}}."""
    lines = [ln for ln in md.split("## Notes")[0].splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in re.split(r"(?<!\\)\|", lines[0])[1:-1]]
    out = {}
    for line in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        out[cells[0].replace("\\_", "_")] = dict(zip(head[1:], cells[1:]))
    return out


def number(cell: str) -> str:
    return re.match(r"\**(-?[0-9.]+|—)", cell).group(1)


# -- the main table ------------------------------------------------------------------------------------
def test_cells_equal_metrics_best_bold_and_ties_marked(tmp_path, target):
    results = tmp_path / "results"
    good = noisy(target, 0.3, 2)
    written = {"good_m": write_run(results, "good_m", "koniq", "official", good, target),
               "twin_m": write_run(results, "twin_m", "koniq", "official", good + noisy(0 * target, 0.01, 9), target),
               "weak_m": write_run(results, "weak_m", "koniq", "official", noisy(target, 3.0, 4), target)}
    # a DMOS set (lower is better) and a lower-better method: both negated, the SRCC stays positive
    dmos = write_run(results, "good_m", "live", "all", -noisy(target, 0.5, 5), -target, method_hb=False,
                     label_hb=False, label_name="dmos")
    summary = build_report(results, tmp_path / "out", ReportOptions(**FAST))
    table = md_table(summary["table_md"].read_text())
    for name, m in written.items():
        assert number(table[name]["koniq SRCC"]) == f"{m['srcc']:.3f}"
        assert number(table[name]["koniq PLCC"]) == f"{m['plcc']:.3f}"
    assert dmos["srcc"] > 0.8 and number(table["good_m"]["live SRCC"]) == f"{dmos['srcc']:.3f}"
    assert table["weak_m"]["live SRCC"] == "—"  # no run: an empty cell, never a number

    best = max(written, key=lambda k: written[k]["srcc"])
    assert table[best]["koniq SRCC"].startswith("**")
    assert not table["weak_m"]["koniq SRCC"].startswith("**") and "†" not in table["weak_m"]["koniq SRCC"]
    other = "twin_m" if best == "good_m" else "good_m"
    if round(written[other]["srcc"], 3) != round(written[best]["srcc"], 3):
        assert table[other]["koniq SRCC"].endswith("†")  # indistinguishable from the best
    tex = summary["table_tex"].read_text()
    assert rf"\textbf{{{written[best]['srcc']:.3f}}}" in tex and r"$^{\dagger}$" in tex
    # the seed the runs were scored with (their manifests say 42), stated in the legend
    assert r"\dagger$ not significantly different from the best (paired bootstrap, 200 resamples, seed 42" in tex

    rows = {(r["label"], r["dataset"]): r for r in read_csv(summary["table_csv"])}
    for name, m in written.items():
        for key in ("srcc", "krcc", "plcc", "plcc_raw", "rmse"):
            assert float(rows[(name, "koniq")][key]) == m[key]  # full precision survives
    assert "srcc" in rows[(best, "koniq")]["best"].split()

    sig = read_csv(summary["files"]["significance.csv"])
    weak = next(r for r in sig if r["method_b"] == "weak_m" and r["metric"] == "srcc")
    assert weak["method_a"] == best and float(weak["p_bootstrap"]) < 0.05 and float(weak["p_williams"]) < 0.05
    assert weak["n_boot"] == "200" and weak["bootstrap_seed"] == "42" and int(weak["n"]) == len(target)
    assert float(weak["diff"]) == pytest.approx(written[best]["srcc"] - written["weak_m"]["srcc"], abs=1e-12)


def test_latex_label_per_report_and_the_legend_states_the_seed_used(tmp_path, target):
    results = tmp_path / "my-results"
    for name, seed in (("good_m", 2), ("twin_m", 3)):  # alike: the weaker is marked as not different
        metrics = write_run(results, name, "koniq", "official", noisy(target, 0.3, seed), target)
        path = next(results.rglob(f"{name}-*/metrics.json"))
        path.write_text(json.dumps({**metrics, "bootstrap_seed": 7}))  # `run --seed 7`
    default = build_report(results, results / "report", ReportOptions(**FAST))
    tex = default["table_tex"].read_text()
    assert r"\label{tab:my-results}" in tex and r"\label{tab:my-results-runs}" in default["files"]["runs.tex"].read_text()
    assert "200 resamples, seed 7" in tex
    sig = read_csv(default["files"]["significance.csv"])
    assert {r["bootstrap_seed"] for r in sig} == {"7"}
    other = build_report(results, tmp_path / "Paper Tables", ReportOptions(**FAST, label="tab:main", bootstrap_seed=3))
    tex = other["table_tex"].read_text()
    assert r"\label{tab:main}" in tex and r"\label{tab:main-runs}" in other["files"]["runs.tex"].read_text()
    assert "200 resamples, seed 3" in tex and "seed 7" not in tex
    assert r"\label{tab:paper-tables}" in build_report(results, tmp_path / "Paper Tables",
                                                       ReportOptions(**FAST))["table_tex"].read_text()


def test_full_reference_rows_are_marked_and_never_ranked_against_no_reference_ones(tmp_path, target):
    results = tmp_path / "results"
    fr = {"method_full_reference": True}
    near = write_run(results, "fr_near", "koniq", "official", noisy(target, 0.05, 2), target, manifest_extra=fr)
    write_run(results, "fr_far", "koniq", "official", noisy(target, 2.0, 3), target, manifest_extra=fr)
    nr = write_run(results, "nr_m", "koniq", "official", noisy(target, 1.0, 4), target)
    write_run(results, "nr_weak", "koniq", "official", noisy(target, 4.0, 5), target)
    assert near["srcc"] > nr["srcc"]
    summary = build_report(results, tmp_path / "out", ReportOptions(**FAST))
    md = summary["table_md"].read_text()
    table = md_table(md)
    assert set(table) == {"fr_near [FR]", "fr_far [FR]", "nr_m", "nr_weak"}
    assert table["nr_m"]["koniq SRCC"].startswith("**")  # the best no-reference method, although fr_near is higher
    assert table["fr_near [FR]"]["koniq SRCC"].startswith("**")  # the best full-reference one, its own class
    assert not table["fr_far [FR]"]["koniq SRCC"].startswith("**") and not table["nr_weak"]["koniq SRCC"].startswith("**")
    assert "[FR] full-reference method" in md and "never against no-reference ones" in md
    sig = read_csv(summary["files"]["significance.csv"])
    assert {frozenset((r["method_a"], r["method_b"])) for r in sig if r["metric"] == "srcc"} == {
        frozenset(("fr_near", "fr_far")), frozenset(("nr_m", "nr_weak"))}  # never across the classes
    tex = summary["table_tex"].read_text()
    assert r"fr\_\allowbreak{}near$^{\mathrm{FR}}$ &" in tex


def test_columns_name_their_exact_splits_n_and_labels_and_warn_on_the_labels_own_method(tmp_path, target):
    results = tmp_path / "results"
    for seed in (1, 2):
        write_run(results, "m", "koniq", f"ratio80-0-20-seed{seed}", noisy(target, 0.5, seed), target)
    write_run(results, "m", "koniq", "byref-ratio60-20-20-seed42", noisy(target, 0.5, 3), target)
    write_run(results, "fsim_m", "synth", "official", noisy(target, 0.01, 4), target, label_name="fsim",
              manifest_extra={"label_method": "fsim_m"})
    write_run(results, "m", "synth", "official", noisy(target, 0.5, 5), target, label_name="fsim",
              manifest_extra={"label_method": "fsim_m"})
    summary = build_report(results, tmp_path / "out", ReportOptions(**FAST))
    md = summary["table_md"].read_text()
    head = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert "koniq (ratio80-0-20-seed{1..2}) SRCC" in head and "koniq (byref-ratio60-20-20-seed42) SRCC" in head
    assert "seed\\*" not in head and "seed*" not in md.replace("seed\\*", "seed*").split("## Notes")[0]
    for text in (md, summary["table_tex"].read_text()):
        plain = text.replace("\\_", "_").replace("\\{", "{").replace("\\}", "}")
        assert f"split ratio80-0-20-seed{{1..2}}, test part, n = {len(target)} per split, labels MOS" in plain
        assert f"split byref-ratio60-20-20-seed42, test part, n = {len(target)}, labels MOS" in plain
        assert "labels FSIM, computed by fsim_m (not human opinion)" in plain
    [warning] = [w for w in summary["warnings"] if "computed the dataset's labels" in w]
    assert warning.startswith("fsim_m on synth:") and "agreement with itself" in warning
    assert "fsim_m on synth: this method computed" in md.replace("\\_", "_")
    table = md_table(md)
    assert table["fsim_m"]["synth SRCC"].endswith("§") and not table["fsim_m"]["synth SRCC"].startswith("**")
    assert table["m"]["synth SRCC"].startswith("**")  # the best of the methods that do not define the labels
    assert "§ the method computed the dataset's labels: it scores their own definition and is not ranked" in md


def test_backwards_method_stays_negative_and_its_plcc_is_never_ranked(tmp_path, target):
    results = tmp_path / "results"
    back = write_run(results, "back_m", "koniq", "official", -noisy(target, 0.5, 2), target)
    write_run(results, "fine_m", "koniq", "official", noisy(target, 2.0, 3), target)
    summary = build_report(results, tmp_path / "out", ReportOptions(**FAST, metrics=("srcc", "plcc", "plcc_raw")))
    assert back["srcc"] < -0.5 and back["logistic_params"][0] < back["logistic_params"][1]
    table = md_table(summary["table_md"].read_text())
    assert number(table["back_m"]["koniq SRCC"]) == f"{back['srcc']:.3f}"
    assert table["back_m"]["koniq PLCC"] == f"{back['plcc']:.3f}‡"  # falling fit: marked, not bold
    assert number(table["back_m"]["koniq PLCC raw"]) == f"{back['plcc_raw']:.3f}"
    assert table["fine_m"]["koniq PLCC"].startswith("**")
    tex = summary["table_tex"].read_text()
    assert "$-$" + f"{back['srcc']:.3f}"[1:] in tex and r"$^{\ddagger}$" in tex


def test_null_cells_and_failed_images(tmp_path, target):
    results = tmp_path / "results"
    write_run(results, "flat_m", "koniq", "official", np.full(len(target), 2.0), target)
    write_run(results, "ok_m", "koniq", "official", noisy(target, 0.5, 2), target, failed=7)
    summary = build_report(results, tmp_path / "out", ReportOptions(**FAST))
    table = md_table(summary["table_md"].read_text())
    assert table["flat_m"]["koniq SRCC"] == "—" and table["flat_m"]["koniq PLCC"] == "—"
    assert "flat_m / koniq official test: undefined: constant predictions or labels" in summary["notes"]
    assert "ok_m / koniq official test: 7 image(s) failed and are left out of the metrics" in summary["notes"]
    runs = {r["label"]: r for r in read_csv(summary["files"]["runs.csv"])}
    assert (runs["ok_m"]["n"], runs["ok_m"]["n_failed"], runs["ok_m"]["role"]) == ("87", "7", "used")
    assert r"flat\_m & -- & -- \\" in summary["table_tex"].read_text().replace(r"\allowbreak{}", "")


def test_a_run_without_predictions_keeps_its_cell_and_says_what_is_missing(tmp_path, target):
    results = tmp_path / "results"
    write_run(results, "a", "koniq", "official", noisy(target, 0.3, 2), target)
    gone = write_run(results, "b", "koniq", "official", noisy(target, 0.6, 3), target)
    next(p for p in (results / "runs").rglob("predictions.csv") if "/b-" in str(p)).unlink()
    summary = build_report(results, tmp_path / "out", ReportOptions(**FAST))
    assert number(md_table(summary["table_md"].read_text())["b"]["koniq SRCC"]) == f"{gone['srcc']:.3f}"
    [test] = [r for r in read_csv(summary["files"]["significance.csv"]) if r["metric"] == "srcc"]
    assert test["note"].startswith("not tested: ") and "no predictions" in test["note"] and test["p_bootstrap"] == ""


# -- run identity and labels --------------------------------------------------------------------------
def test_distinct_runs_get_distinct_readable_rows(tmp_path, target):
    results = tmp_path / "results"
    p = noisy(target, 0.5, 2)
    write_run(results, "vp", "koniq", "official", p, target, options={"prompt": "padding", "size": 30},
              method_label="vp[prompt=padding]")
    write_run(results, "vp", "koniq", "official", noisy(target, 0.6, 3), target,
              options={"prompt": "overlay", "size": 30})
    # the same trainable method trained on two other sets (cross-dataset), and in-dataset on two sets
    write_run(results, "svr", "kadid", "all", p, target, checkpoint=trained("koniq", "official"))
    write_run(results, "svr", "kadid", "all", noisy(target, 0.7, 4), target, checkpoint=trained("spaq", "official"))
    write_run(results, "svr", "koniq", "official", noisy(target, 0.4, 5), target,
              checkpoint=trained("koniq", "official"))
    write_run(results, "svr", "spaq", "official", noisy(target, 0.4, 6), target, checkpoint=trained("spaq", "official"))
    write_run(results, "zs", "koniq", "official", p, target, batch_size=1)
    write_run(results, "zs", "koniq", "official", noisy(target, 0.9, 7), target, batch_size=8)
    summary = build_report(results, tmp_path / "out", ReportOptions(**FAST))
    table = md_table(summary["table_md"].read_text())
    assert set(table) == {"vp (prompt=padding)", "vp (prompt=overlay)", "svr (trained in-dataset)",
                          "svr (trained on koniq/official)", "svr (trained on spaq/official)",
                          "zs (batch 1)", "zs (batch 8)"}
    inside = table["svr (trained in-dataset)"]  # one row across datasets: the within-dataset protocol
    assert inside["koniq SRCC"] != "—" and inside["spaq SRCC"] != "—" and inside["kadid SRCC"] == "—"
    runs = read_csv(summary["files"]["runs.csv"])
    assert len(runs) == 8 and {r["role"] for r in runs} == {"used"}  # nothing merged, nothing set aside

    # display names win; names shared by several rows are told apart, and never truncated
    long_name = "Visual prompt tuning of mPLUG-Owl2 with a very long descriptive name"
    names = {"vp": long_name, "svr (trained on spaq/official)": "SVR-SPAQ"}
    summary = build_report(results, tmp_path / "out2", ReportOptions(**FAST, display_names=names))
    table = md_table(summary["table_md"].read_text())
    assert {f"{long_name} (prompt=padding)", f"{long_name} (prompt=overlay)", "SVR-SPAQ"} <= set(table)
    assert "svr (trained on koniq/official)" in table
    # the most specific key wins: generated label, then the manifest's method_label, then the method
    names = {"vp": "VP", "vp[prompt=padding]": "VP-pad", "vp (prompt=padding)": "VP padding"}
    table = md_table(build_report(results, tmp_path / "out3", ReportOptions(**FAST, display_names=names))
                     ["table_md"].read_text())
    assert {"VP padding", "VP"} <= set(table) and "VP-pad" not in table
    del names["vp (prompt=padding)"]
    table = md_table(build_report(results, tmp_path / "out4", ReportOptions(**FAST, display_names=names))
                     ["table_md"].read_text())
    assert {"VP-pad", "VP"} <= set(table)
    assert "Visual prompt tuning of mPLUG-Owl2 with a very long descriptive name (prompt=overlay)" in \
        summary["table_tex"].read_text().replace(r"\allowbreak{}", "")


def test_runs_of_finds_one_identity_or_says_which(tmp_path, target):
    results = tmp_path / "results"
    write_run(results, "m", "koniq", "official", noisy(target, 0.5, 2), target, options={"a": 1})
    write_run(results, "m", "spaq", "official", noisy(target, 0.5, 3), target, options={"a": 1})
    write_run(results, "m", "spaq", "official", noisy(target, 0.5, 4), target, options={"a": 2})
    runs = collect(results)
    mine = runs_of(runs, lambda r: r.manifest["options"] == {"a": 1})
    assert len(mine) == 2 and len({identity_of(r) for r in mine}) == 1
    assert set(select(mine).cells) == {(identity_of(mine[0]), c) for c in select(mine).columns}
    with pytest.raises(IqaError, match=r"2 different methods/settings: m \(a=1\); m \(a=2\)"):
        runs_of(runs, lambda r: r.method == "m")


# -- reruns, smoke tests, partial runs ------------------------------------------------------------------
def test_reruns_smoke_tests_and_unfinished_runs_stay_out_of_the_table(tmp_path, target):
    results = tmp_path / "results"
    old = write_run(results, "m", "koniq", "official", noisy(target, 0.3, 2), target, key="old",
                    created="2030-01-01T00:00:00+00:00")
    new = write_run(results, "m", "koniq", "official", noisy(target, 1.0, 3), target, key="new",
                    created="2031-01-01T00:00:00+00:00")
    # newer and better, but not full or not complete: never preferred
    write_run(results, "m", "koniq", "official", target[:10], target[:10], key="smoke", limit=10,
              created="2032-01-01T00:00:00+00:00")
    write_run(results, "m", "koniq", "official", target, target, key="cut", status="partial",
              created="2033-01-01T00:00:00+00:00")
    write_run(results, "m", "koniq", "official", target, target, key="bad", status="inconsistent",
              created="2034-01-01T00:00:00+00:00")
    write_run(results, "m", "koniq", "official", target, target, key="killed", finished=False)
    write_run(results, "m", "koniq", "official", target, target, key="tiny-ckpt",
              checkpoint=trained("koniq", "official", limit=8))
    # a method with only a smoke test has no row at all
    write_run(results, "only_smoke", "koniq", "official", target[:10], target[:10], limit=10)
    summary = build_report(results, tmp_path / "out", ReportOptions(**FAST))

    table = md_table(summary["table_md"].read_text())
    assert set(table) == {"m"} and number(table["m"]["koniq SRCC"]) == f"{new['srcc']:.3f}" != f"{old['srcc']:.3f}"
    runs = {r["run_dir"].rsplit("-", 1)[-1]: r for r in read_csv(summary["files"]["runs.csv"])}
    assert runs["new"]["role"] == "used"
    assert runs["old"]["role"] == "superseded" and "superseded by the more recent" in runs["old"]["remark"]
    assert runs["smoke"]["remark"].startswith("smoke test, n=10")
    assert runs["cut"]["remark"].startswith("partial, 5 of 80")
    assert runs["bad"]["role"] == "inconsistent" and runs["killed"]["role"] == "unfinished"
    assert runs["ckpt"]["remark"].startswith("smoke test (checkpoint trained with --limit 8)")
    assert "newer than the run used" in runs["smoke"]["remark"]
    smoke_only = next(r for r in runs.values() if r["method"] == "only_smoke")
    assert smoke_only["remark"] == "smoke test, n=10; no full complete run of this method on this column"
    assert "only_smoke / koniq official test: no full complete run; see the runs table" in summary["notes"]
    alone = build_report(results, tmp_path / "alone", ReportOptions(**FAST, part="val"))  # nothing in that part
    assert alone["warnings"] == ["no full complete run to tabulate: the main table is empty (see runs.md)"]
    assert "tabular" not in alone["table_tex"].read_text() and "No full complete run" in alone["table_md"].read_text()
    assert {r["role"] for r in read_csv(alone["files"]["runs.csv"])} == {"other part"}
    runs_md = summary["files"]["runs.md"].read_text()
    assert "smoke test, n=10" in runs_md and "partial, 5 of 80" in runs_md
    assert "smoke test, n=10" in summary["files"]["runs.tex"].read_text().replace(r"\allowbreak{}", "")


# -- the n-split protocol ---------------------------------------------------------------------------------
def test_seeded_splits_fold_into_a_median_with_its_spread(tmp_path, target):
    results = tmp_path / "results"
    zero = [write_run(results, "zs", "kadid", f"byref-ratio80-0-20-seed{s}", noisy(target, 0.2 * s, s), target)
            for s in range(1, 6)]
    fitted = [write_run(results, "svr", "kadid", f"byref-ratio80-0-20-seed{s}", noisy(target, 0.1 * s, 10 + s),
                        target, checkpoint=trained("kadid", f"byref-ratio80-0-20-seed{s}")) for s in range(1, 6)]
    write_run(results, "gap", "kadid", "byref-ratio80-0-20-seed1", noisy(target, 0.5, 1), target)
    write_run(results, "gap", "kadid", "byref-ratio80-0-20-seed2", np.ones(len(target)), target)
    summary = build_report(results, tmp_path / "out", ReportOptions(**FAST))

    rows = {r["label"]: r for r in read_csv(summary["table_csv"])}
    assert set(rows) == {"zs", "svr", "gap"}  # one row per method, trainable ones included
    for label, per_split in (("zs", zero), ("svr", fitted)):
        row = rows[label]
        srcc = [m["srcc"] for m in per_split]
        assert row["n_splits"] == "5" and row["seeds"] == "1 2 3 4 5"
        assert float(row["srcc"]) == pytest.approx(np.median(srcc), abs=1e-12)
        assert float(row["srcc_min"]) == min(srcc) and float(row["srcc_max"]) == max(srcc)
        q25, q75 = np.percentile(srcc, [25, 75])
        assert float(row["srcc_iqr"]) == pytest.approx(q75 - q25, abs=1e-12)
        assert float(row["plcc"]) == pytest.approx(np.median([m["plcc"] for m in per_split]), abs=1e-12)
        assert int(row["n"]) == 5 * len(target)
    assert rows["gap"]["srcc"] == "" and "undefined in 1 of 2 split(s)" in rows["gap"]["notes"]

    md = summary["table_md"].read_text()
    srcc = [m["srcc"] for m in zero]
    half = (np.percentile(srcc, 75) - np.percentile(srcc, 25)) / 2
    assert md_table(md)["zs"]["kadid SRCC"].startswith(f"{np.median(srcc):.3f} ± {half:.3f}")
    assert "median over 5 split(s), seeds 1-5" in md and "half the interquartile range" in md
    assert "Medians over 2/5 random splits" in md
    tex = summary["table_tex"].read_text()
    assert rf"{np.median(srcc):.3f}{{\scriptsize$\pm${half:.3f}}}" in tex
    runs = read_csv(summary["files"]["runs.csv"])
    assert sum(r["remark"] == "used (one of 5 splits of a median)" for r in runs) == 10


# -- breakdowns ----------------------------------------------------------------------------------------------
def test_breakdown_per_distortion_and_level(tmp_path, target):
    results = tmp_path / "results"
    kinds = ["blur", "noise", "jpeg", "blur"] * 20
    levels = [1, 2, 3, 4, 5] * 16
    pred = noisy(target, 0.8, 3)
    write_run(results, "fr", "csiq", "all", -pred, -target, method_hb=False, label_hb=False, label_name="dmos",
              groups={"distortion": kinds, "level": levels})
    write_run(results, "nr", "koniq", "official", pred, target)  # no groups: no breakdown rows
    summary = build_report(results, tmp_path / "out", ReportOptions(**FAST))
    rows = read_csv(summary["files"]["breakdown.csv"])
    assert {r["dataset"] for r in rows} == {"csiq"}
    for kind, groups in (("distortion", kinds), ("level", levels)):
        for value in set(groups):
            mask = np.array([g == value for g in groups])
            expect = stats.spearmanr(pred[mask], target[mask]).statistic  # oriented: both negations undone
            row = next(r for r in rows if r["kind"] == kind and r["group"] == str(value))
            assert float(row["srcc"]) == pytest.approx(expect, abs=1e-12) and int(row["n"]) == mask.sum()
    assert [r["group"] for r in rows if r["kind"] == "level"] == ["1", "2", "3", "4", "5"]
    md = summary["files"]["breakdown.md"].read_text()
    assert "## csiq: per distortion" in md and "| noise | 20 |" in md
    assert "breakdown-csiq-level" in summary["html"].read_text()


# -- figures ---------------------------------------------------------------------------------------------
def test_figures_vector_and_300_dpi_named_by_label(tmp_path, target):
    results = tmp_path / "results"
    seeded = [write_run(results, "pyiqa:piqe", "agiqa", f"ratio60-20-20-seed{s}", noisy(target, 0.3 * s, s), target,
                        label_name="mos_quality", method_hb=False) for s in (1, 2, 3)]
    write_run(results, "pyiqa:piqe", "koniq", "official", noisy(target, 0.5, 3), target)
    write_run(results, "other", "koniq", "official", noisy(target, 0.9, 4), target)
    summary = build_report(results, tmp_path / "out", ReportOptions(**{**FAST, "plots": True},
                                                                   display_names={"pyiqa:piqe": "PIQE"}))
    names = sorted(p.name for p in summary["plots"])  # one per cell (a median: its middle split), not per run
    assert names == sorted(["scatter_PIQE_agiqa.pdf", "scatter_PIQE_agiqa.png", "scatter_PIQE_koniq.pdf",
                            "scatter_PIQE_koniq.png", "scatter_other_koniq.pdf", "scatter_other_koniq.png",
                            "heatmap_srcc.pdf", "heatmap_srcc.png"])
    middle = sorted(seeded, key=lambda m: m["srcc"])[1]["split"]
    assert f"PIQE on agiqa (split {middle}, nearest the median)" in summary["html"].read_text()
    for path in summary["plots"]:
        if path.suffix == ".pdf":
            assert path.read_bytes()[:5] == b"%PDF-"
        else:
            with Image.open(path) as image:
                assert image.format == "PNG" and round(image.info["dpi"][0]) == 300 and image.size[0] > 1000
                assert len(np.unique(np.asarray(image.convert("L")))) > 10
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]

    run = next(r for r in collect(results) if r.split == middle)
    files, screen, drawn = scatter(run, "PIQE", "AGIQA-3k", tmp_path / "fig" / "one")
    assert drawn["xlabel"] == "PIQE score (lower is better)" and drawn["ylabel"] == "MOS (mos_quality)"
    assert drawn["curve"] and drawn["n_scored"] == len(target) and screen[:4] == b"\x89PNG"
    fsim = type(run)(run.run_dir, {**run.manifest, "label_name": "fsim"}, run.metrics, 0, results)
    dmos = type(run)(run.run_dir, {**run.manifest, "label_name": "dmos", "label_higher_better": False}, run.metrics,
                     0, results)
    assert label_axis_title(fsim) == "FSIM" and label_axis_title(dmos) == "DMOS, lower is better"


# -- LaTeX ----------------------------------------------------------------------------------------------------
PDFLATEX = shutil.which("pdflatex")
needs_pdflatex = pytest.mark.skipif(PDFLATEX is None, reason="pdflatex not on PATH (Debian: texlive-latex-recommended)")


def compile_tex(folder, body: str) -> str:
    doc = folder / "paper.tex"
    doc.write_text("\\documentclass[twocolumn]{article}\n\\usepackage{booktabs,tabularx,graphicx}\n"
                   "\\begin{document}\n" + body + "\n\\end{document}\n")
    result = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=folder,
                            capture_output=True, text=True, timeout=120)
    log = (folder / "paper.log").read_text(errors="replace")
    assert result.returncode == 0, log[-3000:]
    return log


@needs_pdflatex
def test_latex_tables_compile_in_two_columns_without_overfull_boxes(tmp_path, target):
    results, short = tmp_path / "results", tmp_path / "short"
    long_names = ["mplug-owl2 visual prompt (padding 30px, trained on KADID-10k/byref-ratio80-10-10)",
                  "Dog-IQA with SAM2 segments and mPLUG-Owl3 standard-guided scoring", "BRISQUE"]
    for k in range(len(long_names)):
        write_run(results, f"m{k}", "koniq10k", "official", noisy(target, 0.4 + k, k), target,
                  options={"model_path": "/models/some/deep/folder/checkpoint_with_a_long_name.safetensors"})
        write_run(results, f"m{k}", "kadid10k", "byref-ratio80-0-20-seed1", noisy(target, 0.4 + k, k + 5), target)
        for ds in ("koniq", "spaq", "agiqa"):  # short names, three datasets: still one column
            write_run(short, ["NIQE", "BRISQUE", "PIQE"][k], ds, "all", noisy(target, 0.5 + k, k), target)
    names = {f"m{k}": n for k, n in enumerate(long_names)}
    reports = {"narrow": build_report(results, tmp_path / "narrow", ReportOptions(**FAST, display_names=names)),
               "short": build_report(short, tmp_path / "short-out", ReportOptions(**FAST))}
    for k in range(3):  # a fourth dataset: no longer fits one column (29 pt a number column, 8 of them)
        write_run(short, ["NIQE", "BRISQUE", "PIQE"][k], "livec", "all", noisy(target, 0.5 + k, k), target)
    reports["short4"] = build_report(short, tmp_path / "short4-out", ReportOptions(**FAST))
    # five datasets x two metrics with long names: a full-width table*
    for ds in ("spaq", "agiqa3k", "livec"):
        for k in range(3):
            write_run(results, f"m{k}", ds, "all", noisy(target, 0.5 + k, k + 9), target)
    for seed in range(2, 16):  # enough runs that runs.tex needs more than one page-sized table
        for k in range(3):
            write_run(results, f"m{k}", "kadid10k", f"byref-ratio80-0-20-seed{seed}", noisy(target, 1, seed), target)
    reports["wide"] = build_report(results, tmp_path / "wide", ReportOptions(**FAST, display_names=names))
    # fifteen columns with intervals fit nowhere at this size: scaled to \textwidth, and said so
    reports["huge"] = build_report(results, tmp_path / "huge", ReportOptions(
        **FAST, display_names=names, metrics=("srcc", "plcc", "krcc"), show_ci=True))
    tex = {k: r["table_tex"].read_text() for k, r in reports.items()}
    assert r"\begin{table}[t]" in tex["narrow"] and r"\begin{table}[t]" in tex["short"]
    assert r"\begin{table*}[t]" in tex["short4"]
    assert r"\begin{table*}[t]" in tex["wide"] and "resizebox" not in tex["wide"] and not reports["wide"]["warnings"]
    assert reports["wide"]["files"]["runs.tex"].read_text().count(r"\begin{table*}") >= 2
    assert r"\resizebox{\textwidth}{!}" in tex["huge"]
    assert any("do not fit \\textwidth" in w for w in reports["huge"]["warnings"])
    log = compile_tex(tmp_path, "".join(f"\\input{{{r['table_tex']}}}\n\\input{{{r['files']['runs.tex']}}}\n"
                                        for r in reports.values()))
    assert "Overfull \\hbox" not in log, [ln for ln in log.splitlines() if "Overfull" in ln]
    assert "Float too large" not in log and "Output written on paper.pdf" in log


def test_tex_escape():
    assert tex_escape("a_b&c%d$e#f{g}h~i^j\\k") == (
        r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k")


# -- options, summary, errors ----------------------------------------------------------------------------------
def test_options_are_checked():
    with pytest.raises(IqaError, match="unknown accuracy"):
        ReportOptions(metrics=("srcc", "accuracy"))
    with pytest.raises(IqaError, match="significance must be best, all or none"):
        ReportOptions(significance="some")


def test_metrics_order_decimals_and_all_pairs(tmp_path, target):
    results = tmp_path / "results"
    ms = {n: write_run(results, n, "koniq", "official", noisy(target, s, i), target)
          for i, (n, s) in enumerate((("a", 0.5), ("b", 0.9), ("c", 1.5)))}
    options = ReportOptions(**FAST, metrics=("krcc", "rmse"), decimals=2, method_order=("c", "a"),
                            significance="all")
    summary = build_report(results, tmp_path / "out", options)
    md = summary["table_md"].read_text()
    table = md_table(md)
    assert list(table) == ["c", "a", "b"] and set(table["a"]) == {"koniq KRCC", "koniq RMSE"}
    assert number(table["b"]["koniq KRCC"]) == f"{ms['b']['krcc']:.2f}"
    assert table["a"]["koniq RMSE"].startswith("**")  # lower RMSE is better
    sig = read_csv(summary["files"]["significance.csv"])
    assert {(r["method_a"], r["method_b"]) for r in sig} == {("a", "b"), ("a", "c"), ("b", "c")}  # KRCC only


def test_summary_lists_files_and_errors_are_one_line(tmp_path, target):
    results = tmp_path / "results"
    write_run(results, "m", "koniq", "official", noisy(target, 0.5, 2), target)
    summary = build_report(results, tmp_path / "out", ReportOptions(**FAST))
    lines = summary_lines(summary)
    assert lines[0].startswith("1 method row(s) x 1 column(s) from 1 run folder(s)")
    for name in ("table.md", "table.tex", "table.csv", "runs.md", "runs.tex", "runs.csv", "significance.csv",
                 "report.html"):
        assert f"wrote {tmp_path / 'out' / name}" in lines
    (tmp_path / "empty").mkdir()
    with pytest.raises(IqaError, match="no run folder"):
        build_report(tmp_path / "empty", tmp_path / "out2")
    bad = next((results / "runs").rglob("metrics.json"))
    bad.write_text("{cut")
    with pytest.raises(IqaError, match=re.escape(f"{bad}: run metrics is not valid JSON")):
        build_report(results, tmp_path / "out3")


def test_progress_bar_over_runs(tmp_path, target, capsys, monkeypatch):
    results = tmp_path / "results"
    for k in range(2):
        write_run(results, f"m{k}", "koniq", "official", noisy(target, 0.5, k), target)
    collect(results, progress=True)
    assert capsys.readouterr().err == ""  # not a terminal: tqdm stays quiet by itself
    import tqdm.auto

    from iqabench.report import plots

    seen = []

    class Spy(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            seen.append((kwargs.get("unit"), kwargs.get("disable"), len(args[0]) if args else kwargs.get("total")))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", Spy)
    monkeypatch.setattr(plots, "scatter", lambda run, *a: ([], b"", {"n_scored": len(target)}))  # bars, not figures
    monkeypatch.setattr(plots, "heatmap", lambda *a, **k: ([], b""))
    for progress in (False, True):
        build_report(results, tmp_path / "out", ReportOptions(**{**FAST, "plots": True, "progress": progress}))
    # a bar over the runs read and one over the figures drawn; off, then on (tqdm's auto: on a terminal)
    assert seen == [("run", True, 2), ("plot", True, 2), ("run", None, 2), ("plot", None, 2)]
