"""`iqabench report`: read result files, write the tables and one plot per run. Never runs a model."""
from __future__ import annotations

from pathlib import Path

from iqabench.report import plots, tables
from iqabench.report.collect import collect


def build_report(results_dir: Path, out_dir: Path) -> dict:
    """Write table.md, table.tex, table.csv and plots/…/*.png under `out_dir`.

    Returns the paths written and what the reader should know (notes on chosen or aggregated
    runs, warnings on missing or inconsistent prediction files); prints nothing.
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    rows = collect(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, text in (("table_md", tables.markdown(rows)), ("table_tex", tables.latex(rows)),
                       ("table_csv", tables.csv_text(rows))):
        path = out_dir / f"table.{name.split('_')[1]}"
        _write_atomic(path, text)
        written[name] = path

    plot_paths, warnings = [], []
    for row in rows:
        for run in row.runs:
            if not (run.run_dir / "predictions.csv").exists():
                warnings.append(f"{run.run_dir}: no predictions.csv, no plot")
                continue
            path = plots.plot_path(out_dir, run)
            drawn = plots.plot_run(run, path)
            plot_paths.append(path)
            recorded = run.metrics.get("n_scored")
            if recorded is not None and recorded != drawn["n_scored"]:
                warnings.append(f"{run.run_dir}: predictions.csv has {drawn['n_scored']} scored images, "
                                f"metrics.json says {recorded}")
    notes = [f"{r.method_label} / {r.dataset} {r.split} {r.part}: {note}" for r in rows for note in r.notes]
    return {**written, "plots": plot_paths, "rows": len(rows), "runs": sum(r.n_splits for r in rows),
            "notes": notes, "warnings": warnings}


def summary_lines(summary: dict) -> list[str]:
    """What the CLI prints after a report: the files, then the notes and warnings."""
    lines = [f"{summary['rows']} table row(s) from {summary['runs']} run(s)"]
    lines += [f"wrote {summary[k]}" for k in ("table_md", "table_tex", "table_csv")]
    lines.append(f"wrote {len(summary['plots'])} plot(s)")
    lines += [f"note: {n}" for n in summary["notes"]]
    lines += [f"warning: {w}" for w in summary["warnings"]]
    return lines


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
