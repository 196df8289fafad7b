"""Figures: one scatter plot per table cell (score against label, marginal histograms, the recorded
logistic curve) and a methods x datasets heat map of SRCC.

Nothing is refitted: the curve is metrics.json's 4-parameter logistic, fitted on oriented values
(higher = better) and drawn back in the raw units on both axes, so a lower-better method or a DMOS
label reads as published. Each figure is written as PDF (vector, for papers) and 300-dpi PNG, and
rendered once more at screen resolution for the HTML report; files are named by readable labels.
Matplotlib runs with the Agg canvas and no pyplot state.
"""
from __future__ import annotations

import io as _io
import re
from pathlib import Path

import numpy as np

from iqabench import io
from iqabench.metrics import format_value, logistic4
from iqabench.metrics import label as metric_label
from iqabench.report.collect import Run

# Part of every figure's cache key: bump when a change here changes what a figure looks like.
FIGURES_VERSION = 2
TITLE_CHARS = 62  # a scatter title's line at 8 pt on the 4.8-inch figure: longer titles wrap, never clip
RASTER_POINTS_ABOVE = 4000  # more points than this are rasterised inside the PDF (size), axes stay vector
PNG_DPI, SCREEN_DPI = 300, 90


def slug(text: str) -> str:
    """A readable file-name part: letters, digits, . _ - kept, other runs become one '-'."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-.") or "x"


def label_axis_title(run: Run) -> str:
    """'MOS (mos_quality)', 'DMOS', 'FSIM': the label's kind and, when it adds anything, its column."""
    name = run.label_name
    low = name.lower()
    kind = "DMOS" if "dmos" in low else "MOS" if "mos" in low else name.upper()
    text = kind if kind == name.upper() else f"{kind} ({name})"
    return text + ("" if run.label_higher_better else ", lower is better")


def run_content_key(run: Run) -> str:
    """What a run's scatter plot is drawn from: its metrics.json and predictions.csv, hashed."""
    parts = [FIGURES_VERSION]
    for name in ("metrics.json", "predictions.csv", "manifest.json"):
        path = run.run_dir / name
        parts.append(io.sha256_file(path) if path.is_file() else None)
    from iqabench.api import stable_hash

    return stable_hash(parts, length=16)


def draw_scatter(run_dir: str, results: str, method_label: str, dataset_title: str, base: str,
                 note: str = "") -> tuple[list[Path], bytes, dict]:
    """`scatter` for a worker process: the run is read again there, through runs.py."""
    from iqabench.runs import read_run

    return scatter(read_run(Path(run_dir), Path(results)), method_label, dataset_title, Path(base), note)


