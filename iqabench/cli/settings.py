"""The global options, accepted before or after the subcommand name, and the set-up they drive.

`iqabench --results r run ...` and `iqabench run ... --results r` mean the same: the root group
and every subcommand declare the same options, each writing into one `Settings` object shared by
the whole invocation (a later value wins, plugins add up). The set-up (logging, plugins, folder
checks) runs once, when the subcommand's body starts, after both levels have been parsed.
Only click and the standard library are imported here: `iqabench --help` must stay fast.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import click

from iqabench.layout import DEFAULT_DATA_ROOT, DEFAULT_RESULTS

_META_KEY = "iqabench.settings"


@dataclasses.dataclass
class Settings:
    plugins: list[str] = dataclasses.field(default_factory=list)
    results_arg: Path | None = None
    data_root_arg: Path | None = None
    quiet: bool = False
    verbose: bool = False
    ready: bool = False

    @property
    def results(self) -> Path:
        return self.results_arg if self.results_arg is not None else DEFAULT_RESULTS

    @property
    def data_root(self) -> Path:
        return self.data_root_arg if self.data_root_arg is not None else DEFAULT_DATA_ROOT


def current_settings(ctx: click.Context) -> Settings:
    # Context.meta is one dict shared by the root context and all nested ones.
    return ctx.meta.setdefault(_META_KEY, Settings())


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is None or value is False or value == ():
        return  # not given at this level: keep what the other level said
    settings = current_settings(ctx)
    if param.name == "plugins":
        settings.plugins.extend(value)
    else:
        setattr(settings, param.name, value)


def global_options(f: Callable) -> Callable:
    """Declare the global options on a command or group (they set `Settings`, not parameters)."""
    opts = [
        click.option("--plugin", "plugins", multiple=True, metavar="MODULE_OR_FILE", expose_value=False,
                     callback=_remember,
                     help="Import a plugin module or .py file that registers methods or datasets (repeatable)."),
        click.option("--results", "results_arg", type=click.Path(path_type=Path), metavar="DIR", expose_value=False,
                     callback=_remember, help=f"Results folder (default: ./{DEFAULT_RESULTS})."),
        click.option("--data-root", "data_root_arg", type=click.Path(path_type=Path), metavar="DIR",
                     expose_value=False, callback=_remember,
                     help=f"Folder holding one folder per dataset (default: ./{DEFAULT_DATA_ROOT})."),
        click.option("-q", "--quiet", is_flag=True, default=False, expose_value=False, callback=_remember,
                     help="Log warnings and errors only."),
        click.option("-v", "--verbose", is_flag=True, default=False, expose_value=False, callback=_remember,
                     help="Log debug messages too."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def with_settings(f: Callable) -> Callable:
    """Decorate a subcommand body: it takes the global options and gets the ready `Settings` first."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return f(prepare(click.get_current_context()), *args, **kwargs)

    return global_options(wrapper)


def prepare(ctx: click.Context) -> Settings:
    """Check the folders, configure logging and import the named plugins, once per invocation."""
    from iqabench.errors import IqaError

    settings = current_settings(ctx)
    if settings.ready:
        return settings
    if settings.quiet and settings.verbose:
        raise click.UsageError("-q/--quiet and -v/--verbose contradict each other; give one", ctx)
    for flag, path in (("--results", settings.results), ("--data-root", settings.data_root)):
        if path.exists() and not path.is_dir():
            raise IqaError(f"{flag} {path}: is a file, not a folder")
    configure_logging(logging.WARNING if settings.quiet else logging.DEBUG if settings.verbose else logging.INFO)
    if settings.plugins:
        from iqabench.registry import load_plugin

        for spec in dict.fromkeys(settings.plugins):  # named twice (before and after the command): load once
            load_plugin(spec)
    settings.ready = True
    return settings


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is now (test runners swap it between invocations)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"iqabench: {record.levelname.lower()}: {text}"
        return text


def configure_logging(level: int) -> None:
    """One handler on the `iqabench` logger tree; calling again only changes the level."""
    logger = logging.getLogger("iqabench")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
