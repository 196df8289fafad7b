"""`iqabench`: the root command. Only click is imported here; a subcommand's module (and numpy,
pandas, torch behind it) is imported only when that subcommand runs."""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not sys.flags.safe_path and sys.path and sys.path[0] in ("", os.getcwd()):
    # `python -m iqabench.cli.main` (what torchrun and `accelerate launch -m` run) puts the working folder
    # first on the import path: a stray `filelock.py` there would be imported and run. Drop it before
    # anything else is imported; the console script `iqabench` and `python -P` never add it.
    del sys.path[0]

import errno
import signal
import threading

import click

from iqabench.cli.lazy import LazyGroup
from iqabench.cli.settings import global_options
from iqabench.errors import IqaError, environment_cause, environment_problem, one_line

COMMANDS = {
    "run": ("iqabench.cli.run_cmd:run_command", "Score dataset splits with methods (resumable)."),
    "train": ("iqabench.cli.train_cmd:train_command", "Train a trainable method (fit on train, select on val)."),
    "score": ("iqabench.cli.score_cmd:score_command", "Recompute metrics of runs from their saved predictions."),
    "import": ("iqabench.cli.import_cmd:import_command", "Published per-image outputs become runs (Q-Bench, CSV)."),
    "ask": ("iqabench.cli.ask_cmd:ask_command", "An MLLM answers multiple-choice questions (Q-Bench accuracy)."),
    "report": ("iqabench.cli.report_cmd:report_command", "Turn saved results into tables (md, tex, csv) and plots."),
    "list": ("iqabench.cli.list_cmd:list_group", "List methods, datasets, MLLM backends or a dataset's splits."),
    "options": ("iqabench.cli.options_cmd:options_command", "Show a method's options, defaults and aliases."),
    "datasets": ("iqabench.cli.datasets_cmd:datasets_command", "Show which datasets are found under the data root."),
    "demo": ("iqabench.cli.demo_cmd:demo_command", "The offline main job on the embedded default set (no download)."),
    "suite": ("iqabench.cli.suite_cmd:suite_group", "Run a paper table (suites/*.toml) beside its published numbers."),
    "figures": ("iqabench.cli.figures_cmd:figures_group", "Draw a method's figure, the cost of runs, K-level bounds."),
}

INTERRUPTED = "iqabench: interrupted; everything saved so far is kept, rerun the same command to resume"
TERMINATED = ("iqabench: terminated (SIGTERM); everything saved so far is kept, rerun the same command to resume")
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, what shells and schedulers read as "ended by SIGTERM"


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `timeout`, schedulers and `kill` send), unwound like Ctrl-C: whatever catches an
    interrupt to keep its work (a build, a suite) does the same for it."""


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM while unwinding ends the process
    raise Terminated()


class RootGroup(LazyGroup):
    """Turns the errors a user can fix into one line on stderr and an exit code, never a traceback."""

    def invoke(self, ctx: click.Context):
        # only the main thread may set a handler (an embedding program's worker thread keeps its own)
        own = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _on_sigterm) if own else None
        try:
            return super().invoke(ctx)
        except IqaError as exc:
            # 1: the machine (disk full, read-only, permission), also when a caller added context; 2: bad input
            status = 1 if environment_cause(exc) is not None else 2
            click.echo(f"iqabench: error{_rank_tag()}: {one_line(exc)}", err=True)
            raise click.exceptions.Exit(status) from None
        except OSError as exc:  # a write or read the engine did not name itself
            if exc.errno == errno.EPIPE:
                raise  # `iqabench list | head`: click exits quietly
            click.echo(f"iqabench: error{_rank_tag()}: {one_line(_os_error_line(exc))}", err=True)
            raise click.exceptions.Exit(1) from None
        except MemoryError:
            click.echo(f"iqabench: error{_rank_tag()}: out of memory; everything saved before is kept: free memory "
                       "or use a smaller --batch-size, then rerun the same command to resume", err=True)
            raise click.exceptions.Exit(1) from None
        except Terminated:
            click.echo(TERMINATED, err=True)
            raise click.exceptions.Exit(EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            click.echo(INTERRUPTED, err=True)
            raise click.exceptions.Exit(130) from None
        finally:
            if own:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            parallel = sys.modules.get("iqabench.parallel")
            if parallel is not None:  # only a command that ran the engine can have started a process group
                parallel.shutdown()

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name or "iqabench", complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.ClickException as exc:  # usage errors: also one line, naming where to look
            where = f" (see '{exc.ctx.command_path} --help')" if getattr(exc, "ctx", None) is not None else ""
            click.echo(f"iqabench: error: {one_line(exc.format_message())}{where}", err=True)
            code = exc.exit_code
        except click.Abort:
            click.echo(INTERRUPTED, err=True)
            code = 130
        if standalone_mode:
            sys.exit(code)
        return code


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    import importlib.metadata

    try:
        version = importlib.metadata.version("iqabench")
    except importlib.metadata.PackageNotFoundError:  # running from a checkout that was never installed
        from iqabench import __version__ as version
    click.echo(f"iqabench {version}")
    ctx.exit(0)


@click.group("iqabench", cls=RootGroup, lazy_subcommands=COMMANDS, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             epilog="\b\nExamples:\n"
                    "  iqabench demo\n"
                    "  iqabench list methods\n"
                    "  iqabench run --method piqe,brisque --dataset synthetic\n"
                    "  iqabench --results r train --method brisque-svr --dataset synthetic\n"
                    "  iqabench options brisque-svr\n\n"
                    "Global options may come before or after the command name. "
                    "Run `iqabench COMMAND --help` for a command's own options.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print the version and exit.")
@global_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Compare image-quality-assessment methods on standard datasets: SRCC, KRCC, PLCC, RMSE,
    bootstrap intervals, tables and plots."""
    if ctx.invoked_subcommand is None:  # bare `iqabench`: the help, and success
        click.echo(ctx.get_help())


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (0 ok, 1 environment: disk full, read-only
    or permission, 2 bad input, 130 interrupted, 143 terminated by SIGTERM)."""
    return cli.main(args=argv, prog_name="iqabench", standalone_mode=False)


def console() -> None:
    """The `iqabench` console script: main(), then the end of the process (cli/fast_exit.py)."""
    from iqabench.cli.fast_exit import exit_process

    exit_process(main())


def _os_error_line(exc: OSError) -> str:
    problem = environment_problem(exc)
    if problem is not None:
        return str(problem)
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}; everything saved before is kept, rerun the same command to resume"


def _rank_tag() -> str:
    """' (rank r of n)' in a data-parallel run (torchrun or srun), where every rank writes to the same terminal."""
    from iqabench.parallel import launch

    try:
        placed = launch()
    except IqaError:  # malformed launcher variables: that error is being reported already
        return ""
    return f" (rank {placed.rank} of {placed.size})" if placed.size > 1 else ""


if __name__ == "__main__":
    console()
