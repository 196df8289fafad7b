"""A 120-image piqe run against a plain pyiqa script over the same files (issue 19 item 5).

Each side runs in a fresh process and is measured in CPU seconds (user + system of the child), so a
busy machine inflates both alike; best of --repeats, interleaved. The iqabench side is a whole run:
start-up, method lookup, the pyiqa guard, decoding, records, metrics (bootstrap included) and the
run folder; the plain side is `pyiqa.create_metric("piqe")` called on each file path. Goal: <= 1.1x.

The console script ends without the interpreter's teardown (iqabench/cli/fast_exit.py), which a
plain script pays. So the teardown is not what hides the engine's own cost, two more rows are
printed: the plain script ending the same way (os._exit), and the run with IQABENCH_FULL_EXIT=1. A
fourth shows what the engine costs beyond the metrics a paper's script computes anyway: the plain
script (ending in os._exit) also computing SRCC, KRCC and PLCC after one logistic fit. The engine
does more there (seven fit starts, bootstrap intervals), so that ratio bounds the rest from above.
    python benchmarks/bench_piqe_startup.py [--images 120] [--repeats 3]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CARD = textwrap.dedent("""
    from iqabench import registry
    from iqabench.data.card import DatasetCard
    registry.register_dataset(DatasetCard(
        name="piqebench", title="piqe benchmark images", url="-", folder_names=("piqebench",), layout=("mos.csv",),
        reader={"format": "csv", "id": "{image}", "images": {"folders": ["images"]}},
        label_name="mos", score_range=(1.0, 5.0), higher_better=True, default_split="all"))
""")

PLAIN = textwrap.dedent("""
    import sys, warnings
    from pathlib import Path
    warnings.filterwarnings("ignore")
    import pyiqa
    metric = pyiqa.create_metric("piqe", device="cpu")
    folder = Path(sys.argv[1])
    scores = [float(metric(str(p))) for p in sorted(folder.glob("*.png"))]
    print(len(scores))
    if "metrics" in sys.argv:  # what a paper's script adds: SRCC, KRCC, and PLCC after one 4-parameter logistic fit
        import csv
        import numpy as np
        from scipy import optimize, stats
        mos = {row["image"]: float(row["mos"]) for row in csv.DictReader(open(folder.parent / "mos.csv"))}
        x, y = np.array(scores), np.array([mos[p.name] for p in sorted(folder.glob("*.png"))])
        def logistic(x, b1, b2, b3, b4):
            return (b1 - b2) / (1 + np.exp(-(x - b3) / abs(b4))) + b2
        params, _ = optimize.curve_fit(logistic, x, y, p0=[y.max(), y.min(), x.mean(), x.std()], maxfev=20000)
        print(stats.spearmanr(x, y)[0], stats.kendalltau(x, y)[0], stats.pearsonr(logistic(x, *params), y)[0])
    if "fast-exit" in sys.argv:  # end as the console script does: exit handlers, no teardown
        import atexit, os
        sys.stdout.flush()
        atexit._run_exitfuncs()
        os._exit(0)
""")


def make_dataset(root: Path, n: int) -> None:
    import numpy as np
    import pandas as pd
    from PIL import Image

    folder = root / "piqebench"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):  # a smooth image with noise of varying strength: piqe has something to find
        base = np.linspace(0, 200, 256)[None, :, None] * np.ones((192, 1, 3))
        image = np.clip(base + rng.normal(0, 2 + i % 30, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / "images" / f"{i:04d}.png")
        rows.append({"image": f"{i:04d}.png", "mos": float(5 - (i % 30) / 8)})
    pd.DataFrame(rows).to_csv(folder / "mos.csv", index=False)


def cpu_seconds(args: list[str], **env: str) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                                                                     "PATH": "/usr/bin:/bin", **env})
    if done.returncode != 0:
        raise SystemExit(f"{args[:3]} failed:\n{done.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_dataset(tmp / "data", args.images)
        card = tmp / "card_plugin.py"
        card.write_text(CARD)
        images = str(tmp / "data" / "piqebench" / "images")
        times: dict[str, list[float]] = {"plain": [], "plain_fast": [], "plain_metrics": [], "ours": [], "ours_full": []}
        for r in range(args.repeats):
            times["plain"].append(cpu_seconds([sys.executable, "-c", PLAIN, images]))
            times["plain_fast"].append(cpu_seconds([sys.executable, "-c", PLAIN, images, "fast-exit"]))
            times["plain_metrics"].append(cpu_seconds([sys.executable, "-c", PLAIN, images, "fast-exit", "metrics"]))
            run = [sys.executable, "-m", "iqabench.cli.main", "--plugin", str(card), "run", "--method", "piqe",
                   "--dataset", "piqebench", "--data-root", str(tmp / "data"), "--no-progress"]
            times["ours"].append(cpu_seconds(run + ["--results", str(tmp / f"results{r}")]))
            times["ours_full"].append(cpu_seconds(run + ["--results", str(tmp / f"full{r}")], IQABENCH_FULL_EXIT="1"))
        best = {k: min(v) for k, v in times.items()}
        print(f"{args.images} PNGs of 256x192, piqe on CPU, 1 thread, best of {args.repeats} (CPU seconds)")
        print(f"plain pyiqa script                     : {best['plain']:6.2f} s")
        print(f"iqabench run                           : {best['ours']:6.2f} s")
        print(f"ratio                                  : {best['ours'] / best['plain']:6.2f}x   (goal <= 1.10)")
        print("without the interpreter's teardown on either side (the engine's own cost):")
        print(f"plain pyiqa script ending in os._exit  : {best['plain_fast']:6.2f} s")
        print(f"ratio                                  : {best['ours'] / best['plain_fast']:6.2f}x")
        print("the same, the plain script also computing SRCC, KRCC and one-start logistic PLCC (no intervals):")
        print(f"plain pyiqa script with metrics        : {best['plain_metrics']:6.2f} s")
        print(f"ratio                                  : {best['ours'] / best['plain_metrics']:6.2f}x")
        print("with the teardown on both sides (IQABENCH_FULL_EXIT=1):")
        print(f"iqabench run, ordinary exit            : {best['ours_full']:6.2f} s")
        print(f"ratio                                  : {best['ours_full'] / best['plain']:6.2f}x")

if __name__ == "__main__":
    main()
