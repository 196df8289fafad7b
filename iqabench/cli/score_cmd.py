"""`iqabench score RUN_DIR...`: metrics recomputed from saved predictions, with no model."""
from __future__ import annotations

from pathlib import Path

import click

from iqabench.cli import shared
from iqabench.cli.settings import Settings, with_settings


@click.command("score", epilog="""\b
Examples:
  iqabench score results/runs/synthetic/byref-ratio60-20-20-seed42-test/piqe-1a2b3c4d5e6f
  iqabench score results/runs/koniq10k/*/*      # every run folder of a dataset""")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...",
                type=click.Path(path_type=Path, exists=True, file_okay=False))
@with_settings
def score_command(settings: Settings, run_dirs: tuple[Path, ...]) -> None:
    """Recompute metrics.json and predictions.csv of finished runs from their saved records.

    No model, weights or dataset files are needed (e.g. after a metrics fix)."""
    from iqabench.score import score_run

    done = []
    for run_dir in run_dirs:
        metrics = {"run_dir": str(run_dir), **score_run(Path(run_dir))}
        shared.print_metrics(metrics)
        done.append(metrics)
    shared.print_summary(done)
