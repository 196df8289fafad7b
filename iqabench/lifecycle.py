"""A method's lifecycle, kept by the engine: built, set up once with its RunContext, torn down once.

Whether a method object is set up or torn down is recorded here, never written onto the plugin.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Callable

from iqabench.api import Method, RunContext
from iqabench.errors import IqaError


class Lifecycle:
    """One method object's use: `setup()` and `teardown()` each run its method's hook at most once."""

    def __init__(self, method: Method, ctx: RunContext, after_setup: Callable[[Method], None] | None = None):
        self.method, self.ctx = method, ctx
        self._after_setup = after_setup  # e.g. loading the trained checkpoint
        self.set_up = False
        self.torn_down = False

    def setup(self) -> Method:
        if not self.set_up:
            setup_method(self.method, self.ctx)
            if self._after_setup is not None:
                self._after_setup(self.method)
            self.set_up = True
        return self.method

    def teardown(self) -> None:
        if not self.torn_down:
            self.torn_down = True
            self.method.teardown()


def setup_method(method: Method, ctx: RunContext) -> None:
    """`method.setup(ctx)`. A plugin written before the run context (`def setup(self)`) still runs,
    with a FutureWarning: its context is kept first, so its `self.device` and the rest read it."""
    where = f"{type(method).__module__}.{type(method).__qualname__}"
    try:
        inspect.signature(method.setup).bind(ctx)
        takes_context = True
    except TypeError:
        takes_context = False
    except ValueError:  # no signature to read (a builtin): call it as the contract says
        takes_context = True
    if takes_context:
        method.setup(ctx)
    else:
        warnings.warn(f"method {method.name} ({where}): setup() takes no run context; define "
                      "setup(self, ctx) and call super().setup(ctx) (setup() without it will stop working)",
                      FutureWarning, stacklevel=2)
        Method.setup(method, ctx)
        method.setup()
    if getattr(method, "ctx", None) is not ctx:
        raise IqaError(f"method {method.name} ({where}): setup(ctx) must call super().setup(ctx), "
                       "which keeps the run context as self.ctx")
