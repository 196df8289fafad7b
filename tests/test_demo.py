"""The main job on the embedded `synthetic` set, as the README's first command runs it."""
from __future__ import annotations

import json

import pandas as pd
from PIL import Image

from iqabench.cli.main import main
from iqabench.data.synthetic import CARD


def test_synthetic_card_is_deterministic_and_splits_by_reference(synthetic_root, tmp_path):
    folder, table = CARD.load(synthetic_root)
    assert len(table) == 18 * 8 * 5 and table["label"].between(0, 1).all()
    assert table.groupby("ref").size().eq(40).all()
    # rebuilding gives the same labels
    CARD.build(tmp_path / "synthetic", progress=False)
    again = pd.read_csv(tmp_path / "synthetic" / "labels.csv")
    pd.testing.assert_frame_equal(again, pd.read_csv(folder / "labels.csv"))
    # labels fall with distortion level, as a full-reference metric should
    by_level = table.groupby("level")["label"].mean()
    assert by_level.is_monotonic_decreasing


def test_demo_writes_metrics_tables_plots_and_trained_beats_untrained(synthetic_root, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["demo", "--data-root", str(synthetic_root), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "SRCC" in out and "PLCC" in out
    metrics = {m["method"]: m for m in (json.loads(p.read_text()) for p in results.rglob("metrics.json"))}
    assert set(metrics) == {"pyiqa:piqe", "pyiqa:entropy", "brisque-svr"}
    for m in metrics.values():
        assert m["n"] == 120 and m["n_failed"] == 0 and m["status"] == "complete"
    assert metrics["brisque-svr"]["srcc"] > metrics["pyiqa:piqe"]["srcc"]
    report = results / "report"
    for name in ("table.md", "table.tex", "table.csv"):
        assert (report / name).stat().st_size > 0
    plots = list(report.rglob("*.png"))
    assert len(plots) == 3
    for p in plots:
        Image.open(p).verify()
