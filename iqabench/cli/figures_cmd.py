"""`iqabench figures method|cost`: the seed papers' figures and the cost of runs."""
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
""")
@global_options
@click.pass_context
def figures_group(ctx: click.Context) -> None:
    """Draw a method's own figure on a few images, or tabulate what runs cost."""
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
