"""The main job on the embedded `synthetic` set, as the README's first command runs it, with the line-up
that suites/demo.toml names (and only that)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from iqabench import locations, registry
from iqabench.cli.demo_cmd import SUITE, read_suite
from iqabench.cli.main import cli, main
from iqabench.locations import shipped_folder


def test_synthetic_set_splits_by_reference_and_labels_fall_with_distortion(synthetic_root):
    """What the demo relies on (the builder's own guarantees are tested in test_embedded_build.py)."""
    _folder, table = registry.datasets.get("synthetic").load(synthetic_root)
    assert len(table) == 18 * 8 * 5 and table["label"].between(0, 1).all()
    assert table.groupby("ref").size().eq(40).all()
    # labels fall with distortion level, as a full-reference metric should
    by_level = table.groupby("level")["label"].mean()
    assert by_level.is_monotonic_decreasing


def test_demo_writes_metrics_tables_plots_and_trained_beats_untrained(synthetic_root, tmp_path, capsys):
    suite = read_suite(shipped_folder("suites") / SUITE)
    names = suite["zero_shot"] + suite["trained"]
    results = tmp_path / "results"
    assert main(["demo", "--data-root", str(synthetic_root), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "SRCC" in out and "PLCC" in out
    metrics = {m["method"]: m for m in (json.loads(p.read_text()) for p in results.rglob("metrics.json"))}
    assert set(metrics) == set(names)
    for m in metrics.values():
        assert m["dataset"] == suite["dataset"]
        assert m["n"] == 120 and m["n_failed"] == 0 and m["status"] == "complete"
    assert metrics[suite["trained"][0]]["srcc"] > metrics[suite["zero_shot"][0]]["srcc"]
    report = results / "report"
    for name in ("table.md", "table.tex", "table.csv"):
        assert (report / name).stat().st_size > 0
    pngs = list(report.rglob("*.png"))
    plots = [p for p in pngs if ".screen" not in p.parts]  # .screen/: the HTML report's cached copies
    assert len(plots) == len(names)
    for p in pngs:
        Image.open(p).verify()


def test_demo_runs_whatever_its_suite_file_names(tiny_root, tmp_path, monkeypatch):
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / SUITE).write_text('dataset = "tiny"\nzero_shot = ["slow-sharpness"]\ntrained = []\n')
    real = locations.shipped_folder
    monkeypatch.setattr(locations, "shipped_folder", lambda name: suites if name == "suites" else real(name))
    results = tmp_path / "results"
    result = CliRunner().invoke(cli, ["demo", "--data-root", str(tiny_root), "--results", str(results)])
    assert result.exit_code == 0, result.stderr
    [metrics_file] = list(results.rglob("metrics.json"))
    metrics = json.loads(metrics_file.read_text())
    assert (metrics["method"], metrics["dataset"], metrics["n_failed"]) == ("slow-sharpness", "tiny", 0)
    assert (results / "report" / "table.md").stat().st_size > 0


@pytest.mark.parametrize("text,problem", [
    ('zero_shot = ["slow-sharpness"]\n', "`dataset` must be a dataset name"),
    ('dataset = "tiny"\ntrained = "brisque-svr"\n', "`trained` must be a list of method names"),
    ('dataset = "tiny"\n', "names no method"),
    ('dataset = "tiny\n', "not valid TOML"),
])
def test_a_bad_suite_file_is_one_line_naming_it(tmp_path, monkeypatch, text, problem):
    (tmp_path / SUITE).write_text(text)
    real = locations.shipped_folder
    monkeypatch.setattr(locations, "shipped_folder", lambda name: tmp_path if name == "suites" else real(name))
    result = CliRunner().invoke(cli, ["demo", "--results", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and str(tmp_path / SUITE) in result.stderr and problem in result.stderr
