"""Batch-1 vs batch-8 scoring throughput through the hf-vlm backend, on a mid-size random model.

Builds a random Qwen2.5-VL (default ~90 M parameters: text 768 wide x 6 layers with a 32k
vocabulary, vision 384 wide x 6 layers; images up to 224 x 224 px, i.e. up to 64 image tokens) or
LLaVA, saves and reloads it through the backend's loading path, then scores the same images with
the softmax method (softmax-owl2-qbench's protocol, `-o backend=...`) in batches of 1 and of 8,
side by side: the two settings alternate for `--repeats` rounds; the ratio is given for the best and
the median round of each (the machine is shared: look at both).
Images have mixed sizes, so the batches of 8 are really padded (tiled families get different
token counts per image). Also checks that both settings give the same scores (to 1e-4).

usage: python benchmarks/bench_mllm_batching.py [--arch qwen2_5_vl|llava] [--images 16] [--threads 1] [--repeats 5]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def build(arch: str, folder: Path) -> str:
    if arch == "qwen2_5_vl":
        from iqabench.models.tiny_vlm import build_qwen2_5_vl

        return str(build_qwen2_5_vl(folder, seed=0, hidden=768, layers=6, heads=12, intermediate=2048, vocab_size=32000,
                                    vision_hidden=384, vision_layers=6, max_pixels=224 * 224))
    if arch == "llava":
        from iqabench.models.tiny_llava import build_tiny_llava

        return str(build_tiny_llava(folder, seed=0, image_size=224, hidden_size=512, layers=6, init_std=0.02))
    raise SystemExit(f"--arch {arch}: expected qwen2_5_vl or llava")


def images(n: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    shapes = [(224, 224), (160, 224), (224, 150), (200, 200), (120, 180), (224, 112)]
    return [Image.fromarray(rng.integers(0, 256, (*shapes[i % len(shapes)], 3), dtype=np.uint8)) for i in range(n)]


def score_all(method, samples, batch: int) -> tuple[float, list[float]]:
    start = time.perf_counter()
    scores: list[float] = []
    for i in range(0, len(samples), batch):
        scores += method.score(samples[i:i + batch])
    return time.perf_counter() - start, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="qwen2_5_vl")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    from iqabench.api import Sample
    from iqabench.methods import softmax

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp:
        path = build(args.arch, Path(tmp) / args.arch)
        method = softmax.SoftmaxOwl2QBench(softmax.SoftmaxOwl2QBench.Options(backend=args.arch, backend_path=path, dtype="float32"))
        method.setup()
        params = sum(p.numel() for p in method.scorer.backend.model.parameters())
        samples = [Sample(id=str(i), image=im, label=0.0) for i, im in enumerate(images(args.images))]
        score_all(method, samples[:8], 8)  # warm-up (first-call allocations, processor caches)
        rounds: dict[int, list[float]] = {1: [], 8: []}
        scores = {}
        for _ in range(args.repeats):
            for batch in (1, 8):
                seconds, scores[batch] = score_all(method, samples, batch)
                rounds[batch].append(seconds)
    diff = max(abs(a - b) for a, b in zip(scores[1], scores[8]))
    print(f"{args.arch}: {params / 1e6:.1f} M parameters, {args.images} images of mixed sizes, "
          f"{args.threads} thread(s), {args.repeats} alternating rounds")
    for label, pick in (("best", min), ("median", lambda xs: sorted(xs)[len(xs) // 2])):
        rate = {b: args.images / pick(r) for b, r in rounds.items()}
        print(f"{label:>6}: batch 1 {rate[1]:.2f} images/s, batch 8 {rate[8]:.2f} images/s, "
              f"ratio (batch 8 / batch 1) {rate[8] / rate[1]:.2f}x")
    print(f"max |score difference| batch 8 vs batch 1: {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit("batch-8 scores differ from batch-1 scores by more than 1e-4")


if __name__ == "__main__":
    main()
