"""Paper-table suites, in one place: a published table's file (spec), loaded and checked (load),
the demo's line-up read as a suite (lineup), adapted to the data at hand (adapt), its cells
(definition), which of them a process takes (plan), running them (run, settings), finding their
runs (index), the numbers of each cell (entries), the reproduction verdict (verdict) and the table
beside the paper's numbers (table); the suite commands' dispatch on a file's kind, a paper table or
an accuracy table of `ask` runs (kinds). The suite files themselves are data: suites/*.toml, installed
as the package iqabench.suites."""
from __future__ import annotations

import importlib

_EXPORTS = {"Cell": "definition", "Suite": "definition", "Unit": "definition", "applies": "definition",
            "list_suites": "load", "load_suite": "load"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    # imported on first use, so that a light module of the package (lineup, plan) stays light
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"iqabench.suite.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'iqabench.suite' has no attribute {name!r}")
