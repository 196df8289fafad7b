"""`iqabench report`: read result files, write tables, figures and one HTML page. Never runs a model.

Written under `out`:
    table.md table.tex table.csv      the main table (methods x datasets x metrics), marks explained
    runs.md runs.tex runs.csv         every run folder and its role (used, superseded, smoke test, ...)
    significance.csv                  paired tests behind the table's marks
    breakdown.md breakdown.csv        SRCC per distortion type and level (when the inputs carry them)
    accuracy.md accuracy.csv          multiple-choice accuracy runs and their paired tests (iqabench ask)
    plots/scatter_<method>_<dataset>.{pdf,png}, plots/heatmap_srcc.{pdf,png}
                                      (a scatter plot is redrawn only when its run's content changed:
                                      plots/.figures.json keys each by the run's hash; new ones in parallel)
    report.html                       all of the above in one self-contained page
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from iqabench import io
from iqabench.api import stable_hash
from iqabench.errors import IqaError
from iqabench.metrics import FEW_REFERENCES
from iqabench.report import csvfiles, htmlpage, latex, markdown, plots
from iqabench.report.accuracy import accuracy_files
from iqabench.report.breakdown import breakdown
from iqabench.report.collect import Run, collect
from iqabench.report.columns import scores_its_labels
from iqabench.report.compare import significance
from iqabench.report.grid import build_grid
from iqabench.report.options import ReportOptions
from iqabench.report.select import Cell, select


def _plot_run(cell: Cell):
    """The run a cell's scatter plot shows: its run, or the split whose SRCC is nearest the median."""
    if cell.single is not None:
        return cell.single
    median = cell.values.get("srcc")
    if median is None:
        return cell.runs[0]
    return min(cell.runs, key=lambda r: abs((r.metric("srcc") if r.metric("srcc") is not None else np.inf) - median))


def build_report(results: Path, out: Path, options: ReportOptions | None = None) -> dict:
    """Write the report files under `out`; returns the paths written, notes and warnings (prints nothing
    but the progress bars)."""
    options = options or ReportOptions()
    results, out = Path(results), Path(out)
    try:
        runs, no_runs = collect(results, progress=options.progress), None
    except IqaError as exc:
        runs, no_runs = [], exc  # only multiple-choice runs: their tables, and an empty main table
    options = options.resolved(runs, out)
    accuracy, unreadable = accuracy_files(results, n_boot=options.bootstrap_resamples, seed=options.bootstrap_seed)
    if no_runs is not None and not accuracy:
        raise no_runs
    selection = select(runs, options.part, options.display_names, options.method_order, options.dataset_order)
    marks = significance(selection, options)
    grid = build_grid(selection, marks, options)
    warnings: list[str] = own_label_warnings(selection, grid.titles)
    notes = list(selection.notes) + marks.notes + interval_notes(selection, grid.titles) + warnings
    if not selection.cells:
        warnings.append("no full complete run to tabulate: the main table is empty (see runs.md)")
    rows, problems = breakdown(selection, grid.titles)
    warnings += problems

    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def write(name: str, text: str) -> None:
        path = out / name
        io.write_text_atomic(path, text)
        written[name] = path

    tex, tex_warnings = latex.table_tex(grid)
    warnings += tex_warnings
    write("table.md", markdown.table_md(grid, notes))
    write("table.tex", tex)
    write("table.csv", csvfiles.table_csv(grid))
    write("runs.md", markdown.runs_md(selection.entries, selection.labels, options.decimals))
    write("runs.tex", latex.runs_tex(selection.entries, selection.labels, options.decimals, f"{options.label}-runs"))
    write("runs.csv", csvfiles.runs_csv(selection.entries, selection.labels))
    write("significance.csv", csvfiles.significance_csv(marks.tests, selection.labels, grid.titles))
    for name, text in accuracy.items():  # multiple-choice runs (`iqabench ask`): their own tables
        write(name, text)
    warnings += unreadable
    if rows:
        write("breakdown.md", markdown.breakdown_md(rows, [grid.labels[i] for i in grid.rows], options.decimals))
        write("breakdown.csv", csvfiles.breakdown_csv(rows))

    figures, plot_paths, heat = [], [], None
    if options.plots:
        cells = [selection.cell(i, c) for i in selection.rows for c in selection.columns]
        cells = [c for c in cells if c is not None]
        used_names: set[str] = set()
        jobs = []
        for cell in cells:
            run = _plot_run(cell)
            label, title = selection.labels[cell.identity], grid.titles[cell.column]
            name = _unique(f"scatter_{plots.slug(label)}_{plots.slug(title)}", used_names)
            note = "" if cell.single is not None else f", nearest the median of {cell.n_splits} splits"
            caption = f"{label} on {title}" + (f" (split {run.split}, nearest the median)" if cell.single is None else "")
            jobs.append(_Figure(run, name, label, title, note, caption))
        cache = _FigureCache(out / "plots")
        for job, drawn in zip(jobs, _draw_all(jobs, cache, out / "plots", options.progress)):
            if isinstance(drawn, Exception):  # one unreadable run costs its figure, said so
                warnings.append(f"{job.run.rel}: no scatter plot ({drawn})")
                continue
            paths, screen, facts = drawn
            plot_paths += paths
            figures.append((job.caption, screen))
            recorded = (job.run.metrics or {}).get("n_scored")
            if recorded is not None and recorded != facts["n_scored"]:
                warnings.append(f"{job.run.rel}: the predictions hold {facts['n_scored']} scored images, "
                                f"metrics.json says {recorded}")
        cache.prune({job.name for job in jobs})
        cache.save()
        if len(selection.columns) >= 2 and selection.rows:
            values = np.array([[_value(selection.cell(i, c)) for c in selection.columns] for i in selection.rows])
            paths, heat = plots.heatmap([selection.labels[i] for i in selection.rows],
                                        [grid.titles[c] for c in selection.columns], values,
                                        out / "plots" / "heatmap_srcc", title="SRCC (methods x datasets)")
            plot_paths += paths
        else:  # no heat map this time: one left from an earlier report would show other runs
            for stale in (out / "plots").glob("heatmap_srcc.*"):
                stale.unlink(missing_ok=True)
    write("report.html", htmlpage.page(grid, notes, selection.entries, marks.tests, rows, figures, heat))

    return {"files": written, "table_md": written["table.md"], "table_tex": written["table.tex"],
            "table_csv": written["table.csv"], "html": written["report.html"], "plots": plot_paths,
            "rows": len(selection.rows), "columns": len(selection.columns), "cells": len(selection.cells),
            "runs": len(runs), "tests": len(marks.tests), "notes": notes, "warnings": warnings}


