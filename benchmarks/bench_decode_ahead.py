"""Decoding ahead of the model (issue 19 item 4): `run --workers 2` against decoding in turn.

The method waits without holding the GIL (time.sleep, as a GPU does) for as long as decoding an
image takes, measured first on the same files. In turn, the two take turns (about half the slower
rate); with decoding ahead the loop should run at >= 0.9 x the slower of the two rates. The rate is
timed from the method's setup to its teardown (the scoring loop), best of --repeats. Run:
    python benchmarks/bench_decode_ahead.py [--images 150] [--size 512] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def make_dataset(root: Path, n: int, size: int) -> list[Path]:
    import numpy as np
    import pandas as pd
    from PIL import Image

    folder = root / "decodebench"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, paths = [], []
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    for i in range(n):  # noisy but compressible: PNG decoding is real work, as on photos
        noise = rng.integers(0, 16, (size, size, 3), dtype=np.uint8)
        path = folder / "images" / f"{i}.png"
        Image.fromarray(base // 2 + noise).save(path)
        rows.append({"image": path.name, "mos": float(rng.uniform(1, 5))})
        paths.append(path)
    pd.DataFrame(rows).to_csv(folder / "mos.csv", index=False)
    return paths


def register(loop_times: list[float]) -> None:
    from iqabench import registry
    from iqabench.api import Method, MethodInfo, Options
    from iqabench.data.card import DatasetCard

    registry.register_dataset(DatasetCard(
        name="decodebench", title="decode-ahead benchmark images", url="-", folder_names=("decodebench",),
        layout=("mos.csv",), reader={"format": "csv", "id": "{image}", "images": {"folders": ["images"]}},
        label_name="mos", score_range=(1.0, 5.0), higher_better=True, default_split="all"))

    class WaitOptions(Options):
        seconds: float = 0.0  # per image

    @registry.register_method
    class GpuLikeWait(Method):
        """Waits per image without holding the GIL, like a model running on a GPU."""

        name = "bench-wait"
        info = MethodInfo(kind="classic", description="waits, GIL released (benchmark)")
        Options = WaitOptions

        def setup(self, ctx=None):
            super().setup(ctx)
            self._t0 = time.perf_counter()

        def score(self, samples):
            time.sleep(self.options.seconds * len(samples))
            return [float(s.image.size[0] % 7) + i for i, s in enumerate(samples)]

        def teardown(self):
            loop_times.append(time.perf_counter() - self._t0)
            super().teardown()


def decode_seconds(paths: list[Path]) -> float:
    from iqabench.data.images import open_rgb

    t0 = time.perf_counter()
    for p in paths:
        open_rgb(p)
    return (time.perf_counter() - t0) / len(paths)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from iqabench.run import RunConfig, run

    loop_times: list[float] = []
    register(loop_times)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_dataset(tmp / "data", args.images, args.size)
        decode_seconds(paths[:10])  # warm the page cache
        ratios: dict[int, list[float]] = {0: [], 2: []}
        decoding = []
        for r in range(args.repeats):  # interleaved, and each repeat against its own decoding rate,
            per_image = decode_seconds(paths)  # so the machine's load hits both sides alike
            decoding.append(per_image)
            for workers in ratios:
                run(RunConfig(method="bench-wait", dataset="decodebench", split="all", data_root=tmp / "data",
                              results=tmp / f"results-{workers}-{r}", options={"seconds": per_image},
                              batch_size=args.batch_size, progress=False, n_boot=0, workers=workers),
                    on_log=lambda m: None)
                # decoding and the wait run at the same rate by construction: that is the slower rate
                ratios[workers].append((args.images / loop_times[-1]) * per_image)
        print(f"{args.images} PNGs of {args.size}x{args.size}, batch {args.batch_size}; decoding "
              f"{1000 * min(decoding):.1f}-{1000 * max(decoding):.1f} ms/image over the repeats; the method "
              "waits as long (GIL released)")
        for workers, got in ratios.items():
            print(f"--workers {workers}: rate / slower rate = {max(got):.2f} best, {statistics.median(got):.2f} "
                  f"median of {args.repeats}")
        print(f"ratio (--workers 2): {max(ratios[2]):.2f}   (goal >= 0.90; in turn: {max(ratios[0]):.2f})")


if __name__ == "__main__":
    main()
