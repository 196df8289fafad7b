"""A finished run answers at once: a rerun reads its metrics.json instead of recomputing, unless the
records changed, the bootstrap asked for differs, or the metrics code's version changed;
`iqabench score` always recomputes."""
from __future__ import annotations

import json

import pytest

from iqabench import metrics
from iqabench.run import RunConfig, run
from iqabench.score import score_run


def _cfg(root, results, n_boot: int = 50) -> RunConfig:
    return RunConfig(method="slow-sharpness", dataset="tiny", split="all", data_root=root, results=results,
                     progress=False, n_boot=n_boot)


@pytest.fixture
def finished(tiny_root, tmp_path):
    first = run(_cfg(tiny_root, tmp_path), on_log=lambda m: None)
    return first, (first.run_dir / "metrics.json").read_bytes()


def _no_compute(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("metrics were recomputed")

    monkeypatch.setattr(metrics, "compute", refuse)


def test_a_rerun_of_a_finished_run_reads_its_metrics(finished, tiny_root, tmp_path, monkeypatch):
    first, stored = finished
    assert json.loads(stored)["metrics_version"] == metrics.METRICS_VERSION
    _no_compute(monkeypatch)
    again = run(_cfg(tiny_root, tmp_path), on_log=lambda m: None)
    assert again.scored_now == 0 and again.metrics == first.metrics
    assert (again.run_dir / "metrics.json").read_bytes() == stored  # not even rewritten


def test_score_always_recomputes(finished, monkeypatch):
    first, _ = finished
    calls = []
    real = metrics.compute
    monkeypatch.setattr(metrics, "compute", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = score_run(first.run_dir, n_boot=50)
    assert calls == [1] and again["srcc"] == first.metrics["srcc"]


@pytest.mark.parametrize("change", ["version", "stamp", "n_boot"])
def test_stale_metrics_are_recomputed(finished, tiny_root, tmp_path, monkeypatch, change):
    first, stored = finished
    path = first.run_dir / "metrics.json"
    data = json.loads(stored)
    if change == "version":
        data["metrics_version"] = metrics.METRICS_VERSION - 1  # written by older metrics code
    elif change == "stamp":
        data["records_stamp"] = {"predictions.jsonl": 1}  # records appended after it was written
    path.write_text(json.dumps(data))
    calls = []
    real = metrics.compute
    monkeypatch.setattr(metrics, "compute", lambda *a, **k: calls.append(1) or real(*a, **k))
    # another number of resamples is another question about the same run folder
    again = run(_cfg(tiny_root, tmp_path, n_boot=60 if change == "n_boot" else 50), on_log=lambda m: None)
    assert again.run_dir == first.run_dir and again.scored_now == 0
    assert calls == [1]
    assert json.loads(path.read_text())["metrics_version"] == metrics.METRICS_VERSION
    assert again.metrics["srcc"] == first.metrics["srcc"]
