"""`iqabench suite list|show|plan|run`: a paper's table (suites/*.toml) run here and set beside its numbers."""
from __future__ import annotations

import click

from iqabench.cli.settings import Settings, global_options, with_settings


@click.group("suite", invoke_without_command=True, epilog="""\b
Examples:
  iqabench suite list
  iqabench suite show seed004-table2
  iqabench suite run seed004-table2 --device cuda --data-root /data/iqa
  iqabench suite run seed003-table2-sdn --dataset-map kadid10k=synthetic
  iqabench suite plan seed004-table2 --results /shared/results --print-commands > cells.txt
  iqabench suite run seed004-table2 --results /shared/results --cell 3/20
  iqabench suite run seed000-table3 --dataset-map agiqa3k=synthetic -o backend_path=/models/tiny-owl2 --allow-cpu""")
@global_options
@click.pass_context
def suite_group(ctx: click.Context) -> None:
    """Paper-table suites: the methods, datasets, protocol and published numbers of one table (an
    accuracy table, whose cells are `iqabench ask` runs, is listed and shown too)."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@suite_group.command("list", short_help="The suites shipped with iqabench.")
@with_settings
def list_command(settings: Settings) -> None:
    """Every suite: its name, kind (a paper's correlation table, or an accuracy table whose cells are
    `iqabench ask` runs), source table and how many cells the harness computes."""
    from iqabench.suite.kinds import listing

    click.echo(f"{'suite':28} {'kind':14} {'cells':>5}  source")
    for suite in listing():
        if suite.problem is not None:
            click.echo(f"{suite.name:28} {suite.kind:14} {'?':>5}  INVALID: {suite.problem}")
            continue
        click.echo(f"{suite.name:28} {suite.kind:14} {suite.cells:>5}  {suite.source}")


@suite_group.command("show", short_help="What a suite runs and the numbers it compares with.")
@click.argument("name")
@with_settings
def show_command(settings: Settings, name: str) -> None:
    """The suite NAME (a shipped suite or a .toml path): source, protocol, columns, rows, published numbers,
    and every cell: what computes it, or why it cannot run here."""
    import json

    from iqabench.metrics import METRICS
    from iqabench.suite import load_suite
    from iqabench.suite.kinds import accuracy_table

    accuracy = accuracy_table(name)
    if accuracy is not None:  # its cells are `ask` runs, found under --results
        from iqabench import hub
        from iqabench.tasks.mcq_suite import show_lines

        with hub.no_downloads():
            for line in show_lines(accuracy, settings.results):
                click.echo(line)
        return
    suite = load_suite(name)
    spec = suite.spec
    click.echo(f"{suite.name}: {spec.title}")
    src = spec.source
    click.echo(f"source: {src.paper}, {src.table}" + (f", {src.where}" if src.where else "")
               + (f" ({src.url})" if src.url else ""))
    p = spec.protocol
    click.echo(f"protocol: split {p.split or 'each dataset default'}, part {p.part}, training {p.training}, "
               f"seed {p.seed}" + (f", {p.aggregate} over seeded splits" if p.aggregate else ""))
    click.echo("metrics: " + ", ".join(METRICS[m].caption() for m in spec.metrics))
    click.echo("columns:")
    for col in spec.columns:
        what = "published only" if col.published_only else col.dataset + (f" split {col.split}" if col.split else "")
        click.echo(f"  {col.key:16} {col.label:20} {what}")
    click.echo("rows:")
    for row in spec.rows:
        if row.published_only:
            click.echo(f"  {row.label}: published only" + (f" ({' '.join(row.why.split())})" if row.why else ""))
            continue
        opts = f" {json.dumps(row.options, sort_keys=True)}" if row.options else ""
        train = ""
        if row.train:
            train = f", trained on {row.train.dataset}" + (f"/{row.train.split}" if row.train.split else "")
        click.echo(f"  {row.label}: {row.method}{opts}{train}")
        for key, extra in row.column_options.items():
            click.echo(f"      on {key}: {json.dumps(extra, sort_keys=True)}")
        for key, what in row.needs.items():
            click.echo(f"      cannot run here until given: -o {key}=... ({' '.join(what.split())})")
    click.echo("published:")
    for row in spec.rows:
        values = "; ".join(f"{col} " + " ".join(f"{m}={v:.{spec.digits}f}" for m, v in metrics.items())
                           for col, metrics in row.published.items())
        click.echo(f"  {row.label}: {values or '(none)'}")
    cells = suite.cells()
    click.echo("cells:")
    for line in _cell_lines(suite, cells, settings.data_root):
        click.echo(f"  {line}")
    click.echo(f"cells computed by the harness: {len(cells)}")
    if spec.notes:
        click.echo("notes: " + " ".join(spec.notes.split()))


def _cell_lines(suite, cells, data_root) -> list[str]:
    """Every row x column: what computes it and, when it cannot run here, why (the check `suite run`
    makes first, answered from what is on disk); a published-only cell with the note that says why."""
    from iqabench import hub
    from iqabench.devices import resolve_device
    from iqabench.suite.run import why_not_here

    computed = {(c.row.label, c.column.key): c for c in cells}
    device = resolve_device("auto")
    lines = []
    with hub.no_downloads():
        for row in suite.rows:
            for col in suite.columns:
                name = f"{row.label} x {col.label}"
                cell = computed.get((row.label, col.key))
                if cell is None:
                    if row.published_only or col.published_only:
                        why = (row.why or row.note) if row.published_only and (row.why or row.note) else col.note
                        lines.append(f"{name}: published only" + (f" ({' '.join(why.split())})" if why else ""))
                    continue  # a row that does not cover this column
                units = ", ".join(u.describe() for u in cell.units)
                problems = why_not_here(cell, data_root, device, allow_cpu=False)
                # the method's own line (as `run` prints it) says "cannot run here" too: not said twice
                problems = [p.replace(" cannot run here: ", ": ", 1) for p in problems]
                status = "; cannot run here: " + "; ".join(problems) if problems else "; runs here"
                lines.append(f"{name}: {cell.method} on {units}{status}")
    return lines


def _cell_options(f):
    """The options that say what a cell computes and how: shared by `suite run` and `suite plan`,
    which passes them on to every command it prints."""
    opts = [
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps ..."),
        click.option("--dataset-map", "dataset_map", multiple=True, metavar="A=B",
                     help="Run the suite's dataset A on dataset B instead (repeatable), e.g. koniq10k=synthetic. "
                          "The published numbers stay those of A."),
        click.option("-o", "--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
                     help="Method option applied to every row whose method has it (repeatable), e.g. "
                          "backend_path=/models/tiny."),
        click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Images per method call."),
        click.option("--allow-cpu", is_flag=True,
                     help="Run methods marked GPU-only on the CPU anyway (tiny test models)."),
        click.option("--download", is_flag=True,
                     help="Let methods download missing weights (default: use only what is on disk; cells whose "
                          "weights are absent are listed as not runnable here)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _load(name: str, dataset_map, option_pairs):
    from iqabench.options import parse_option_pairs
    from iqabench.suite import load_suite
    from iqabench.suite.kinds import refuse_accuracy_table
    from iqabench.suite.settings import SuiteSettings

    refuse_accuracy_table(name)  # before the flags are read: they are a paper table's

    ran_with = SuiteSettings(parse_dataset_map(dataset_map), parse_option_pairs(option_pairs))
    suite = load_suite(name).adapted(ran_with.dataset_map, ran_with.options)
    for note in suite.adaptations:
        click.echo(f"note: {note}", err=True)
    return suite, ran_with


@suite_group.command("plan", short_help="The cells of a suite, or one `suite run` command per cell.")
@click.argument("name")
@_cell_options
@click.option("--print-commands", is_flag=True,
              help="Print only one resumable `iqabench suite run NAME --cell K/N ...` per cell, all on this "
                   "--results folder (for a scheduler: a SLURM array task runs line K).")
@with_settings
def plan_command(settings: Settings, name: str, device: str, dataset_map, option_pairs, batch_size: int,
                 allow_cpu: bool, download: bool, print_commands: bool) -> None:
    """The computable cells of the suite NAME, numbered as `suite run --cell` counts them."""
    from pathlib import Path

    from iqabench.suite.plan import cell_commands

    suite, _ = _load(name, dataset_map, option_pairs)
    cells = suite.cells()
    if not print_commands:
        for k, cell in enumerate(cells, 1):
            click.echo(f"{k:>4}  {cell.name}: {cell.method} on " + ", ".join(u.describe() for u in cell.units))
        click.echo(f"{len(cells)} computable cell(s); `--print-commands` gives one command per cell")
        return
    suite_arg = str(Path(name).resolve()) if Path(name).is_file() else name
    args = [a for p in dict.fromkeys(settings.plugins) for a in ("--plugin", p)]
    args += ["--results", str(settings.results.resolve()), "--data-root", str(settings.data_root.resolve())]
    args += [a for pair in dataset_map for a in ("--dataset-map", pair)]
    args += [a for pair in option_pairs for a in ("-o", pair)]
    args += ["--device", device] + (["--batch-size", str(batch_size)] if batch_size != 1 else [])
    args += ["--allow-cpu"] * allow_cpu + ["--download"] * download + ["--no-progress"]
    for line in cell_commands(suite_arg, len(cells), args):
        click.echo(line)


@suite_group.command("run", short_help="Train and score every missing cell of a suite, then its table.")
@click.argument("name")
@_cell_options
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Score only the first N images per cell and train on N (a smoke test: never fills the table).")
@click.option("--cell", "cell_part", metavar="I/N", default=None,
              help="Run only every N-th cell from the I-th (1-based; `suite plan` numbers them), e.g. "
                   "--cell $SLURM_ARRAY_TASK_ID/8 in an array of 8 tasks on one shared --results.")
@click.option("--no-wait", is_flag=True,
              help="Skip the runs another process on this --results is computing (default: wait for them).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@with_settings
def run_command(settings: Settings, name: str, device: str, dataset_map, option_pairs, batch_size, allow_cpu: bool,
                download: bool, limit, cell_part, no_wait: bool, no_progress: bool) -> int:
    """Train what needs training and score every cell of the suite NAME that has no complete run yet
    (resumable: rerun to finish), continuing past failures; then list the cells done, and for each
    reason the cells that cannot run here or failed, and write the suite table under
    RESULTS/report/suites/. Exit status 1 when a cell failed or nothing could be computed.
    The --dataset-map and -o given are recorded (RESULTS/suites/NAME.json): `iqabench report --suite NAME`
    uses them when it is given neither."""
    from iqabench import hub
    from iqabench.layout import ResultsLayout
    from iqabench.suite.plan import parse_part
    from iqabench.suite.run import run_suite, summary_lines
    from iqabench.suite.settings import record_settings
    from iqabench.suite.table import render

    part = parse_part(cell_part) if cell_part is not None else None
    suite, ran_with = _load(name, dataset_map, option_pairs)
    record_settings(settings.results, suite.name, ran_with)  # `report --suite` finds these runs with no flags
    with hub.no_downloads(not download):  # availability checks and model loads use the disk only
        result = run_suite(suite, data_root=settings.data_root, results=settings.results, device=device,
                           limit=limit, batch_size=batch_size, allow_cpu=allow_cpu, progress=not no_progress,
                           part=part, wait=not no_wait, on_log=click.echo)
    click.echo()
    for line in summary_lines(result):
        click.echo(line)
    table = render(suite, settings.results, ResultsLayout(settings.results).report_dir() / "suites")
    click.echo(table.summary)
    click.echo("suite table: " + ", ".join(str(p) for p in table.files.values()))
    return 1 if result.with_status("failed") or result.computed_nothing else 0


def parse_dataset_map(pairs) -> dict[str, str]:
    """('koniq10k=synthetic', ...) -> {'koniq10k': 'synthetic'}; malformed or repeated pairs are errors."""
    from iqabench.errors import IqaError

    out: dict[str, str] = {}
    for pair in pairs:
        source, sep, target = (part.strip() for part in pair.partition("="))
        if not sep or not source or not target:
            raise IqaError(f"--dataset-map {pair!r}: expected SUITE_DATASET=OTHER_DATASET")
        if source in out:
            raise IqaError(f"--dataset-map: {source} is mapped twice")
        out[source] = target
    return out
