"""Intervals by the unit that was sampled: on a synthetic-distortion set (images share references) the
bootstrap and the paired tests resample references; metrics.json and the report say so, give the number
of references beside n, offer no Williams' test, and warn when few references make the interval wide."""
from __future__ import annotations

import json

import numpy as np

from iqabench import metrics
from iqabench.report.build import build_report
from iqabench.report.options import ReportOptions
from iqabench.run import RunConfig, run
from iqabench.runs import read_run


def _run(root, results, **options):
    return run(RunConfig(method="slow-sharpness", dataset="tiny", split="all", data_root=root, results=results,
                         options=options, progress=False, n_boot=400), on_log=lambda m: None)


def test_reference_intervals_are_wider_than_image_intervals_and_the_report_says_which(tiny_root, tmp_path):
    results = tmp_path / "results"
    first = _run(tiny_root, results)
    second = _run(tiny_root, results, fail_on=("astronaut_jpeg_1.png",))  # another row of the table
    boot = first.metrics["bootstrap"]
    assert boot["unit"] == "reference" and boot["n_references"] == 3 and boot["n_images"] == 36
    assert "only 3 reference image(s)" in boot["note"]

    # metrics.json's interval is the reference bootstrap's over the run's records
    run_ = read_run(first.run_dir)
    preds = run_.predictions()
    unit = metrics.ResampleUnit.by_reference([r["ref"] for r in run_.inputs()])
    again = metrics.bootstrap(preds.scores, preds.labels, n_boot=400, seed=first.metrics["bootstrap_seed"], unit=unit)
    assert again == first.metrics["ci95"]

    summary = build_report(results, tmp_path / "out", ReportOptions(progress=False, bootstrap_resamples=200,
                                                                    plots=False, significance="all",
                                                                    significance_test="williams"))
    text = summary["table_md"].read_text()
    assert "resample reference images" in text and "3 references for n = 35-36 images" in text  # one run failed one image
    assert "only 3 test reference(s); the intervals are wide for that reason" in text
    assert "Williams' test assumes independent images" in text
    sig = (tmp_path / "out" / "significance.csv").read_text()
    assert "no Williams' test: images share references" in sig
    assert second.metrics["bootstrap"]["unit"] == "reference"


def test_on_a_synthetic_distortion_set_references_give_wider_intervals_than_images():
    """20 references x 24 distorted copies; how well the method follows the distortion depends on the
    photograph (as real methods' do: some contents fool it), and each photograph has its own quality,
    so copies of one reference are not independent. Resampling 480 images as if they were is too narrow."""
    rng = np.random.default_rng(7)
    n_ref, copies = 20, 24
    refs = np.repeat([f"ref{r}" for r in range(n_ref)], copies)
    level = np.tile(np.linspace(0, 1, copies), n_ref)
    quality = np.repeat(rng.normal(0, 1.0, n_ref), copies)  # the photograph's own quality
    label = 5 - 2 * level + quality + 0.1 * rng.normal(size=n_ref * copies)
    slope = np.repeat(rng.normal(1.0, 1.5, n_ref), copies)  # how well the method sees this content's distortion
    pred = -2 * slope * level + rng.normal(0, 1.0, n_ref).repeat(copies) + 0.2 * rng.normal(size=n_ref * copies)
    by_ref = metrics.compute(pred, label, n_boot=500, seed=1, refs=list(refs))
    by_image = metrics.compute(pred, label, n_boot=500, seed=1, refs=None)
    assert by_ref["bootstrap"]["unit"] == "reference" and by_ref["bootstrap"]["n_references"] == n_ref
    assert by_image["bootstrap"]["unit"] == "image"
    assert by_ref["srcc"] == by_image["srcc"]  # the point estimate does not depend on the resampling
    for key in ("srcc", "krcc", "plcc_raw"):
        w_ref = by_ref["ci95"][key][1] - by_ref["ci95"][key][0]
        w_img = by_image["ci95"][key][1] - by_image["ci95"][key][0]
        assert w_ref > 1.5 * w_img, (key, w_ref, w_img)
    assert "note" not in by_ref["bootstrap"]  # 20 references: no few-references warning


def test_images_without_references_are_resampled_as_images():
    rng = np.random.default_rng(0)
    p = rng.normal(size=50)
    out = metrics.compute(p, p + rng.normal(size=50), n_boot=20, refs=None)
    assert out["bootstrap"]["unit"] == "image" and out["bootstrap"]["n_references"] is None
    partial = metrics.compute(p, p + rng.normal(size=50), n_boot=20, refs=["a"] * 49 + [None])
    assert partial["bootstrap"]["unit"] == "image"  # a reference bootstrap needs every image's reference


def test_the_stored_metrics_say_which_unit(tiny_root, tmp_path):
    result = _run(tiny_root, tmp_path)
    stored = json.loads((result.run_dir / "metrics.json").read_text())
    assert stored["bootstrap"]["unit"] == "reference" and stored["bootstrap"]["n_references"] == 3


def test_the_console_says_why_a_few_reference_interval_is_wide(tiny_root, tmp_path):
    """The demo's case (3 test references): the summary line's interval comes with its reason."""
    from click.testing import CliRunner

    from iqabench.cli.main import cli

    result = _run(tiny_root, tmp_path)
    scored = CliRunner().invoke(cli, ["score", str(result.run_dir)])
    assert scored.exit_code == 0, scored.stderr
    lines = scored.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if "| complete |" in line)
    lo, hi = json.loads((result.run_dir / "metrics.json").read_text())["ci95"]["srcc"]
    assert f"[{lo:.3f}, {hi:.3f}]" in lines[head]
    assert lines[head + 1].startswith("  interval: only 3 reference image(s)") and "wide for that reason" in lines[head + 1]
