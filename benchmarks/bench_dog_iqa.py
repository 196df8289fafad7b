"""Dog-IQA on tiny random models: batched vs one-view-at-a-time judging, cached vs fresh masks.

    python benchmarks/bench_dog_iqa.py [--images 12] [--repeats 3] [--batch 16]

Builds a tiny SAM2 and a tiny Llava in a temporary folder (no download), scores a few random
images, and prints median wall times and their ratios. Tiny models make the fixed per-call
cost (prompt building, generate() setup) dominate, so the batching ratio here is an upper
bound of what a 7B judge on a GPU gains; the cache ratio is about the same at any scale since
a cache hit only reads a compressed file.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--side", type=int, default=96, help="image side in pixels")
    args = parser.parse_args()

    os.environ["HF_HUB_OFFLINE"] = "1"
    import numpy as np
    import torch
    from PIL import Image

    from iqabench.api import Sample, SampleSource
    from iqabench.methods.dog_iqa import DogIqa, DogIqaOptions
    from iqabench.models.tiny_llava import build_tiny_llava
    from iqabench.models.tiny_sam2 import build_tiny_sam2

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    images = {f"b{i}": Image.fromarray(rng.integers(0, 255, (args.side, args.side + 16 * (i % 3), 3), dtype=np.uint8))
              for i in range(args.images)}

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sam2 = build_tiny_sam2(root / "sam2")
        llava = build_tiny_llava(root / "llava")

        def method(cache: Path, batch: int) -> DogIqa:
            options = DogIqaOptions(judge={"backend": "llava", "backend_path": str(llava)}, judge_batch_size=batch,
                                    segmenter={"model": str(sam2), "points_per_side": 8, "pred_iou_thresh": 0.0,
                                               "stability_score_thresh": 0.0}, min_area_fraction=0.02)
            m = DogIqa(options, dataset="bench", cache_dir=cache)
            m.setup()
            return m

        def source() -> SampleSource:
            return SampleSource(list(images), lambda sid: Sample(sid, images[sid]))

        fresh, cached = [], []
        for r in range(args.repeats):
            cache = root / f"cache{r}"
            m = method(cache, args.batch)
            start = time.perf_counter()
            m.prepare(source())
            fresh.append(time.perf_counter() - start)
            assert m.runtime_stats()["segmentations"] == len(images)
            m2 = method(cache, args.batch)
            start = time.perf_counter()
            m2.prepare(source())
            cached.append(time.perf_counter() - start)
            assert m2.runtime_stats()["segmentations"] == 0

        samples = [Sample(sid, img) for sid, img in images.items()]
        timings: dict[int, list[float]] = {1: [], args.batch: []}
        calls: dict[int, int] = {}
        for batch, runs in timings.items():
            m = method(root / "cache0", batch)
            m.prepare(source())
            m.score(samples[:2])  # warm-up
            for _ in range(args.repeats):
                start = time.perf_counter()
                m.score(samples)
                runs.append(time.perf_counter() - start)
            views = m.runtime_stats()["judge_views"]
            calls[batch] = m.runtime_stats()["judge_calls"]
        med = {k: statistics.median(v) for k, v in timings.items()}
        per_image_views = views / (len(samples) * (args.repeats) + 2) if views else 0

        print(f"images: {len(images)} ({args.side}px), repeats: {args.repeats}, torch threads: 1")
        print(f"segmentation, fresh : {statistics.median(fresh):.3f} s for the part  "
              f"({statistics.median(fresh) / len(images) * 1000:.1f} ms/image)")
        print(f"segmentation, cached: {statistics.median(cached):.3f} s for the part  "
              f"({statistics.median(cached) / len(images) * 1000:.1f} ms/image)")
        print(f"  fresh / cached = {statistics.median(fresh) / statistics.median(cached):.1f}x")
        print(f"judging, batch 1      : {med[1]:.3f} s per pass ({calls[1]} calls in all runs)")
        print(f"judging, batch {args.batch:<6d}: {med[args.batch]:.3f} s per pass "
              f"({calls[args.batch]} calls in all runs)")
        print(f"  one-at-a-time / batched = {med[1] / med[args.batch]:.2f}x   "
              f"(about {per_image_views:.1f} views per image)")


if __name__ == "__main__":
    main()