@dataclasses.dataclass
class _Figure:
    run: Run
    name: str
    label: str
    title: str
    note: str
    caption: str

    def key(self) -> str:
        return stable_hash([plots.run_content_key(self.run), self.label, self.title, self.note], length=16)


class _FigureCache:
    """plots/.figures.json: the key each scatter plot was drawn from, and its screen PNG under plots/.screen/.
    A figure whose run (by content hash), label and title are unchanged is not drawn again."""

    def __init__(self, folder: Path):
        self.folder, self.path = folder, folder / ".figures.json"
        try:
            self.entries = io.read_json(self.path) if self.path.is_file() else {}
        except IqaError:
            self.entries = {}  # an unreadable cache only costs a redraw
        if not isinstance(self.entries, dict):
            self.entries = {}

    def get(self, job: _Figure):
        entry = self.entries.get(job.name)
        if not isinstance(entry, dict) or entry.get("key") != job.key():
            return None
        files = [self.folder / f for f in entry.get("files", [])]
        screen = self.folder / ".screen" / f"{job.name}.png"
        if not files or not all(f.is_file() for f in files) or not screen.is_file():
            return None
        return files, screen.read_bytes(), entry["drawn"]

    def put(self, job: _Figure, drawn) -> None:
        paths, screen, facts = drawn
        io.write_bytes_atomic(self.folder / ".screen" / f"{job.name}.png", screen)
        self.entries[job.name] = {"key": job.key(), "files": [Path(p).name for p in paths], "drawn": facts}

    def prune(self, names: set[str]) -> None:
        """Remove the scatter plots of cells no longer in the table (a run renamed, moved or gone), with
        their cache entries: a folder of figures shows the current report only."""
        for path in [*self.folder.glob("scatter_*.pdf"), *self.folder.glob("scatter_*.png"),
                     *(self.folder / ".screen").glob("scatter_*.png")]:
            if path.stem not in names:
                path.unlink(missing_ok=True)
        self.entries = {name: entry for name, entry in self.entries.items() if name in names}

    def save(self) -> None:
        if self.entries or self.path.is_file():
            io.write_json_atomic(self.path, self.entries)


