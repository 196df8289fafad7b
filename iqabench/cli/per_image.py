"""Per-image scores of a finished run on stdout (`run --format table|jsonl|csv`), read from the
run's saved records in inputs.json's order: one row per image, its score or its recorded failure.

jsonl and csv keep every file name as it is (JSON escapes control characters, CSV quotes them), so
they are the forms to read back; the table shows control characters escaped (\\n, \\r, \\t), one
image per line."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

FORMATS = ("table", "jsonl", "csv")
COLUMNS = ("method", "id", "score", "label", "error")


def rows(run_dir: Path) -> list[dict]:
    from iqabench.runs import read_run

    run = read_run(run_dir)
    records = run.records()
    out = []
    for item in run.inputs():
        rec = records.get(str(item["id"]), {})
        out.append({"method": run.method_label, "id": str(item["id"]), "score": rec.get("score"),
                    "label": item.get("label"), "error": rec.get("error") if rec else "not scored"})
    return out


def echo_rows(fmt: str, runs: list[Path], file=None) -> None:
    """Print the images of every run in `runs` in one format (one header for csv, one table per run)."""
    file = file or sys.stdout
    if fmt == "csv":
        writer = csv.writer(file, lineterminator="\r\n")  # CRLF: a \r in a name is quoted too
        writer.writerow(COLUMNS)
        for run_dir in runs:
            writer.writerows([_blank(r[c]) for c in COLUMNS] for r in rows(run_dir))
        return
    for run_dir in runs:
        got = rows(run_dir)
        if fmt == "jsonl":
            for r in got:
                click.echo(json.dumps(r, ensure_ascii=False), file=file)
        else:
            _table(got, file)


def _table(got: list[dict], file) -> None:
    if not got:
        return
    labelled = any(r["label"] is not None for r in got)
    head = ("id", "score") + (("label",) if labelled else ()) + ("error",)
    lines = [(_printable(r["id"]), "-" if r["score"] is None else f"{r['score']:.6g}")
             + ((_blank(r["label"]),) if labelled else ()) + (_printable(r["error"] or ""),) for r in got]
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)]
    click.echo(f"{got[0]['method']}:", file=file)
    click.echo("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), file=file)
    for line in lines:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip(), file=file)


def _blank(value) -> str:
    return "" if value is None else str(value)


def _printable(text: str) -> str:
    """One line: control characters escaped the way Python writes them."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
