"""`iqabench figures method|cost|levels`: the seed papers' figures and label analyses."""
from __future__ import annotations

from pathlib import Path

import click

from iqabench.cli.settings import Settings, global_options, with_settings

OUT_HELP = "Output folder (default: <results>/figures)."


@click.group("figures", invoke_without_command=True, epilog="""\b
Examples:
  iqabench figures method --method vp-owl2 --dataset agiqa3k --n 4      # seed 000 Fig. 2
  iqabench figures method --method dog-iqa --dataset spaq --n 4         # seed 004 Fig. 5
  iqabench figures cost                                                 # seed 002 Table 4
  iqabench figures levels --dataset spaq,koniq10k,livec,agiqa3k,kadid10k   # seed 004 Table 1""")
@global_options
@click.pass_context
def figures_group(ctx: click.Context) -> None:
    """Draw a method's own figure on a few images, tabulate what runs cost, or bound K-level scorers."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@figures_group.command("method", short_help="A method's own figure on the first images of a split part.")
@click.option("--method", required=True, metavar="NAME", help="A method that draws a figure (vp-owl2, dog-iqa, ...).")
@click.option("--dataset", required=True, metavar="NAME")
@click.option("--split", default=None, metavar="NAME", help="Split (default: as `iqabench run` chooses it).")
@click.option("--part", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("-o", "--option", "option_pairs", multiple=True, metavar="KEY=VALUE", help="Method option, as for run.")
@click.option("--checkpoint", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Trained checkpoint folder (default: the one `train` made, as for run).")
@click.option("--n", "n_images", type=click.IntRange(min=1), default=4, show_default=True, help="Images shown.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=42, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None, help=OUT_HELP)
@with_settings
def figures_method(settings: Settings, method, dataset, split, part, option_pairs, checkpoint, n_images, batch_size,
                   device, seed, out) -> None:
    """The method planned and set up as `iqabench run` would (same split, checkpoint and options) draws
    its figure on the part's first N images; written as PNG."""
    from iqabench.config import RunConfig
    from iqabench.options import parse_option_pairs
    from iqabench.report.figures import draw_method_figure

    cfg = RunConfig(method=method, dataset=dataset, split=split, part=part, options=parse_option_pairs(option_pairs),
                    data_root=settings.data_root, results=settings.results, batch_size=batch_size, device=device,
                    seed=seed, checkpoint=checkpoint, progress=False)
    draw_method_figure(cfg, n_images, out or settings.results / "figures", on_log=click.echo)


@figures_group.command("cost", short_help="Trainable parameters and time per image of every run (md, csv, png).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None, help=OUT_HELP)
@with_settings
def figures_cost(settings: Settings, out) -> None:
    """One row per finished run under the results folder: trainable parameters (tensor elements of its
    trained checkpoint; 0 for zero-shot) and mean seconds per image."""
    from iqabench.errors import IqaError
    from iqabench.report.cost import write_cost_table

    if not settings.results.is_dir():
        raise IqaError(f"{settings.results}: no results folder (run `iqabench run` first, or give --results DIR)")
    files = write_cost_table(settings.results, out or settings.results / "figures")
    click.echo(files[0].read_text().rstrip())
    for path in files:
        click.echo(f"wrote {path}")


@figures_group.command("levels", short_help="Upper bound of a K-level scorer on datasets' labels.")
@click.option("--dataset", "datasets", required=True, multiple=True, metavar="NAME[,NAME...]")
@click.option("--levels", default="3,5,7,9", show_default=True, metavar="K,K,...")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None, help=OUT_HELP)
@with_settings
def figures_levels(settings: Settings, datasets, levels, out) -> None:
    """Every label of each dataset scaled to K levels and rounded (seed 004's Eq. 1); the table gives
    (SRCC + PLCC) / 2 of the levels against the labels, as seed 004's Table 1; levels.csv has both."""
    import csv

    from iqabench import registry
    from iqabench.cli.shared import split_names
    from iqabench.errors import IqaError
    from iqabench.report.levels import level_bound, table_lines

    try:
        ks = [int(k) for k in split_names([levels])]
    except ValueError:
        raise IqaError(f"--levels {levels!r}: expected integers, e.g. 3,5,7,9") from None
    bounds = []
    for name in split_names(datasets):
        card = registry.datasets.get(name)
        _, table = card.load(settings.data_root)
        labels = table["label"].astype("float64").to_numpy()
        bounds += [level_bound(card.name, labels, k) for k in ks]
    out = out or settings.results / "figures"
    out.mkdir(parents=True, exist_ok=True)
    lines = table_lines(bounds)
    (out / "levels.md").write_text("\n".join(lines) + "\n\n(SRCC + PLCC) / 2 of the labels rounded to K levels.\n")
    with open(out / "levels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "levels", "n", "srcc", "plcc", "mean"])
        for b in bounds:
            writer.writerow([b.dataset, b.levels, b.n, f"{b.srcc:.6f}", f"{b.plcc:.6f}", f"{b.mean:.6f}"])
    click.echo("\n".join(lines))
    click.echo(f"wrote {out / 'levels.md'}\nwrote {out / 'levels.csv'}")
