"""`iqabench train`: fit a trainable method on a split's train part (of one dataset, or of a mix
of several), selecting on its val part."""
from __future__ import annotations

import click

from iqabench.cli import shared
from iqabench.cli.settings import Settings, with_settings


@click.command("train", epilog="""\b
Examples:
  iqabench train --method brisque-svr --dataset synthetic
  iqabench train --method brisque-svr --dataset synthetic -o 'c_grid=[1, 4]' --seed 7
  iqabench train --method vp-owl2 --dataset agiqa3k --device cuda
  iqabench train --method vp-owl2 --dataset kadid10k --device cuda --batch-size 8 -o epochs=30
  iqabench train --method promptiqa --dataset koniq10k+spaq+kadid10k --split qalign

\b
A mix (a+b+c) trains one model on the union of the members' train parts, each member's labels
made targets by its own card; it is validated on each member's val part and selected on their
mean. --split gives one split for every member, or one per member joined by '+'; score with
`iqabench run --dataset X --train-dataset a+b+c`.""")
@shared.method_options(limit_help="Use only the first N train and N val images (a quick trial).",
                       batch_help="Training batch, part of the checkpoint's key (default: the method's recipe "
                                  "for the dataset; the resolved number is in train_manifest.json).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@with_settings
def train_command(settings: Settings, methods, datasets, split, option_pairs, batch_size, device, limit, seed,
                  accept_out_of_range, no_progress) -> None:
    """Train a trainable method: fit on train, select on val, keep the checkpoint (resumable).

    `iqabench run` with the same method, dataset, split and options then scores with it."""
    from iqabench.errors import IqaError
    from iqabench.options import parse_option_pairs

    options = parse_option_pairs(option_pairs)
    todo = shared.combinations(methods, datasets, split)
    if len(todo) > 1:  # a dataset may be a mix (a+b): each member is checked
        from iqabench.data.union import member_names

        names = [m for d in shared.split_names(datasets) for m in member_names(d)]
        shared.check_names(shared.split_names(methods), names)
    from iqabench.train import TrainConfig, summary_lines, train

    for method, dataset, split_name in todo:
        cfg = TrainConfig(method=method, dataset=dataset, split=split_name, options=options,
                          data_root=settings.data_root, results=settings.results, batch_size=batch_size,
                          device=device, seed=seed, limit=limit, accept_out_of_range=accept_out_of_range,
                          progress=not no_progress)
        try:
            workdir, summary = train(cfg)
        except IqaError as exc:
            if len(todo) > 1:
                raise IqaError(f"{shared.describe(method, dataset, split_name)}: {exc}") from None
            raise
        for line in summary_lines(workdir, summary):
            click.echo(line)
