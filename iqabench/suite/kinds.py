"""The kinds of suite file the suite commands read, dispatched on the file's `kind`: a paper's table
of correlations over datasets (`paper-table`, the rest of this package; the demo's line-up reads as
one) and a paper's multiple-choice accuracy table (`accuracy-table`, iqabench.tasks.mcq_suite),
whose cells are `iqabench ask` runs on question files the user brings."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from iqabench.errors import IqaError


@dataclasses.dataclass(frozen=True)
class Listed:
    """One line of `suite list`."""

    name: str
    kind: str
    cells: int | None  # computable cells; None: the file is invalid (`problem` says why)
    source: str = ""
    problem: str | None = None


def listing(folder: Path | None = None) -> list[Listed]:
    """Every shipped suite file of every kind, by name."""
    from iqabench.suite.load import list_suites, load_suite
    from iqabench.tasks.mcq_suite import KIND, computable, list_accuracy_suites, load_accuracy_suite

    out = []
    for kind, found, load in (("paper-table", list_suites, load_suite), (KIND, list_accuracy_suites, load_accuracy_suite)):
        for name, path in found(folder):
            try:
                suite = load(path)
            except IqaError as exc:
                out.append(Listed(name, kind, None, problem=str(exc)))
                continue
            cells = len(computable(suite)) if kind == KIND else len(suite.cells())
            out.append(Listed(name, kind, cells, f"{suite.spec.source.table} of {suite.spec.source.paper}"))
    return sorted(out, key=lambda listed: listed.name)


def accuracy_table(name_or_path: str | Path):
    """The accuracy table NAME is (an AccuracySuite), or None: a paper table, or a name load_suite judges."""
    from iqabench.tasks.mcq_suite import is_accuracy_suite, load_accuracy_suite

    return load_accuracy_suite(name_or_path) if is_accuracy_suite(name_or_path) else None


def refuse_accuracy_table(name_or_path: str | Path) -> None:
    """`suite run` and `suite plan` compute paper tables; an accuracy table's cells are `ask` runs on
    question files no suite holds: one line saying how to compute them."""
    from iqabench.tasks.mcq_suite import how_to_run

    suite = accuracy_table(name_or_path)
    if suite is not None:
        raise IqaError(how_to_run(suite))
