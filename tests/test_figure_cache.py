"""`report` redraws only the figures whose run changed (keyed by the run's content hash) and draws the
others in a process pool; a cached figure is read back, its files untouched."""
from __future__ import annotations

import json
import shutil

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


def test_renamed_runs_leave_no_stale_figures_and_long_titles_wrap_inside(tmp_path):
    target = np.linspace(1, 5, 60)
    results, out = tmp_path / "results", tmp_path / "out"
    write_run(results, "m0", "koniq", "official", noisy(target, 0.5, 0), target)
    write_run(results, "m0", "live", "official", noisy(target, 0.5, 1), target)
    long_name = "a method with a very long display name (prompt=padding, trained on koniq10k/official, batch 8)"
    first = build_report(results, out, ReportOptions(**{**FAST, "plots": True}, display_names={"m0": long_name}))
    assert len([p for p in first["plots"] if p.name.startswith("scatter_")]) == 4
    from iqabench.report.collect import collect
    from iqabench.report.plots import TITLE_CHARS, scatter

    run = collect(results)[0]
    _, _, drawn = scatter(run, long_name, "KonIQ-10k", tmp_path / "fig" / "one", ", nearest the median of 10 splits")
    assert len(drawn["title"]) > 2 and all(len(line) <= TITLE_CHARS for line in drawn["title"])
    assert drawn["title_inside"]  # the drawn title's box lies within the figure: nothing clipped
    assert " ".join(drawn["title"][:-1]).startswith(long_name[:40])

    shutil.rmtree(next(results.glob("runs/live")))  # one column left: no heat map either
    build_report(results, out, ReportOptions(**{**FAST, "plots": True}, display_names={"m0": "M"}))
    left = sorted(p.relative_to(out / "plots").as_posix() for p in (out / "plots").rglob("*") if p.is_file())
    assert left == [".figures.json", ".screen/scatter_M_koniq.png", "scatter_M_koniq.pdf", "scatter_M_koniq.png"]
    assert list(json.loads((out / "plots" / ".figures.json").read_text())) == ["scatter_M_koniq"]