def _figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def save(fig, base: Path, tight: bool = False) -> tuple[list[Path], bytes]:
    """`base`.pdf and `base`.png, each written atomically; returns them and a screen-size PNG.
    `tight` grows the canvas to whatever the labels need (long method names on a heat map)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    extra = {"bbox_inches": "tight", "pad_inches": 0.05} if tight else {}
    written = []
    for ext, kwargs in (("pdf", {}), ("png", {"dpi": PNG_DPI})):
        path = base.with_name(base.name + "." + ext)
        with io.atomic_path(path) as tmp:  # a kill mid-write never leaves a broken figure
            fig.savefig(tmp, format=ext, **kwargs, **extra)
        written.append(path)
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=SCREEN_DPI, **extra)
    return written, buffer.getvalue()


def scatter(run: Run, method_label: str, dataset_title: str, base: Path,
            note: str = "") -> tuple[list[Path], bytes, dict]:
    """The scatter plot of one run (`note` follows the split in the title); returns the files, the
    screen PNG and what was drawn."""
    preds = run.predictions()
    m = run.metrics or {}
    sx = 1.0 if run.method_higher_better else -1.0
    sy = 1.0 if run.label_higher_better else -1.0
    x, y = preds.scores, preds.labels  # raw units
    fig = _figure((4.8, 4.4))
    grid = fig.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4), wspace=0.05, hspace=0.05,
                            left=0.14, right=0.97, bottom=0.12, top=0.86)
    ax = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=ax)
    side = fig.add_subplot(grid[1, 1], sharey=ax)
    ax.scatter(x, y, s=8, alpha=0.5, color="tab:blue", edgecolors="none",
               rasterized=len(x) > RASTER_POINTS_ABOVE)
    bins = min(40, max(5, int(np.sqrt(max(len(x), 1)))))
    if len(x):
        top.hist(x, bins=bins, color="tab:blue", alpha=0.7)
        side.hist(y, bins=bins, orientation="horizontal", color="tab:gray", alpha=0.7)
    top.tick_params(labelbottom=False, labelleft=False, left=False)
    side.tick_params(labelleft=False, labelbottom=False, bottom=False)
    for spine in ("top", "right", "left"):
        top.spines[spine].set_visible(False)
    for spine in ("top", "right", "bottom"):
        side.spines[spine].set_visible(False)
    params = m.get("logistic_params")
    curve = bool(params) and len(params) == 4 and len(x) > 0
    if curve:
        xo = np.linspace(float(np.min(sx * x)), float(np.max(sx * x)), 300)  # oriented, as fitted
        ax.plot(sx * xo, sy * logistic4(xo, *params), color="tab:red", linewidth=1.8, label="logistic fit")
        ax.legend(loc="best", fontsize=7, frameon=False)
    ax.set_xlabel(f"{method_label} score" + ("" if run.method_higher_better else " (lower is better)"), fontsize=8)
    ax.set_ylabel(label_axis_title(run), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    stats = "   ".join(f"{metric_label(k)} {format_value(run.metric(k), 3, 'undefined')}" for k in ("srcc", "plcc"))
    lines = title_lines(f"{method_label} on {dataset_title} ({run.split}{note})") + [f"{stats}   n={len(x)}"]
    # each wrapped line takes room from the plots below it, so the title stays inside the figure
    grid.update(top=0.86 - 0.035 * (len(lines) - 2))
    title = fig.suptitle("\n".join(lines), fontsize=8)
    written, screen = save(fig, base)
    box = title.get_window_extent(fig.canvas.get_renderer())
    inside = fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
    drawn = {"n_scored": int(len(x)), "curve": curve, "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
             "title": lines, "title_inside": bool(inside)}
    return written, screen, drawn


def title_lines(text: str, width: int = TITLE_CHARS) -> list[str]:
    """A title wrapped at spaces and hyphens to lines of at most `width` characters (a longer name
    is cut inside): the figure's width never clips it."""
    import textwrap

    return textwrap.wrap(text, width=width, break_on_hyphens=True, break_long_words=True) or [""]


def heatmap(row_labels: list[str], column_labels: list[str], values: np.ndarray, base: Path,
            title: str | None = None) -> tuple[list[Path], bytes]:
    """Methods (rows) x datasets (columns); NaN cells (no full complete run) are grey and empty."""
    n_rows, n_cols = values.shape
    fig = _figure((max(3.6, 1.0 + 0.9 * n_cols + 0.06 * max(len(r) for r in row_labels)),
                   max(2.2, 1.2 + 0.35 * n_rows)))
    ax = fig.add_subplot(1, 1, 1)
    masked = np.ma.masked_invalid(values)
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")
    image = ax.imshow(masked, cmap=cmap, vmin=min(0.0, float(np.nanmin(values)) if np.isfinite(values).any() else 0.0),
                      vmax=1.0, aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            v = values[i, j]
            ax.text(j, i, "—" if not np.isfinite(v) else f"{v:.3f}", ha="center", va="center", fontsize=7,
                    color="black" if not np.isfinite(v) or v > 0.6 else "white")
    ax.set_xticks(range(n_cols), column_labels, rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(n_rows), row_labels, fontsize=7)
    ax.set_title(title or metric_label("srcc"), fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02).ax.tick_params(labelsize=7)
    return save(fig, base, tight=True)
