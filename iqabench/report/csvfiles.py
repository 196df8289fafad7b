"""table.csv, runs.csv, significance.csv and breakdown.csv: full precision (repr of each float),
an undefined value as an empty cell, for anyone who wants to recompute or re-typeset."""
from __future__ import annotations

import csv
import io
import json
import math

from iqabench.metrics import INTERVAL_METRICS
from iqabench.report.breakdown import BreakdownRow
from iqabench.report.compare import PairTest
from iqabench.report.grid import Grid
from iqabench.report.select import ALL_METRICS, RunEntry

SPREAD = ("min", "q25", "q75", "max", "iqr")
CI_METRICS = INTERVAL_METRICS


def _blank(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(float(value)) if isinstance(value, float) else str(value)


def _write(fields: list[str], records: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: _blank(v) if not isinstance(v, str) else v for k, v in record.items()})
    return buffer.getvalue()


TABLE_FIELDS = (["label", "method", "method_label", "identity", "identity_key", "dataset", "column", "protocol",
                 "part", "n_splits", "seeds", "splits", "n", "n_scored", "n_failed"] + list(ALL_METRICS)
                + [f"{m}_{s}" for m in ALL_METRICS for s in SPREAD]
                + [f"{m}_ci95_{end}" for m in CI_METRICS for end in ("lo", "hi")]
                + ["best", "not_significantly_worse", "plcc_kind", "run_dirs", "notes"])


def table_csv(grid: Grid) -> str:
    """One line per table cell (method x column), in table order; empty cells are left out."""
    records = []
    for ident in grid.rows:
        for col in grid.columns:
            cell = grid.get(ident, col, grid.metrics[0]).cell
            if cell is None:
                continue
            record = {"label": grid.labels[ident], "method": ident.method, "method_label": ident.method_label,
                      "identity": json.dumps(dict(ident.parts), sort_keys=True), "identity_key": ident.key,
                      "dataset": col.dataset, "column": grid.titles[col], "protocol": col.protocol, "part": col.part,
                      "n_splits": cell.n_splits, "seeds": " ".join(map(str, cell.seeds)),
                      "splits": " ".join(r.split for r in cell.runs), "n": cell.total("n"),
                      "n_scored": cell.total("n_scored"), "n_failed": cell.total("n_failed"),
                      "best": " ".join(m for m in grid.metrics if grid.get(ident, col, m).bold),
                      "not_significantly_worse": " ".join(m for m in grid.metrics if grid.get(ident, col, m).tied),
                      "plcc_kind": "plcc after the 4-parameter logistic fit (signed by its direction); plcc_raw without",
                      "run_dirs": " ".join(r.rel for r in cell.runs), "notes": "; ".join(cell.notes)}
            record.update({m: cell.values[m] for m in ALL_METRICS})
            for m in ALL_METRICS:
                for s in SPREAD:
                    record[f"{m}_{s}"] = cell.spread.get(m, {}).get(s)
            for m in CI_METRICS:
                ci = cell.ci95(m)
                record[f"{m}_ci95_lo"], record[f"{m}_ci95_hi"] = (ci[0], ci[1]) if ci else (None, None)
            records.append(record)
    return _write(TABLE_FIELDS, records)


RUN_FIELDS = ["label", "method", "dataset", "split", "part", "role", "remark", "status", "n", "n_scored", "n_failed",
              "n_missing", "limit"] + list(ALL_METRICS) + ["created", "key", "run_dir"]


def runs_csv(entries: list[RunEntry], labels: dict) -> str:
    records = []
    for x in entries:
        m = x.run.metrics or {}
        record = {"label": labels[x.identity], "method": x.run.method, "dataset": x.run.dataset, "split": x.run.split,
                  "part": x.run.part, "role": x.role, "remark": x.remark, "status": x.run.status, "n": x.run.n,
                  "n_scored": m.get("n_scored"), "n_failed": m.get("n_failed"), "n_missing": m.get("n_missing"),
                  "limit": x.run.limit, "created": str(m.get("created", "")), "key": x.run.key,
                  "run_dir": x.run.rel}
        record.update({k: x.run.metric(k) for k in ALL_METRICS})
        records.append(record)
    return _write(RUN_FIELDS, records)


SIGNIFICANCE_FIELDS = ["dataset", "column", "protocol", "part", "metric", "method_a", "method_b", "n", "value_a",
                       "value_b", "diff", "ci95_lo", "ci95_hi", "p_bootstrap", "n_boot", "n_valid", "bootstrap_seed",
                       "williams_t", "williams_df", "p_williams", "note"]


def significance_csv(tests: list[PairTest], labels: dict, titles: dict) -> str:
    records = [{"dataset": t.column.dataset, "column": titles[t.column], "protocol": t.column.protocol,
                "part": t.column.part, "metric": t.metric, "method_a": labels[t.a], "method_b": labels[t.b], "n": t.n,
                "value_a": t.value_a, "value_b": t.value_b, "diff": t.diff, "ci95_lo": t.ci_low, "ci95_hi": t.ci_high,
                "p_bootstrap": t.p_bootstrap, "n_boot": t.n_boot, "n_valid": t.n_valid, "bootstrap_seed": t.seed,
                "williams_t": t.williams_t, "williams_df": t.williams_df, "p_williams": t.p_williams, "note": t.note}
               for t in tests]
    return _write(SIGNIFICANCE_FIELDS, records)


BREAKDOWN_FIELDS = ["label", "dataset", "column", "kind", "group", "n", "srcc", "n_splits"]


def breakdown_csv(rows: list[BreakdownRow]) -> str:
    return _write(BREAKDOWN_FIELDS, [{"label": r.label, "dataset": r.dataset, "column": r.column_title, "kind": r.kind,
                                      "group": r.group, "n": r.n, "srcc": r.srcc, "n_splits": r.n_splits}
                                     for r in rows])
