"""`iqabench score RUN_DIR...`: metrics recomputed from saved predictions, with no model; with
--words or --levels, a new run folder re-scored from the stored answer-word logits."""
from __future__ import annotations

from pathlib import Path

import click

from iqabench.cli import shared
from iqabench.cli.settings import Settings, with_settings


def _list(value: str, flag: str) -> tuple[str, ...]:
    from iqabench.errors import IqaError

    items = tuple(v.strip() for v in value.split(","))
    if not all(items):
        raise IqaError(f"{flag} {value!r}: an empty name in the comma-separated list")
    return items


def rescoring_from(words: str | None, levels: str | None, weights: str | None):
    """The Rescoring the flags ask for, or None (plain re-scoring of the metrics)."""
    from iqabench.errors import IqaError
    from iqabench.score import Rescoring

    if words and (levels or weights):
        raise IqaError("--words and --levels/--weights: give one way of re-scoring")
    if words:
        positive, sep, negative = words.partition("/")
        if not sep or "/" in negative:
            raise IqaError(f"--words {words!r}: expected POSITIVE,.../NEGATIVE,... (one '/')")
        return Rescoring.words(_list(positive, "--words"), _list(negative, "--words"))
    if bool(levels) != bool(weights):
        raise IqaError("--levels and --weights go together (one weight per level)")
    if levels:
        try:
            numbers = [float(w) for w in _list(weights, "--weights")]
        except ValueError:
            raise IqaError(f"--weights {weights!r}: expected numbers, e.g. 1,.75,.5,.25,0") from None
        return Rescoring.rated(_list(levels, "--levels"), numbers)
    return None


@click.command("score", epilog="""\b
Examples:
  iqabench score results/runs/synthetic/byref-ratio60-20-20-seed42-test/piqe-1a2b3c4d5e6f
  iqabench score results/runs/koniq10k/*/*      # every run folder of a dataset
  iqabench score RUN_DIR --words good,fine/poor,bad
  iqabench score RUN_DIR --levels excellent,good,fair,poor,bad --weights 1,.75,.5,.25,0""")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...",
                type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--words", default=None, metavar="POS,.../NEG,...",
              help="Re-score from the stored answer-word logits: P(positive words) against the negative ones. "
                   "Writes a new run folder beside RUN_DIR.")
@click.option("--levels", default=None, metavar="L1,L2,...",
              help="Re-score as the expected weight of rated levels (with --weights); a new run folder.")
@click.option("--weights", default=None, metavar="W1,W2,...", help="One weight per level of --levels.")
@with_settings
def score_command(settings: Settings, run_dirs: tuple[Path, ...], words, levels, weights) -> None:
    """Recompute metrics.json and predictions.csv of finished runs from their saved records.

    No model, weights or dataset files are needed (e.g. after a metrics fix). With --words or
    --levels, runs that stored their answer-word logits are re-scored into a new run folder each,
    which reports and suite tables read like any run (its manifest says what it was re-scored from)."""
    from iqabench.score import rescore_run, score_run

    rescoring = rescoring_from(words, levels, weights)
    done = []
    for run_dir in run_dirs:
        if rescoring is None:
            metrics = {"run_dir": str(run_dir), **score_run(Path(run_dir), on_log=lambda m: click.echo(m, err=True))}
        else:
            target, metrics = rescore_run(Path(run_dir), rescoring)
            click.echo(f"re-scored {run_dir} -> {target}")
        shared.print_metrics(metrics)
        done.append(metrics)
    shared.print_summary(done)
