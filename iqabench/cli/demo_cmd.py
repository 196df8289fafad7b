"""`iqabench demo`: the offline main job described by suites/demo.toml (no method or dataset is
named in code): train the trained methods, score with every method, write the report."""
from __future__ import annotations

from pathlib import Path

import click

from iqabench.cli import shared
from iqabench.cli.settings import Settings, with_settings

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


def read_suite(path: Path) -> dict:
    """The demo suite: `dataset` (a name) and the `zero_shot` and `trained` method lists."""
    import tomllib

    from iqabench.errors import IqaError

    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise IqaError(f"{path}: the demo suite file is missing from this installation") from None
    except tomllib.TOMLDecodeError as exc:
        raise IqaError(f"{path}: not valid TOML ({exc})") from None
    if not isinstance(data.get("dataset"), str) or not data["dataset"]:
        raise IqaError(f"{path}: `dataset` must be a dataset name")
    for key in ("zero_shot", "trained"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise IqaError(f"{path}: `{key}` must be a list of method names")
        data[key] = value
    if not data["zero_shot"] + data["trained"]:
        raise IqaError(f"{path}: names no method (`zero_shot`, `trained`)")
    return data
