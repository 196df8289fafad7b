"""Paper-table suites, in one place: a published table's file (spec), loaded and checked (load),
adapted to the data at hand (adapt), its cells (definition), which of them a process takes (plan),
running them (run, settings), finding their runs (index), the reproduction verdict (verdict) and
the table beside the paper's numbers (table). The suite files themselves are data: suites/*.toml,
installed as the package iqabench.suites."""
from iqabench.suite.definition import Cell, Suite, Unit, applies
from iqabench.suite.load import list_suites, load_suite

__all__ = ["Cell", "Suite", "Unit", "applies", "list_suites", "load_suite"]
