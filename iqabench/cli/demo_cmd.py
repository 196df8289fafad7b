"""`iqabench demo`: the offline main job described by suites/demo.toml (no method or dataset is
named in code): train the trained methods, score with every method, write the report."""
from __future__ import annotations

import click

from iqabench.cli import shared
from iqabench.cli.settings import Settings, with_settings
from iqabench.suite.lineup import read_lineup as read_suite  # noqa: F401 - tests read the line-up through it

SUITE = "demo.toml"


@click.command("demo", epilog="""\b
Examples:
  iqabench demo
  iqabench demo --limit 20 --results /tmp/demo-results""")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Score only the first N test images (a quick look, not a result).")
@with_settings
def demo_command(settings: Settings, limit: int | None) -> None:
    """Run the offline main job: weight-free classic methods and a trained baseline on the embedded
    `synthetic` set (built on first use), then tables and plots. The line-up is suites/demo.toml."""
    from iqabench.locations import shipped_folder
    from iqabench.report.build import build_report
    from iqabench.run import RunConfig, run
    from iqabench.train import TrainConfig, train

    suite = read_suite(shipped_folder("suites") / SUITE)
    common = {"dataset": suite["dataset"], "data_root": settings.data_root, "results": settings.results}
    for name in suite["trained"]:
        train(TrainConfig(method=name, **common))
    done = []
    for name in suite["zero_shot"] + suite["trained"]:
        result = run(RunConfig(method=name, limit=limit, **common))
        if result.metrics is not None:
            done.append({"run_dir": str(result.run_dir), **result.metrics})
    out = settings.results / "report"
    build_report(settings.results, out)
    click.echo()
    for metrics in done:
        shared.print_metrics(metrics)
    shared.print_summary(done)
    click.echo(f"\nreport: {out / 'table.md'}, {out / 'table.tex'}, {out / 'table.csv'}, plots in {out / 'plots'}")
