"""`iqabench import FILE...`: published per-image outputs become runs on a carded dataset."""
from __future__ import annotations

from pathlib import Path

import click

from iqabench.cli import shared
from iqabench.cli.settings import Settings, with_settings


@click.command("import", epilog="""\b
Examples:
  iqabench import Q-Bench/leaderboards/IQA_outputs/llava_v1.5/koniq.json --dataset koniq10k
  iqabench import llava_v1.5/koniq.json mplug_owl/koniq.json --dataset koniq10k --labels file
  iqabench import my-scores.csv --dataset koniq10k --split official --part test --name mine""")
@click.argument("files", nargs=-1, required=True, metavar="FILE...",
                type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--dataset", required=True, metavar="NAME",
              help="The carded dataset the file's images belong to (only its metadata is read).")
@click.option("--format", "fmt", type=click.Choice(["auto", "qbench", "csv"]), default="auto", show_default=True,
              help="qbench: Q-Bench's per-image outputs (img_path, gt_score, logit_*), scored with their "
                   "notebook's formula; csv: columns id and score (and optionally label). auto: by file name.")
@click.option("--labels", type=click.Choice(["card", "file"]), default="card", show_default=True,
              help="Score against the card's labels (beside runs made here), or the file's own (as published).")
@click.option("--name", default=None, help="The row's name (one FILE only; default: qbench:<model folder> "
                                            "or the file name).")
@click.option("--split", default="all", show_default=True, help="Split whose part the run covers.")
@click.option("--part", default="test", show_default=True, help="Part of the split the run covers.")
@click.option("--seed", type=click.IntRange(min=0), default=42, show_default=True, help="Seeds the bootstrap intervals.")
@click.option("--accept-out-of-range", is_flag=True,
              help="Accept labels outside the range the dataset card declares (otherwise an error).")
@with_settings
def import_command(settings: Settings, files, dataset, fmt, labels, name, split, part, seed,
                   accept_out_of_range) -> None:
    """Turn published per-image outputs into run folders on DATASET's split part.

    Ids are matched to the card (those that are not: one line with counts); images of the part the
    file lacks are failure records. When the file carries labels, their agreement with the card's
    is recorded. The run is a normal run folder: reports, breakdowns and significance tests read it."""
    from iqabench.errors import IqaError
    from iqabench.imports import ImportConfig, import_outputs

    if name and len(files) > 1:
        raise IqaError("--name names one imported row; give one FILE with it")
    done = []
    for path in files:
        cfg = ImportConfig(file=path, dataset=dataset, data_root=settings.data_root, results=settings.results,
                           name=name, fmt=fmt, labels=labels, split=split, part=part, seed=seed,
                           accept_out_of_range=accept_out_of_range)
        result = import_outputs(cfg, on_log=lambda line: click.echo(line, err=True))
        info = result.imported
        agreement = info.get("label_agreement")
        if agreement and agreement.get("srcc") is not None:
            click.echo(f"{path}: its labels ({info['label_field']}, {agreement['file_range'][0]:g}..."
                       f"{agreement['file_range'][1]:g}) against the card's ({agreement['card_range'][0]:g}..."
                       f"{agreement['card_range'][1]:g}): SRCC {agreement['srcc']:.4f}, "
                       f"{agreement['discordant_pairs']} of {agreement['pairs']} pairs ordered differently")
        click.echo(f"{path}: {info['matched']} image(s) matched, {info['unmatched']['count']} not on the card, "
                   f"{info['outside_part']} outside {split}/{part}, {info['not_in_file']} of the part not in the "
                   f"file; score: {info['formula']}; labels: {labels}")
        published = info.get("as_published")
        if published:
            click.echo(f"{path}: as published ({published['rule']}): SRCC {shared.fmt(published['srcc'])}, "
                       f"PLCC {shared.fmt(published['plcc_raw'])} (no fit); records "
                       + ", ".join(f"{b['records'][0]}-{b['records'][1]} (n={b['n']})" for b in published["blocks"]))
        shared.print_metrics({"run_dir": str(result.run_dir), **result.metrics})
        done.append(result.metrics)
    shared.print_summary(done)
