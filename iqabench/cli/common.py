"""Arguments shared by subcommands."""
from __future__ import annotations

import argparse
from pathlib import Path

from iqabench.resolve import DEFAULT_DATA_ROOT, DEFAULT_RESULTS


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                   help=f"folder holding one folder per dataset (default: ./{DEFAULT_DATA_ROOT})")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help=f"results folder (default: ./{DEFAULT_RESULTS})")


def add_method_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, help="registered method name, e.g. piqe, pyiqa:niqe, vp-owl2")
    p.add_argument("--dataset", required=True, help="registered dataset name, e.g. synthetic, koniq10k")
    p.add_argument("--split", default=None, help="split name (default: the dataset's own, see `iqabench list datasets`)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="method option (repeatable); values are JSON when they parse as JSON")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    add_data_args(p)


def fmt(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
