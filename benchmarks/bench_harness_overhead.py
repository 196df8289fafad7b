"""Harness overhead: `iqabench run` versus a bare loop over the same images and the same tiny model.

Both score the same N images with `softmax-owl2` on a tiny random mPLUG-Owl2 (real architecture),
one image per call. The harness adds image decoding from disk, per-record fsync, manifest and
metrics (bootstrap included). Prints seconds for each and the ratio. Run:
    python benchmarks/bench_harness_overhead.py [--images 48] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_dataset(root: Path, n: int) -> None:
    import numpy as np
    import pandas as pd
    from PIL import Image

    folder = root / "bench"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(folder / "images" / f"{i}.png")
        rows.append({"image": f"{i}.png", "mos": float(rng.uniform(1, 5))})
    pd.DataFrame(rows).to_csv(folder / "mos.csv", index=False)


def register_card() -> None:
    from iqabench import registry
    from iqabench.data.card import DatasetCard

    registry.register_dataset(DatasetCard(
        name="bench", title="benchmark images", url="-", folder_names=("bench",), layout=("mos.csv",),
        reader={"format": "csv", "id": "{image}", "images": {"folders": ["images"]}},
        label_name="mos", score_range=(1.0, 5.0), higher_better=True, default_split="all"))


def bare_loop(model_path: str, folder: Path) -> float:
    import pandas as pd
    import torch
    from PIL import Image

    from iqabench.methods.softmax import SoftmaxOwl2
    from iqabench.models.backend import load_backend
    from iqabench.models.scoring import SoftmaxScorer

    options = SoftmaxOwl2.Options(backend_path=model_path)
    t0 = time.perf_counter()
    scorer = SoftmaxScorer(load_backend(options.backend_spec(), "cpu"), options)
    scores = []
    for name in pd.read_csv(folder / "mos.csv")["image"]:
        image = Image.open(folder / "images" / name).convert("RGB")
        with torch.no_grad():
            scores.append(float(scorer.score_pixels(scorer.backend.to_pixels([image]))[0]))
    return time.perf_counter() - t0


def harness(model_path: str, root: Path, results: Path) -> float:
    from iqabench.run import RunConfig, run

    t0 = time.perf_counter()
    run(RunConfig(method="softmax-owl2", dataset="bench", split="all", data_root=root, results=results,
                  options={"backend_path": model_path}, progress=False), on_log=lambda m: None)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from iqabench.models.tiny import tiny_model_path

    register_card()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_dataset(tmp / "data", args.images)
        model = tiny_model_path("owl2", tmp / "models")
        bare, full = [], []
        for r in range(args.repeats):  # interleaved so machine load hits both alike
            bare.append(bare_loop(model, tmp / "data" / "bench"))
            full.append(harness(model, tmp / "data", tmp / f"results{r}"))
        b, f = min(bare), min(full)
        print(f"images: {args.images}, repeats: {args.repeats} (best of), 1 thread, tiny mPLUG-Owl2")
        print(f"bare loop      : {b:8.3f} s  ({1000 * b / args.images:.1f} ms/image)")
        print(f"iqabench run   : {f:8.3f} s  ({1000 * f / args.images:.1f} ms/image)")
        print(f"overhead ratio : {f / b:8.2f}x  (harness / bare)")


if __name__ == "__main__":
    main()
