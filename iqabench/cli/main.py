"""`iqabench` entry point. Subcommand modules (and torch) are imported only when used."""
from __future__ import annotations

import argparse
import importlib
import sys

from iqabench.errors import IqaError

# subcommand -> (module under iqabench.cli, one-line help)
COMMANDS = {
    "run": ("run_cmd", "score a dataset split with a method (resumable)"),
    "train": ("train_cmd", "train a trainable method (fit on train, select on val)"),
    "report": ("report_cmd", "turn saved results into tables (md, tex, csv) and scatter plots"),
    "list": ("list_cmd", "list registered methods or datasets and whether they can run here"),
    "datasets": ("datasets_cmd", "show which datasets are found under the data root"),
    "demo": ("demo_cmd", "the offline main job: classic methods on the embedded `synthetic` set, then a report"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="iqabench", description="Compare image-quality-assessment methods.")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="import a plugin module or .py file that registers methods or datasets (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    modules = {}
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(f"iqabench.cli.{module}")
        modules[name] = mod
        mod.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    try:
        from iqabench.registry import load_plugin

        for spec in args.plugin:
            load_plugin(spec)
        return int(modules[args.command].execute(args) or 0)
    except IqaError as exc:
        print(f"iqabench: error{_rank_tag()}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("iqabench: interrupted; everything saved so far is kept, rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        from iqabench import parallel

        parallel.shutdown()


def _rank_tag() -> str:
    """' (rank r of n)' in a data-parallel run, where every rank writes to the same terminal."""
    import os

    size = int(os.environ.get("WORLD_SIZE", "1"))
    return f" (rank {os.environ.get('RANK', '?')} of {size})" if size > 1 else ""


if __name__ == "__main__":
    sys.exit(main())
