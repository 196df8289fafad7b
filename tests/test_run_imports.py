"""What a run imports: a classic metric on a dataset with a plain csv file needs neither pandas (about
0.3 s of CPU with pyarrow) nor transformers' Llama code. Asserted on the modules, not on a time: the
time is benchmarks/bench_piqe_startup.py's."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image

CARD = textwrap.dedent("""
    from iqabench import registry
    from iqabench.data.card import DatasetCard
    registry.register_dataset(DatasetCard(
        name="plaincsv", title="plain csv", url="-", folder_names=("plaincsv",), layout=("mos.csv",),
        reader={"format": "csv", "id": "{image}", "images": {"folders": ["images"]}},
        label_name="mos", score_range=(1.0, 5.0), higher_better=True, default_split="all"))
""")

RUN = textwrap.dedent("""
    import sys
    from iqabench.cli.main import main
    code = main(sys.argv[1:])
    watched = ("pandas", "pyarrow", "transformers.models.llama.modeling_llama")
    print("IMPORTED", ",".join(m for m in watched if m in sys.modules) or "none", file=sys.stderr)
    sys.exit(code)
""")


def test_a_classic_metric_on_a_plain_csv_dataset_imports_no_pandas(tmp_path):
    folder = tmp_path / "data" / "plaincsv"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["image,mos"]
    for i in range(12):
        noisy = np.clip(128 + rng.normal(0, 3 + 4 * i, (96, 96, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / "images" / f"{i:02d}.png")
        lines.append(f"{i:02d}.png,{5 - i / 3:.3f}")
    (folder / "mos.csv").write_text("\n".join(lines) + "\n")
    card = tmp_path / "card.py"
    card.write_text(CARD)
    done = subprocess.run([sys.executable, "-c", RUN, "--plugin", str(card), "run", "--method", "piqe",
                           "--dataset", "plaincsv", "--data-root", str(tmp_path / "data"),
                           "--results", str(tmp_path / "results"), "--no-progress"],
                          capture_output=True, text=True, timeout=300, env=_offline())
    assert done.returncode == 0, done.stderr
    assert "IMPORTED none" in done.stderr, done.stderr
    run = next((tmp_path / "results" / "runs" / "plaincsv").glob("*/pyiqa-piqe-*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_scored"] == 12 and metrics["srcc"] is not None
    header = (run / "predictions.csv").read_text().splitlines()[0]
    assert header.startswith("id,score,label,error")


def _offline() -> dict:
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1"}
