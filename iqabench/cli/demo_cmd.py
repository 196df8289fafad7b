"""`iqabench demo`: the offline main job on the embedded `synthetic` set.

Scores the test split with two weight-free pyiqa classics (PIQE, entropy), trains BRISQUE+SVR
on the train split (selecting on val), scores the test split with it, then writes the report.
"""
from __future__ import annotations

from pathlib import Path

from iqabench.cli.common import add_data_args

ZERO_SHOT = ("pyiqa:piqe", "pyiqa:entropy")
TRAINED = ("brisque-svr",)


def add_arguments(p) -> None:
    add_data_args(p)
    p.add_argument("--limit", type=int, default=None, help="score only the first N test images (quick look)")


def execute(args) -> int:
    from iqabench.cli.run_cmd import print_metrics
    from iqabench.report.build import build_report
    from iqabench.run import RunConfig, run
    from iqabench.train import TrainConfig, train

    done = []
    for name in TRAINED:
        train(TrainConfig(method=name, dataset="synthetic", data_root=args.data_root, results=args.results))
    for name in ZERO_SHOT + TRAINED:
        result = run(RunConfig(method=name, dataset="synthetic", data_root=args.data_root, results=args.results,
                               limit=args.limit))
        done.append(result.metrics)
    out = Path(args.results) / "report"
    build_report(Path(args.results), out)
    print()
    for m in done:
        print_metrics(m)
    print(f"\nreport: {out / 'table.md'}, {out / 'table.tex'}, {out / 'table.csv'}, plots in {out / 'plots'}")
    return 0
