"""`iqabench report`: tables and plots from the result files only (no model is run)."""
from __future__ import annotations

from pathlib import Path

import click

from iqabench.cli.settings import Settings, with_settings


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    from iqabench.errors import IqaError

    out = {}
    for value in values:
        key, sep, name = value.partition("=")
        if not sep or not key.strip() or not name.strip():
            raise IqaError(f"{flag} {value!r}: expected KEY=NAME")
        out[key.strip()] = name.strip()
    return out


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


@click.command("report", epilog="""\b
Examples:
  iqabench report
  iqabench report --metrics srcc,plcc --decimals 3 --name pyiqa:piqe=PIQE --name brisque-svr=BRISQUE-SVR
  iqabench report --order BRISQUE-SVR,PIQE --dataset-name koniq10k=KonIQ --out paper/tables
  iqabench report --suite seed004-table2      # the paper's table, ours beside the published numbers
  iqabench report --suite seed003-table2-sdn --dataset-map kadid10k=synthetic -o backend_path=/models/x""")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Output folder (default: <results>/report).")
@click.option("--suite", "suite_name", default=None, metavar="NAME",
              help="Render a paper-table suite (suites/NAME.toml) with the published numbers beside ours.")
@click.option("--dataset-map", "dataset_map", multiple=True, metavar="A=B",
              help="With --suite: the dataset mapping the suite was run with (default: what the last "
                   "`iqabench suite run` here recorded).")
@click.option("-o", "--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
              help="With --suite: the -o options the suite was run with (default: as recorded by `suite run`).")
@click.option("--name", "names", multiple=True, metavar="KEY=NAME",
              help="Name shown for a row (its label, method label or method name); repeatable.")
@click.option("--order", default=None, metavar="A,B,...", help="Rows to list first, in this order.")
@click.option("--dataset-name", "dataset_names", multiple=True, metavar="KEY=NAME",
              help="Name shown for a dataset column; repeatable.")
@click.option("--dataset-order", default=None, metavar="A,B,...", help="Dataset columns to list first.")
@click.option("--metrics", default="srcc,plcc", show_default=True,
              help="Columns per dataset: srcc, krcc, plcc (after the logistic fit), plcc_raw, rmse.")
@click.option("--decimals", type=click.IntRange(0, 6), default=3, show_default=True)
@click.option("--part", default="test", show_default=True, help="Split part the table shows (all: every part).")
@click.option("--ci/--no-ci", default=False, help="Show bootstrap 95 %% intervals of single runs.")
@click.option("--spread/--no-spread", default=True, help="Show ± half the IQR after medians over splits.")
@click.option("--significance", type=click.Choice(["best", "all", "none"]), default="best", show_default=True,
              help="Test every method against the column's best, every pair, or none.")
@click.option("--test", "significance_test", type=click.Choice(["bootstrap", "williams"]), default="bootstrap",
              show_default=True, help="The test behind the † mark (paired bootstrap, or Williams' t).")
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option("--resamples", type=click.IntRange(min=100), default=1000, show_default=True)
@click.option("--bootstrap-seed", type=click.IntRange(min=0), default=None,
              help="Seed of the paired bootstrap (default: the seed the runs were scored with, `run --seed`).")
@click.option("--plots/--no-plots", default=True)
@click.option("--progress/--no-progress", default=True)
@click.option("--caption", default=None, help="Replaces the first sentence of table.tex's caption.")
@click.option("--label", default=None,
              help="LaTeX \\label of table.tex (runs.tex: LABEL-runs); default tab:<name of the report folder, "
                   "or of the results folder for <results>/report>.")
@with_settings
def report_command(settings: Settings, out: Path | None, suite_name: str | None, dataset_map, option_pairs, names, order,
                   dataset_names, dataset_order, metrics, decimals, part, ci, spread, significance,
                   significance_test, alpha, resamples, bootstrap_seed, plots, progress, caption, label) -> None:
    """Turn saved results into tables (md, tex, csv, html), significance tests, breakdowns and plots."""
    from iqabench.errors import IqaError

    results = settings.results
    if not results.is_dir():
        raise IqaError(f"{results}: no results folder (run `iqabench run` first, or give --results DIR)")
    out = out or results / "report"
    if suite_name:
        if not _accuracy_suite_report(results, out, suite_name, dataset_map, option_pairs):
            _suite_report(results, out, suite_name, dataset_map, option_pairs)
        return
    if dataset_map or option_pairs:
        raise IqaError("--dataset-map and -o go with --suite NAME")
    from iqabench.report.build import build_report, summary_lines
    from iqabench.report.options import ReportOptions

    options = ReportOptions(
        display_names=_pairs(names, "--name"), method_order=_names(order),
        dataset_names=_pairs(dataset_names, "--dataset-name"), dataset_order=_names(dataset_order),
        metrics=_names(metrics), decimals=decimals, part=None if part == "all" else part, show_ci=ci,
        show_spread=spread, significance=significance, significance_test=significance_test, alpha=alpha,
        bootstrap_resamples=resamples, bootstrap_seed=bootstrap_seed, plots=plots, progress=progress,
        caption=caption, label=label)
    summary = build_report(results, out, options)
    md = out / "table.md"
    if md.exists():
        click.echo(md.read_text())
    if "accuracy.md" in summary["files"]:
        click.echo(summary["files"]["accuracy.md"].read_text())
    for line in summary_lines(summary):
        click.echo(line)


def _suite_report(results: Path, out: Path, name: str, dataset_map, option_pairs) -> None:
    """The suite's table from the runs `suite run` made: with the flags given, else with what it recorded."""
    from iqabench.cli.suite_cmd import parse_dataset_map
    from iqabench.options import parse_option_pairs
    from iqabench.suite import load_suite
    from iqabench.suite.settings import SuiteSettings, recorded_settings
    from iqabench.suite.table import render_suite

    suite = load_suite(name)
    chosen = SuiteSettings(parse_dataset_map(dataset_map), parse_option_pairs(option_pairs))
    if not dataset_map and not option_pairs:
        recorded = recorded_settings(results, suite.name)
        if recorded is not None:
            chosen = recorded
            click.echo(f"note: as `suite run` ran it: {recorded.describe()}", err=True)
    suite = suite.adapted(chosen.dataset_map, chosen.options)
    written = render_suite(suite, results, out / "suites")
    click.echo(written["md"].read_text())
    for path in written.values():
        click.echo(f"wrote {path}")


def _accuracy_suite_report(results: Path, out: Path, name: str, dataset_map, option_pairs) -> bool:
    """A paper's accuracy table (kind = "accuracy-table"), from `iqabench ask` runs; False: another kind."""
    from iqabench import io
    from iqabench.errors import IqaError
    from iqabench.tasks.mcq_suite import is_accuracy_suite, load_accuracy_suite, render_accuracy_suite

    if not is_accuracy_suite(name):
        return False
    if dataset_map or option_pairs:
        raise IqaError(f"{name}: an accuracy table reads `iqabench ask` runs as its rows give them: "
                       "--dataset-map and -o do not apply")
    suite = load_accuracy_suite(name)
    text = render_accuracy_suite(suite, results)
    path = out / "suites" / f"{suite.name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_text_atomic(path, text)
    click.echo(text)
    click.echo(f"wrote {path}")
    return True
