"""One scatter plot per run: oriented predictions against oriented labels, with the logistic curve.

The orientation and the logistic parameters are the ones recorded in metrics.json, so the picture
shows exactly what the numbers were computed from; nothing is refitted here.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np

from iqabench.errors import IqaError
from iqabench.metrics import logistic4, orient
from iqabench.report.collect import Run, decreasing_fit


def read_predictions(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Scores and labels of the scored images, and the number of failed ones.

    The store is append-only, so when an id appears twice (a resumed run) its last record wins.
    A record with an error, or without a finite score, is a failure.
    """
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"id", "score", "label"} - set(reader.fieldnames or [])
            if missing:
                raise IqaError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            last = {record["id"]: record for record in reader}
    except OSError as exc:
        raise IqaError(f"{path}: cannot read predictions ({exc})") from exc
    scores, labels, failed = [], [], 0
    for record in last.values():
        score = _float(record.get("score"))
        label = _float(record.get("label"))
        if (record.get("error") or "").strip() or score is None or label is None:
            failed += 1
            continue
        scores.append(score)
        labels.append(label)
    return np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64), failed


def _float(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def plot_path(out_dir: Path, run: Run) -> Path:
    m = run.metrics
    return (Path(out_dir) / "plots" / _safe(m["dataset"]) / _safe(f"{m['split']}-{m['part']}")
            / f"{_safe(run.run_dir.name)}.png")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", str(name))


def plot_run(run: Run, out_path: Path) -> dict:
    """Write the PNG; returns what was drawn (n scored, n failed, whether the curve is there)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = run.metrics
    scores, labels, failed = read_predictions(run.run_dir / "predictions.csv")
    orientation = m.get("orientation") or {}
    pred_negated = bool(orientation.get("prediction_negated", False))
    label_negated = bool(orientation.get("label_negated", False))
    x = orient(scores, higher_better=not pred_negated)
    y = orient(labels, higher_better=not label_negated)
    params = m.get("logistic_params")
    n_failed = m.get("n_failed", failed)

    fig = Figure(figsize=(5.6, 4.6), dpi=120)
    FigureCanvasAgg(fig)  # Agg renders without a display and without touching pyplot's global state
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(x, y, s=12, alpha=0.6, color="tab:blue", edgecolors="none", label="images")
    curve = params is not None and len(params) == 4 and len(x) > 0
    if curve:
        xs = np.linspace(float(np.min(x)), float(np.max(x)), 300)
        ax.plot(xs, logistic4(xs, *params), color="tab:red", linewidth=2, label="4-parameter logistic fit")
        ax.legend(loc="best", fontsize=8, frameon=False)
    ax.set_xlabel("prediction" + (" (negated: lower is better for this method)" if pred_negated else ""))
    ax.set_ylabel("label" + (" (negated: lower is better in this dataset)" if label_negated else ""))
    ax.grid(True, alpha=0.3)

    srcc, plcc = _num(m.get("srcc")), _num(m.get("plcc"))
    title = [f"{m['method_label']} on {m['dataset']} ({m['split']}, {m['part']})",
             f"SRCC {srcc}   PLCC {plcc} (after logistic fit)   n={len(x)}   failed={n_failed}"]
    if m.get("undefined_reason"):
        title.append(f"undefined: {m['undefined_reason']}")
    if decreasing_fit(m):
        title.append(f"decreasing fit: PLCC after it hides the backwards ranking (raw PLCC {_num(m.get('plcc_raw'))})")
    if not curve:
        title.append("no logistic curve: " + ("metrics.json has no fitted parameters" if params is None
                                              else "no scored images"))
    if m.get("status") != "complete":
        title.append(f"status: {m.get('status', 'unknown')}")
    ax.set_title("\n".join(title), fontsize=9)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, format="png")
    return {"n_scored": len(x), "n_failed": int(failed), "curve": curve}


def _num(value) -> str:
    return "—" if value is None else f"{float(value):.3f}"
