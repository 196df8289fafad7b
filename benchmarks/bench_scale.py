"""Scale: the engine's own cost per image, and run / score / report time and peak memory at 10^3 ... 10^6 records.

- engine: `iqabench run` of a method that does no work (`noop`, registered here like a plugin) over a fake
  dataset whose images are 1x1 PNG files (hard links to a few hundred files), so what is timed is
  the engine: plan, decode, record, group commit. Metrics are left out of this number (n_boot 0); the
  time per image is the scoring loop's (run time minus a 10-image run's fixed cost, over the extra images).
- run / score / report: each phase in a fresh process, its wall time and peak resident memory (ru_maxrss).
  At 10^6 records the run folder is synthesized through the store's own writer (RunStore: manifest,
  inputs, append, commit) instead of decoding 10^6 files; `score` and `report` then read it as any run.
  Two methods per size, so the report also runs its paired significance tests over every image.

    python benchmarks/bench_scale.py [--sizes 1000,10000,100000,1000000] [--n-boot 1000] [--n-boot-large 100]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
N_FILES = 256  # distinct image files behind the fake dataset's ids
N_REFS = 1000  # reference images: the fake set is synthetic-distortion shaped (cluster bootstrap)


def register() -> None:
    """The fake dataset `scale` and the method `noop` (its score is the image id's number, plus noise)."""
    from iqabench import registry
    from iqabench.api import Method, MethodInfo, Options
    from iqabench.data.card import DatasetCard

    if "scale" not in registry.datasets.names():
        registry.register_dataset(DatasetCard(
            name="scale", title="scale benchmark", url="-", folder_names=("scale",), layout=("mos.csv",),
            reader={"format": "csv", "id": "{name}", "ref": "{ref}", "images": {"folders": ["images"], "name": "{image}"}},
            label_name="mos", score_range=(0.0, 100.0), higher_better=True, default_split="all"))

    class NoopOptions(Options):
        salt: int = 0

    class Noop(Method):
        name = "noop"
        info = MethodInfo(kind="classic", description="does no work (benchmark)")
        Options = NoopOptions

        def score(self, samples):
            return [(hash((s.id, self.options.salt)) % 1000) / 10.0 for s in samples]

    if "noop" not in registry.methods.names():
        registry.register_method(Noop)


def make_dataset(root: Path, n: int) -> None:
    import numpy as np
    import pandas as pd
    from PIL import Image

    folder = root / "scale"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "src").mkdir(exist_ok=True)
    for i in range(N_FILES):
        path = folder / "src" / f"f{i}.png"
        if not path.exists():
            Image.fromarray(np.full((1, 1, 3), i % 256, dtype=np.uint8)).save(path)
    for i in range(n):  # one file name per image (a card names each file once): hard links, no copies
        link = folder / "images" / f"img{i:07d}.png"
        if not link.exists():
            os.link(folder / "src" / f"f{i % N_FILES}.png", link)
    rng = np.random.default_rng(0)
    ids = np.arange(n)
    pd.DataFrame({"name": [f"img{i:07d}" for i in ids], "image": [f"img{i:07d}.png" for i in ids],
                  "ref": [f"r{i % N_REFS}" for i in ids], "mos": np.round(rng.uniform(0, 100, n), 3)}
                 ).to_csv(folder / "mos.csv", index=False)


def synthesize_run(results: Path, n: int, salt: int) -> Path:
    """A finished-looking run folder of n records, written through RunStore (no image is decoded)."""
    import numpy as np

    from iqabench import provenance
    from iqabench.layout import ResultsLayout
    from iqabench.runs import IDENTITY_KEYS, inputs_hash
    from iqabench.store import RunStore

    rng = np.random.default_rng(salt)
    labels = np.round(rng.uniform(0, 100, n), 3)
    scores = labels + rng.normal(0, 20 + 10 * salt, n)
    inputs = [{"id": f"img{i:07d}", "path": f"images/img{i:07d}.png", "label": float(labels[i]),
               "ref": f"r{i % N_REFS}"} for i in range(n)]
    key = f"synth{salt}"
    run_dir = ResultsLayout(results).run_dir("scale", "all", "test", f"noop{salt}", key)
    manifest = {"method": f"noop{salt}", "method_label": f"noop{salt}", "method_kind": "classic", "options": {},
                "dataset": "scale", "split": "all", "part": "test", "dataset_folder": "-", "split_hash": f"n{n}",
                "labels": True, "label_name": "mos", "label_range": [0, 100], "label_higher_better": True,
                "n_images": n, "limit": None, "seed": 42, "method_higher_better": True, "key": key,
                "fingerprint": {"synthesized": True}, "identity": {"synthesized": n}, "inputs_hash": inputs_hash(inputs),
                "started": provenance.now()}
    with RunStore(run_dir) as store:
        store.check_or_write_manifest(manifest, IDENTITY_KEYS, {"started": provenance.now(), "command": "bench"})
        store.check_or_write_inputs(inputs, inputs_hash(inputs))
        for i, item in enumerate(inputs):
            store.append({"id": item["id"], "score": float(scores[i]), "label": item["label"], "error": None})
            if i % 1000 == 999:
                store.commit()
        store.commit(force=True)
    return run_dir


