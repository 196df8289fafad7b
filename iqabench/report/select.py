"""Which runs make the table, which only the runs table, and why.

Every run gets exactly one entry in the runs table, with its role:
- used: it (or the median of it and its sibling splits) is a cell of the main table;
- superseded: the same identity, column and split was run again (a rerun: retrained checkpoint,
  changed dataset, copied folder); the most recent complete run is used, this one is listed;
- smoke test (`--limit`, or a checkpoint trained with one), partial (images not scored),
  inconsistent (conflicting records), unfinished (no metrics.json): never in the main table and
  never preferred over a full run;
- other part: the table shows another part of the split.

A cell is one identity (identity.py) in one column (dataset, split protocol, part). Runs of a
seeded protocol (`...-seed1` .. `-seed10`, zero-shot or trained on the matching split) fold into
one cell: the median of each metric over the splits, with min, quartiles and max kept. A metric
undefined (null) in any split stays undefined in the median.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from iqabench.errors import IqaError
from iqabench.metrics import METRIC_KEYS
from iqabench.report.columns import ColumnFacts, column_facts, full_reference, scores_its_labels, splits_text
from iqabench.report.identity import Identity, identity_of, labels_for, protocol_of, repetition_of
from iqabench.runs import Run

ALL_METRICS = METRIC_KEYS  # every metric a cell carries (the table in metrics.py)


@dataclasses.dataclass(frozen=True)
class Column:
    dataset: str
    protocol: str  # the split name, or "<protocol>-seed*" for a seeded split (its repetitions fold)
    part: str


@dataclasses.dataclass
class Cell:
    identity: Identity
    column: Column
    runs: list[Run]  # one per repetition (split seed), in seed order
    values: dict[str, float | None]  # the run's value, or the median over the runs
    spread: dict[str, dict[str, float]]  # metric -> min, q25, median, q75, max, iqr (several runs only)
    seeds: list[int]
    notes: list[str]

    @property
    def n_splits(self) -> int:
        return len(self.runs)

    @property
    def single(self) -> Run | None:
        return self.runs[0] if len(self.runs) == 1 else None

    @property
    def own_labels(self) -> bool:
        """The method computed the dataset's labels (the card's label_method): it scores their definition."""
        return any(scores_its_labels(r) for r in self.runs)

    @property
    def decreasing_fit(self) -> bool:
        return any(decreasing_fit(r.metrics or {}) for r in self.runs)

    def ci95(self, metric: str) -> list[float] | None:
        """The bootstrap interval metrics.json holds (SRCC, KRCC, raw PLCC) of a single-run cell."""
        run = self.single
        ci = ((run.metrics or {}).get("ci95") or {}).get(metric) if run else None
        return ci if isinstance(ci, list) and len(ci) == 2 else None

    def total(self, key: str) -> int | None:
        values = [(r.metrics or {}).get(key) for r in self.runs]
        return None if any(v is None for v in values) else int(sum(values))


@dataclasses.dataclass
class RunEntry:
    run: Run
    identity: Identity
    column: Column
    role: str  # used | superseded | smoke test | partial | inconsistent | unfinished | other part
    remark: str


@dataclasses.dataclass
class Selection:
    cells: dict[tuple[Identity, Column], Cell]
    entries: list[RunEntry]
    labels: dict[Identity, str]  # every identity, table rows and runs-table-only ones alike
    rows: list[Identity]  # identities with at least one cell, in table order
    columns: list[Column]
    notes: list[str]
    facts: dict[Column, ColumnFacts] = dataclasses.field(default_factory=dict)
    full_reference: set[Identity] = dataclasses.field(default_factory=set)  # rows of full-reference methods

    def cell(self, ident: Identity, column: Column) -> Cell | None:
        return self.cells.get((ident, column))


def decreasing_fit(metrics: dict) -> bool:
    """True when the recorded logistic falls (b1 < b2): the method ranks images backwards."""
    params = metrics.get("logistic_params")
    return bool(params) and len(params) == 4 and params[0] < params[1]


def column_of(run: Run) -> Column:
    protocol, seed = protocol_of(run.split)
    return Column(run.dataset, protocol if seed is None else f"{protocol}-seed*", run.part)


def runs_of(runs: list[Run], predicate: Callable[[Run], bool]) -> list[Run]:
    """The runs `predicate` accepts, which must all be of one identity (one table row); raises
    IqaError naming the identities when they are not. Select them with `select(...)` next."""
    chosen = [r for r in runs if predicate(r)]
    idents = {identity_of(r) for r in chosen}
    if len(idents) > 1:
        labels = labels_for(idents)
        raise IqaError(f"the runs asked for are of {len(idents)} different methods/settings: "
                       + "; ".join(sorted(labels.values())) + " (narrow the selection)")
    return chosen


def _unusable(run: Run, part: str | None) -> tuple[str, str] | None:
    """(role, remark) of a run that cannot be a table cell, else None (its state: iqabench.runs)."""
    if not run.labelled:
        return "scores only", "no labels (run --images): scores only, never tabulated"
    if part is not None and run.part != part:
        return "other part", f"part {run.part} (the table shows {part})"
    state = run.state
    if state == "unfinished":
        return "unfinished", "unfinished (no metrics.json: the run was stopped)"
    if state == "smoke test":
        trained = run.trained_on or {}
        if run.manifest["limit"] is None and (run.metrics or {}).get("limit") is None:
            return "smoke test", f"smoke test (checkpoint trained with --limit {trained['limit']})"
        return "smoke test", f"smoke test, n={run.n}"
    if state == "partial":
        missing = run.metrics.get("n_missing")
        return "partial", f"partial, {missing if missing is not None else '?'} of {run.n} image(s) not scored"
    if state == "inconsistent":
        return "inconsistent", "inconsistent (conflicting prediction records; rescore or rerun)"
    if state != "complete":
        return state, f"status {state}"
    return None


def select(runs: list[Run], part: str | None = "test", display_names: dict[str, str] | None = None,
           method_order: tuple[str, ...] = (), dataset_order: tuple[str, ...] = ()) -> Selection:
    idents = {id(r): identity_of(r) for r in runs}
    entries: list[RunEntry] = []
    candidates: dict[tuple, list[Run]] = {}
    for run in runs:
        ident, column = idents[id(run)], column_of(run)
        why = _unusable(run, part)
        if why:
            entries.append(RunEntry(run, ident, column, *why))
        else:
            candidates.setdefault((ident, column, repetition_of(run)), []).append(run)

    used: dict[tuple[Identity, Column], list[tuple[tuple, Run]]] = {}
    for (ident, column, rep), group in candidates.items():
        group.sort(key=lambda r: (r.time, r.mtime, r.rel), reverse=True)
        best = group[0]
        used.setdefault((ident, column), []).append((rep, best))
        entries.append(RunEntry(best, ident, column, "used", "used"))
        for other in group[1:]:
            remark = f"rerun, superseded by the more recent {best.rel}"
            if other.manifest.get("split_hash") != best.manifest.get("split_hash"):
                remark += " (the split hash differs: the dataset changed between them)"
            entries.append(RunEntry(other, ident, column, "superseded", remark))

    cells = {key: _cell(key[0], key[1], members) for key, members in used.items()}
    labels = _labels({i for i, _ in cells}, set(idents.values()), display_names)
    for entry in entries:
        cell = cells.get((entry.identity, entry.column))
        if entry.role == "used" and cell and cell.n_splits > 1:
            entry.remark = f"used (one of {cell.n_splits} splits of a median)"
        elif entry.role not in ("used", "superseded", "other part", "scores only") and cell is None:
            entry.remark += "; no full complete run of this method on this column"
        elif entry.role not in ("used", "superseded", "other part", "scores only") and cell is not None:
            if entry.run.time > max(r.time for r in cell.runs):
                entry.remark += "; newer than the run used, which is complete"
    entries.sort(key=lambda e: (e.column.dataset, e.column.protocol, e.column.part, labels[e.identity],
                                e.run.split, e.role != "used", -e.run.time, e.run.rel))

    rows = _order({i for i, _ in cells}, labels, method_order)
    columns = _order_columns({c for _, c in cells}, dataset_order)
    facts = {col: column_facts([r for (_, c), cell in cells.items() if c == col for r in cell.runs]) for col in columns}
    notes = []
    for (ident, column), cell in sorted(cells.items(), key=lambda kv: (labels[kv[0][0]], kv[0][1].dataset)):
        where = f"{labels[ident]} / {column.dataset} {splits_text(r.split for r in cell.runs)} {column.part}"
        notes += [f"{where}: {n}" for n in cell.notes]
    missing: dict[tuple, set[str]] = {}
    for e in entries:
        if e.role not in ("used", "superseded", "other part", "scores only") and (e.identity, e.column) not in cells:
            missing.setdefault((labels[e.identity], e.column), set()).add(e.run.split)
    notes += [f"{label} / {col.dataset} {splits_text(found)} {col.part}: no full complete run; see the runs table"
              for (label, col), found in sorted(missing.items(), key=lambda x: (x[0][0], x[0][1].dataset, x[0][1].protocol))]
    full = {ident for (ident, _), cell in cells.items() if any(full_reference(r) for r in cell.runs)}
    return Selection(cells, entries, labels, rows, columns, notes, facts, full)


def _labels(rows: set[Identity], every: set[Identity], display_names: dict[str, str] | None) -> dict[Identity, str]:
    """Table rows are told apart from each other only (a smoke test with other settings does not
    lengthen a row's label); identities found only in the runs table are told apart from everything."""
    labels = labels_for(sorted(rows, key=lambda i: i.key), display_names)
    taken = set(labels.values())
    for ident, label in labels_for(sorted(every, key=lambda i: i.key), display_names).items():
        if ident not in labels:
            labels[ident] = label if label not in taken else f"{label} [{ident.key}]"
            taken.add(labels[ident])
    return labels


def _cell(ident: Identity, column: Column, members: list[tuple[tuple, Run]]) -> Cell:
    members.sort(key=lambda m: tuple(-1 if s is None else s for s in m[0]))
    runs = [r for _, r in members]
    test_seeds = [rep[0] for rep, _ in members]
    train_seeds = [rep[1] for rep, _ in members]
    seeds = [s for s in (test_seeds if any(s is not None for s in test_seeds) else train_seeds) if s is not None]
    if len(runs) == 1:
        values = {m: runs[0].metric(m) for m in ALL_METRICS}
        notes = _single_notes(runs[0])
        return Cell(ident, column, runs, values, {}, seeds, notes)
    values, spread = {}, {}
    notes = [f"median over {len(runs)} split(s), seeds {_ranges(sorted(seeds))}"]
    undefined: dict[int, list[str]] = {}
    for metric in ALL_METRICS:
        per_split = [r.metric(metric) for r in runs]
        missing = sum(v is None for v in per_split)
        defined = np.array([v for v in per_split if v is not None], dtype=np.float64)
        if len(defined):
            q = np.percentile(defined, [0, 25, 50, 75, 100])
            spread[metric] = {"min": float(q[0]), "q25": float(q[1]), "median": float(q[2]), "q75": float(q[3]),
                              "max": float(q[4]), "iqr": float(q[3] - q[1])}
        if missing:
            values[metric] = None
            undefined.setdefault(missing, []).append(metric)
        else:
            values[metric] = spread[metric]["median"]
    notes += [f"{', '.join(ms)} undefined in {count} of {len(runs)} split(s)" for count, ms in undefined.items()]
    falling = sum(decreasing_fit(r.metrics or {}) for r in runs)
    if falling:
        notes.append(f"decreasing logistic fit in {falling} of {len(runs)} split(s): the method ranks images backwards")
    return Cell(ident, column, runs, values, spread, seeds, notes)


def _single_notes(run: Run) -> list[str]:
    m = run.metrics or {}
    notes = []
    if m.get("undefined_reason"):
        notes.append(f"undefined: {m['undefined_reason']}")
    if decreasing_fit(m):
        raw = run.metric("plcc_raw")
        notes.append("decreasing logistic fit (b1 < b2): the method ranks images backwards; raw PLCC "
                     + ("undefined" if raw is None else f"{raw:.3f}"))
    if m.get("n_failed"):
        notes.append(f"{m['n_failed']} image(s) failed and are left out of the metrics")
    return notes


def _order(idents: set[Identity], labels: dict[Identity, str], order: tuple[str, ...]) -> list[Identity]:
    def rank(ident: Identity) -> tuple[int, str]:
        for i, name in enumerate(order):
            if name in (labels[ident], ident.method_label, ident.method):
                return (i, labels[ident])
        return (len(order), labels[ident].lower())
    return sorted(idents, key=rank)


def _order_columns(columns: set[Column], order: tuple[str, ...]) -> list[Column]:
    def rank(col: Column) -> tuple:
        pos = order.index(col.dataset) if col.dataset in order else len(order)
        return (pos, col.dataset, col.protocol, col.part)
    return sorted(columns, key=rank)


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3,5'."""
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ",".join(parts)
