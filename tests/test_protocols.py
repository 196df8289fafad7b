"""Protocols end to end through the CLI: a trainable method over seeded splits (the PromptIQA protocol)
folds into one median row with its spread; a cross-dataset run is its own row, never set aside."""
from __future__ import annotations

import csv
import json
import statistics

from iqabench.cli.main import main


def _metrics(results):
    return [json.loads(p.read_text()) for p in sorted((results / "runs").rglob("metrics.json"))]


def test_trainable_method_over_seeded_splits_reports_the_median_and_spread(tiny_root, tmp_path, capsys):
    common = ["--method", "brisque-svr", "--dataset", "tiny", "--split", "byref-ratio34-33-33-seed{1..3}",
              "--data-root", str(tiny_root), "--results", str(tmp_path), "--device", "cpu"]
    assert main(["train", *common, "--no-progress"]) == 0
    assert main(["run", *common, "--no-progress"]) == 0
    runs = _metrics(tmp_path)
    assert sorted(m["split"] for m in runs) == [f"byref-ratio34-33-33-seed{i}" for i in (1, 2, 3)]
    # each split scored with the checkpoint trained on that very split
    for m in runs:
        assert m["checkpoint"]["trained_on"]["split"] == m["split"] and m["n_failed"] == 0
    out = capsys.readouterr().out
    median = statistics.median(m["srcc"] for m in runs)
    assert f"{median:.4f}" in out  # the CLI prints the median over the splits
    assert main(["report", "--results", str(tmp_path), "--no-plots", "--no-progress"]) == 0
    with open(tmp_path / "report" / "table.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("method", "").startswith("brisque-svr") or
                "brisque" in json.dumps(r)]
    assert len(rows) == 1, rows  # three runs, one protocol row
    row = rows[0]
    srcc_cols = [k for k in row if k.endswith("srcc") and row[k] not in ("", None)]
    values = {float(row[k]) for k in srcc_cols}
    assert any(abs(v - median) < 1e-9 for v in values), (median, row)
    lo, hi = min(m["srcc"] for m in runs), max(m["srcc"] for m in runs)
    spread = [k for k in row if "min" in k or "max" in k or "iqr" in k]
    assert spread, f"no spread columns in {list(row)}"
    assert any(abs(float(row[k]) - lo) < 1e-9 for k in spread if row[k]) and \
        any(abs(float(row[k]) - hi) < 1e-9 for k in spread if row[k])