def _draw_all(jobs: list[_Figure], cache: _FigureCache, folder: Path, progress: bool) -> list:
    """Each job's (files, screen PNG, facts), or the exception that cost it: cached figures read back,
    the others drawn in a process pool bounded by the cores (in this process when one is left)."""
    from tqdm.auto import tqdm

    results: list = [cache.get(job) for job in jobs]
    todo = [i for i, r in enumerate(results) if r is None]
    (folder / ".screen").mkdir(parents=True, exist_ok=True)
    workers = min(len(todo), os.cpu_count() or 1)
    bar = tqdm(total=len(todo), desc="plotting", unit="plot", disable=None if progress else True)

    def args(job: _Figure):
        return (str(job.run.run_dir), str(job.run.results_dir), job.label, job.title, str(folder / job.name), job.note)

    def done(i: int, value) -> None:
        results[i] = value
        if not isinstance(value, Exception):
            cache.put(jobs[i], value)
        bar.update(1)

    if workers <= 1:
        for i in todo:
            try:
                done(i, plots.scatter(jobs[i].run, jobs[i].label, jobs[i].title, folder / jobs[i].name, jobs[i].note))
            except (IqaError, OSError) as exc:
                done(i, exc)
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {i: pool.submit(plots.draw_scatter, *args(jobs[i])) for i in todo}
            for i, future in futures.items():
                try:
                    done(i, future.result())
                except (IqaError, OSError) as exc:
                    done(i, exc)
    bar.close()
    return results


def own_label_warnings(selection, titles) -> list[str]:
    """A cell whose method computed the dataset's labels (the card's `label_method`) scores the labels'
    own definition: its correlation is agreement with itself, not a result."""
    out = []
    for (ident, column), cell in selection.cells.items():
        if any(scores_its_labels(r) for r in cell.runs):
            run = cell.runs[0]
            out.append(f"{selection.labels[ident]} on {titles[column]}: this method computed the dataset's labels "
                       f"({run.label_name}); its correlation measures agreement with itself, not quality prediction")
    return sorted(out)


def interval_notes(selection, titles) -> list[str]:
    """Per column: what the bootstrap intervals resampled (images, or the references they share, with
    the number of references beside n), and a warning where few references make them wide."""
    out = []
    for column in selection.columns:
        boots = [(r.metrics or {}).get("bootstrap") or {} for i in selection.rows
                 if (c := selection.cell(i, column)) is not None for r in c.runs]
        refs = sorted({b["n_references"] for b in boots if b.get("unit") == "reference" and b.get("n_references")})
        if not refs:
            continue
        n = sorted({b.get("n_images") for b in boots if b.get("unit") == "reference" and b.get("n_images")})
        span = lambda v: str(v[0]) if len(v) == 1 else f"{v[0]}-{v[-1]}"  # noqa: E731
        out.append(f"{titles[column]}: intervals and paired tests resample reference images (a cluster bootstrap: "
                   f"images of one reference are not independent), {span(refs)} references for n = {span(n)} images")
        if refs[0] < FEW_REFERENCES:
            out.append(f"{titles[column]}: only {refs[0]} test reference(s); the intervals are wide for that reason")
    return out


def _value(cell: Cell | None) -> float:
    value = cell.values.get("srcc") if cell is not None else None
    return np.nan if value is None else value


def _unique(name: str, used: set[str]) -> str:
    candidate, k = name, 2
    while candidate.lower() in used:
        candidate, k = f"{name}-{k}", k + 1
    used.add(candidate.lower())
    return candidate


def summary_lines(summary: dict) -> list[str]:
    """What the CLI prints after a report: the counts, the files, then the notes and warnings."""
    lines = [f"{summary['rows']} method row(s) x {summary['columns']} column(s) from {summary['runs']} run folder(s); "
             f"{summary['tests']} significance test(s)"]
    lines += [f"wrote {path}" for path in summary["files"].values()]
    if summary["plots"]:
        lines.append(f"wrote {len(summary['plots'])} figure file(s) under {Path(summary['plots'][0]).parent}")
    lines += [f"note: {n}" for n in summary["notes"]]
    lines += [f"warning: {w}" for w in summary["warnings"]]
    return lines
