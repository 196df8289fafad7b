"""`iqabench report`."""
from __future__ import annotations

from pathlib import Path

from iqabench.resolve import DEFAULT_RESULTS


def add_arguments(p) -> None:
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <results>/report)")


def execute(args) -> int:
    from iqabench.errors import IqaError
    from iqabench.report.build import build_report, summary_lines

    if not Path(args.results).is_dir():
        raise IqaError(f"{args.results}: no results folder")
    out = args.out or Path(args.results) / "report"
    summary = build_report(Path(args.results), Path(out))
    md = Path(out) / "table.md"
    if md.exists():
        print(md.read_text())
    for line in summary_lines(summary):
        print(line)
    return 0
