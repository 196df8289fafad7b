"""`iqabench run`."""
from __future__ import annotations

from pathlib import Path

from iqabench.cli.common import add_method_args, fmt


def add_arguments(p) -> None:
    add_method_args(p)
    p.add_argument("--part", default="test", help="split part to score: train, val or test (default test)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N images of the part")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap intervals")
    p.add_argument("--checkpoint", type=Path, default=None, help="trained checkpoint folder (trainable methods)")
    p.add_argument("--retry-failed", action="store_true", help="score again the images whose earlier attempt failed")
    p.add_argument("--no-progress", action="store_true")


def execute(args) -> int:
    import statistics

    from iqabench.resolve import parse_option_pairs
    from iqabench.run import RunConfig, run

    done = []
    for split in expand_splits(args.split):
        cfg = RunConfig(method=args.method, dataset=args.dataset, split=split, part=args.part,
                        options=parse_option_pairs(args.option), data_root=args.data_root, results=args.results,
                        limit=args.limit, batch_size=args.batch_size, device=args.device, seed=args.seed,
                        checkpoint=args.checkpoint, retry_failed=args.retry_failed, progress=not args.no_progress)
        result = run(cfg)
        if result.metrics is not None:
            print_metrics(result.metrics)
            done.append(result.metrics)
    if len(done) > 1:
        for key in ("srcc", "plcc"):
            values = [m[key] for m in done]
            text = "undefined in some split" if None in values else f"{statistics.median(values):.4f}"
            print(f"median {key.upper()} over {len(done)} splits: {text}")
    return 0


def expand_splits(split: str | None) -> list[str | None]:
    """`ratio80-0-20-seed{1..10}` -> ten split names (the PromptIQA protocol); anything else as is."""
    import re

    if split is None:
        return [None]
    match = re.fullmatch(r"(.*)\{(\d+)\.\.(\d+)\}(.*)", split)
    if not match:
        return [split]
    lo, hi = int(match[2]), int(match[3])
    return [f"{match[1]}{i}{match[4]}" for i in range(lo, hi + 1)]


def print_metrics(m: dict) -> None:
    ci = (m.get("ci95") or {}).get("srcc")
    ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    print(f"{m['method_label']} | {m['dataset']} {m['split']}/{m['part']} | n={m['n']} failed={m['n_failed']} | "
          f"SRCC {fmt(m.get('srcc'))}{ci_text}  KRCC {fmt(m.get('krcc'))}  "
          f"PLCC {fmt(m.get('plcc'))} (logistic)  PLCC_raw {fmt(m.get('plcc_raw'))}  RMSE {fmt(m.get('rmse'))}")
    if m.get("undefined_reason"):
        print(f"  metrics undefined: {m['undefined_reason']}")
    if m.get("model_identity_changed"):
        print("  WARNING: attempts of this run used different model snapshots (see runtime_attempts in metrics.json)")
    if m.get("n_failed"):
        print(f"  failures by kind: {m['failures_by_kind']} (see predictions.csv, column error)")
    print(f"  -> {m['run_dir']}")
