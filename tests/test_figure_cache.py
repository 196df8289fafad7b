"""`report` redraws only the figures whose run changed (keyed by the run's content hash) and draws the
others in a process pool; a cached figure is read back, its files untouched."""
from __future__ import annotations

import json

import numpy as np
from test_report import FAST, noisy, write_run  # the run-folder writer the report tests use

from iqabench.report import build
from iqabench.report.build import build_report
from iqabench.report.options import ReportOptions


def _figure_times(out):
    return {p.name: p.stat().st_mtime_ns for p in (out / "plots").glob("scatter_*")}


def test_only_the_changed_runs_figure_is_redrawn(tmp_path, monkeypatch):
    target = np.linspace(1, 5, 60)
    results, out = tmp_path / "results", tmp_path / "out"
    for k in range(3):
        write_run(results, f"m{k}", "koniq", "official", noisy(target, 0.5 + k, k), target)
    options = ReportOptions(**{**FAST, "plots": True})
    first = build_report(results, out, options)
    before = _figure_times(out)
    assert len(before) == 6  # pdf and png of 3 scatter plots
    html = first["html"].read_text()

    again = build_report(results, out, options)
    assert _figure_times(out) == before  # nothing redrawn
    assert again["html"].read_text() == html  # the cached screen images are the same figures
    assert sorted(map(str, again["plots"])) == sorted(map(str, first["plots"]))

    (changed,) = list(results.glob("runs/*/*/m1-*/metrics.json"))
    data = json.loads(changed.read_text())
    data["created"] = "2031-01-01T00:00:00+00:00"  # re-scored: another metrics.json
    changed.write_text(json.dumps(data))
    build_report(results, out, options)
    after = _figure_times(out)
    redrawn = sorted(name for name in after if after[name] != before[name])
    assert redrawn == ["scatter_m1_koniq.pdf", "scatter_m1_koniq.png"]


def test_figures_drawn_in_a_pool_equal_figures_drawn_in_this_process(tmp_path, monkeypatch):
    target = np.linspace(1, 5, 40)
    results = tmp_path / "results"
    for k in range(2):
        write_run(results, f"m{k}", "koniq", "official", noisy(target, 0.5 + k, k), target)
    options = ReportOptions(**{**FAST, "plots": True})
    monkeypatch.setattr(build.os, "cpu_count", lambda: 2)
    pooled = build_report(results, tmp_path / "pool", options)
    monkeypatch.setattr(build.os, "cpu_count", lambda: 1)
    serial = build_report(results, tmp_path / "serial", options)
    for a, b in zip(sorted(pooled["plots"]), sorted(serial["plots"])):
        if a.suffix == ".png":
            assert a.read_bytes() == b.read_bytes(), a.name
