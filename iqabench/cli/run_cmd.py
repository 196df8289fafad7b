"""`iqabench run`: score every (method, dataset, split) asked for, one resumable run each."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from iqabench.cli import per_image, shared
from iqabench.cli.settings import Settings, with_settings


@click.command("run", epilog="""\b
Examples:
  iqabench run --method piqe --dataset synthetic
  iqabench run --method piqe,entropy --dataset synthetic --split 'ratio80-0-20-seed{1..3}'
  iqabench run --method brisque-svr --dataset livec --train-dataset koniq10k   # cross-dataset
  iqabench run --method brisque-svr --dataset synthetic -o 'c_grid=[1, 4]' --results r
  iqabench run --method piqe,niqe --images ~/photos          # your own images: scores only
  iqabench run --method piqe --images photo.jpg --format table
  iqabench run --method ssim --images distorted/ -r references/ --format jsonl""")
@shared.method_options(limit_help="Score only the first N images of the part (a smoke test, not a result).",
                       dataset_required=False)
@click.option("--images", type=click.Path(path_type=Path), default=None, metavar="DIR|FILE",
              help="Score every image below DIR (png, jpg, ... found recursively), or one image FILE, instead "
                   "of a dataset: per-image scores only, no labels and no correlations; resumable like any run.")
@click.option("-r", "--ref", type=click.Path(path_type=Path), default=None, metavar="REF_DIR|REF_FILE",
              help="With --images, for full-reference methods: each image's reference is the file below REF_DIR "
                   "with its name (any image suffix), or REF_FILE for every image. No-reference methods ignore it.")
@click.option("--format", "fmt", type=click.Choice(per_image.FORMATS), default=None,
              help="Also print every image's score on stdout: an aligned table, JSON lines or CSV (with jsonl "
                   "and csv stdout holds the rows alone; the rest goes to stderr). predictions.csv stays.")
@click.option("--part", type=click.Choice(["train", "val", "test"]), default="test", show_default=True,
              help="Split part to score.")
@click.option("--checkpoint", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Trained checkpoint folder to score with (trainable methods; default: the one `train` made).")
@click.option("--train-dataset", default=None, metavar="NAME",
              help="Cross-dataset: score with the checkpoint trained on this dataset (default: the scored one).")
@click.option("--train-split", default=None, metavar="NAME",
              help="The split that checkpoint was trained on (default: the training dataset's own).")
@click.option("--retry-failed", is_flag=True, help="Score again the images whose earlier attempt failed.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Threads that decode the next batches while the method scores the current one "
                   "(0: decode each batch in turn). Results are the same; only speed changes.")
@click.option("--keep-going", is_flag=True,
              help="Several cells: run every cell that can run, skipping the others (named in the summary), "
                   "instead of stopping before the first run when any cell cannot run.")
@with_settings
def run_command(settings: Settings, methods, datasets, split, option_pairs, batch_size, device, limit, seed,
                accept_out_of_range, images, ref, fmt, part, checkpoint, train_dataset, train_split, retry_failed,
                no_progress, workers, keep_going) -> None:
    """Score a dataset split with a method (resumable: rerun the same command to continue), or
    every image below a folder of your own or one file (--images DIR|FILE: scores only, no labels,
    no correlations; -r REF_DIR gives full-reference methods their references).

    Several methods or datasets (comma-separated or repeated) run one after another, each as its
    own run, with one summary table at the end. Every cell is checked (method, options, weights,
    dataset, split, checkpoint) before the first one runs."""
    from iqabench.errors import IqaError, one_line
    from iqabench.options import parse_option_pairs

    options = parse_option_pairs(option_pairs)  # a malformed pair fails before any work
    if ref is not None and images is None:
        raise click.UsageError("-r/--ref gives the references of --images; a dataset's card names its own")
    real_stdout = sys.stdout
    if fmt in ("jsonl", "csv"):  # stdout holds the rows alone; the lines of every run go to stderr
        click.get_current_context().with_resource(contextlib.redirect_stdout(sys.stderr))
    if images is not None:
        _check_images_flags(datasets, split)
        todo = [(method, None, None) for method in shared.split_names(methods)]
    elif not datasets:
        raise click.UsageError("give --dataset NAME, or --images DIR to score your own images")
    else:
        todo = shared.combinations(methods, datasets, split)
    if len(todo) > 1 and checkpoint is not None:
        raise IqaError("--checkpoint names one trained model: give one --method, one --dataset and one --split")
    from iqabench.run import RunConfig, run

    def config(method, dataset, split_name) -> RunConfig:
        return RunConfig(method=method, dataset=dataset, split=split_name, part=part, options=options,
                         data_root=settings.data_root, results=settings.results, limit=limit, batch_size=batch_size,
                         device=device, seed=seed, checkpoint=checkpoint, train_dataset=train_dataset,
                         train_split=train_split, retry_failed=retry_failed, progress=not no_progress,
                         accept_out_of_range=accept_out_of_range, images=images, ref=ref, workers=workers)

    skipped: dict[tuple, str] = {}
    if len(todo) > 1:
        skipped = cell_problems([(cell, config(*cell)) for cell in todo])
        if skipped:
            lines = _problem_lines(skipped, todo)
            if len(lines) > 1 or keep_going:
                for line in lines:
                    click.echo(f"iqabench: cannot run {line}", err=True)
            if not keep_going:
                what = "(above)" if len(lines) > 1 else f"({lines[0]})"
                raise IqaError(f"{len(skipped)} of {len(todo)} cells cannot run {what}; nothing was run "
                               "(fix them, or give --keep-going to run the other cells)")
    done: list[dict] = []
    finished: list[Path] = []  # run folders whose images --format prints
    for cell in todo:
        if cell in skipped:
            continue
        try:
            result = run(config(*cell))
        except IqaError as exc:
            if len(todo) > 1 and keep_going:
                skipped[cell] = one_line(exc)
                click.echo(f"iqabench: skipping {_where(cell, images)}: {skipped[cell]}", err=True)
                continue
            shared.print_summary(done)  # what finished is saved; show it before stopping
            if len(todo) > 1:
                raise IqaError(f"{_where(cell, images)}: {exc}") from None
            raise
        if result.metrics is not None:  # None on the ranks other than 0 of a data-parallel run
            metrics = {"run_dir": str(result.run_dir), **result.metrics}
            shared.print_metrics(metrics)
            done.append(metrics)
            finished.append(result.run_dir)
    shared.print_summary(done)
    if fmt:
        per_image.echo_rows(fmt, finished, file=real_stdout)
    if skipped:
        click.echo(f"skipped {len(skipped)} of {len(todo)} cells:")
        for cell in todo:
            if cell in skipped:
                click.echo(f"  {_where(cell, images)}: {skipped[cell]}")
        raise IqaError(f"{len(skipped)} of {len(todo)} cells were skipped (listed above)")


def _where(cell: tuple, images) -> str:
    method, dataset, split_name = cell
    return shared.describe(method, dataset, split_name) if dataset else f"{method} on {images}"


def cell_problems(cells: list[tuple[tuple, object]]) -> dict[tuple, str]:
    """Why each cell of a multi-cell command cannot run (cells that can are absent): the method and
    its options, its weights (unless the run is finished: its metrics need no model), the dataset,
    the split and part, a trainable method's checkpoint. Datasets that would be built on first use
    are built only when every other cell passed, so a typo elsewhere costs no build."""
    from iqabench.errors import IqaError
    from iqabench.plan import must_build
    from iqabench.readiness import why_not_runnable

    problems: dict[tuple, str] = {}
    deferred = []
    for cell, cfg in cells:
        try:
            build = cfg.images is None and must_build(cfg.dataset, cfg.data_root)
        except IqaError:  # an unknown dataset: the full check names it
            build = False
        reasons = why_not_runnable(cfg, read_data=not build)  # a dataset to build: the method first
        if reasons:
            problems[cell] = reasons[0]
        elif build:
            deferred.append((cell, cfg))
    for cell, cfg in deferred if not problems else ():
        reasons = why_not_runnable(cfg)
        if reasons:
            problems[cell] = reasons[0]
    return problems


def _problem_lines(problems: dict[tuple, str], todo: list[tuple]) -> list[str]:
    """One line per distinct problem, with the cells it stops (a missing dataset stops every method on it)."""
    by_problem: dict[str, list[tuple]] = {}
    for cell in todo:
        if cell in problems:
            by_problem.setdefault(problems[cell], []).append(cell)
    return [f"{_where(cells[0], None) if len(cells) == 1 else f'{len(cells)} cells'}: {problem}"
            for problem, cells in by_problem.items()]


def _check_images_flags(datasets, split) -> None:
    """--images replaces the dataset, its split and its part: saying both is a mistake, not a choice."""
    ctx = click.get_current_context()
    given = [flag for flag, value in (("--dataset", datasets), ("--split", split)) if value]
    if ctx.get_parameter_source("part") == click.core.ParameterSource.COMMANDLINE:
        given.append("--part")
    if given:
        raise click.UsageError(f"{', '.join(given)} cannot go with --images (a folder of images has no dataset, "
                               "split or part)")
