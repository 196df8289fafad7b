"""`iqabench datasets`: which datasets are found under the data root, and what is expected if not."""
from __future__ import annotations

from iqabench.cli.common import add_data_args


def add_arguments(p) -> None:
    add_data_args(p)


def execute(args) -> int:
    from iqabench import registry

    for name in registry.datasets.names():
        card = registry.datasets.get(name)
        folder = card.locate(args.data_root)
        if folder is not None:
            print(f"{name:18} found     {folder}")
        elif card.build is not None:
            print(f"{name:18} built on first use under {args.data_root / card.folder_names[0]}")
        else:
            print(f"{name:18} missing   {card.describe_missing(args.data_root).split(': ', 1)[1]}")
    return 0
