"""`iqabench train`."""
from __future__ import annotations

import json

from iqabench.cli.common import add_method_args


def add_arguments(p) -> None:
    add_method_args(p)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--limit", type=int, default=None, help="use only the first N train and N val images")


def execute(args) -> int:
    from iqabench.resolve import parse_option_pairs
    from iqabench.train import TrainConfig, train

    cfg = TrainConfig(method=args.method, dataset=args.dataset, split=args.split, options=parse_option_pairs(args.option),
                      data_root=args.data_root, results=args.results, batch_size=args.batch_size, device=args.device,
                      seed=args.seed, limit=args.limit)
    workdir, summary = train(cfg)
    print(json.dumps(summary, indent=1, default=str))
    print(f"checkpoint -> {workdir}")
    return 0