def phase(args) -> None:
    """One phase in this (fresh) process; prints {"seconds", "peak_mib"} as JSON."""
    register()
    root, results = Path(args.root), Path(args.results)
    t0 = time.perf_counter()
    if args.phase == "run":
        from iqabench.run import RunConfig, run

        for salt in range(args.methods):
            run(RunConfig(method="noop", dataset="scale", split="all", data_root=root, results=results,
                          options={"salt": salt}, batch_size=args.batch_size, progress=False, n_boot=args.n_boot,
                          limit=args.limit), on_log=lambda m: None)
    elif args.phase == "decode":  # what the loop's decoding alone costs: open_rgb over the same files
        from iqabench.data.images import open_rgb

        for i in range(args.n):
            open_rgb(root / "scale" / "images" / f"img{i:07d}.png")
    elif args.phase == "synth":
        for salt in range(args.methods):
            synthesize_run(results, args.n, salt)
    elif args.phase == "score":
        from iqabench.layout import ResultsLayout
        from iqabench.score import score_run

        for run_dir in ResultsLayout(results).run_dirs():
            score_run(run_dir, n_boot=args.n_boot)
    elif args.phase == "report":
        from iqabench.report.build import build_report
        from iqabench.report.options import ReportOptions

        build_report(results, results / "report", ReportOptions(bootstrap_resamples=args.n_boot, progress=False))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak}))


def child(**kw) -> dict:
    argv = [sys.executable, __file__, "--phase"]
    for k, v in kw.items():
        if v is not None:
            argv += [f"--{k.replace('_', '-')}", str(v)] if k != "phase" else [str(v)]
    out = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode != 0:
        raise SystemExit(f"phase {kw} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--engine-n", type=int, default=100_000)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--n-boot-large", type=int, default=100, help="resamples at 10^6 records")
    parser.add_argument("--synth-from", type=int, default=1_000_000, help="sizes from this on are synthesized")
    parser.add_argument("--phase")
    parser.add_argument("--root")
    parser.add_argument("--results")
    parser.add_argument("--n", type=int)
    parser.add_argument("--methods", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    if args.phase:
        return phase(args)

    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        tmp = Path(tmp)
        print(f"engine time per image, no-op method, batch size 1, 1x1 images (n = {args.engine_n}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
        root = tmp / f"data{args.engine_n}"
        make_dataset(root, args.engine_n)
        small = child(phase="run", root=root, results=tmp / "eng", n_boot=0, limit=10)
        full = child(phase="run", root=root, results=tmp / "eng", n_boot=0)
        per = (full["seconds"] - small["seconds"]) / (args.engine_n - 10)
        decode = child(phase="decode", root=root, results=tmp / "eng", n=min(args.engine_n, 20_000))["seconds"]
        decode /= min(args.engine_n, 20_000)
        print(f"  {per * 1000:.3f} ms per image in the loop, of which decoding the 1x1 PNG {decode * 1000:.3f} ms "
              f"(PIL, a bare loop): engine {(per - decode) * 1000:.3f} ms per image (goal <= 0.3 ms)\n"
              f"  run {full['seconds']:.1f} s, fixed cost {small['seconds']:.2f} s, peak {full['peak_mib']:.0f} MiB\n")

        print(f"{'records':>9}  {'how':>11}  {'n_boot':>6}  {'run s':>7} {'MiB':>6}  {'score s':>7} {'MiB':>6}  "
              f"{'report s':>8} {'MiB':>6}  {'report again s':>14}")
        for n in sizes:
            n_boot = args.n_boot if n < args.synth_from else args.n_boot_large
            results = tmp / f"res{n}"
            if n < args.synth_from:
                root = tmp / f"data{n}"
                make_dataset(root, n)
                how = "engine"
                ran = child(phase="run", root=root, results=results, n_boot=n_boot, methods=2)
            else:
                how = "synthesized"
                ran = child(phase="synth", root=tmp, results=results, n=n, methods=2)
            scored = child(phase="score", root=tmp, results=results, n_boot=n_boot)
            reported = child(phase="report", root=tmp, results=results, n_boot=n_boot)
            again = child(phase="report", root=tmp, results=results, n_boot=n_boot)
            print(f"{n:>9}  {how:>11}  {n_boot:>6}  {ran['seconds']:>7.1f} {ran['peak_mib']:>6.0f}  "
                  f"{scored['seconds']:>7.1f} {scored['peak_mib']:>6.0f}  {reported['seconds']:>8.1f} "
                  f"{reported['peak_mib']:>6.0f}  {again['seconds']:>14.1f}", flush=True)
        print("\nrun: two methods (engine: scored and metrics; synthesized: written through RunStore, no metrics); "
              "score: both runs' metrics recomputed; report: tables, paired tests, figures; 'again': figures cached.")


if __name__ == "__main__":
    main()
