"""What each method costs, from run folders (seed 002's Table 4): trainable parameters and time per image.

- Trainable parameters: the elements of the tensors a run's trained checkpoint holds (its
  .safetensors files, read from their headers: nothing is loaded), i.e. what training changed.
  A run without a checkpoint (zero-shot) trains 0. A checkpoint in another format (an SVR, a
  .pth prompt) is "?": it is never unpickled to be counted.
- Time per image: metrics.json's `seconds_per_image_mean`, the mean wall time of a scored image
  (its batch's time over the batch), on the device the run recorded.
FLOPs are not measured.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

from iqabench.errors import IqaError

COLUMNS = ("method", "dataset", "images", "trainable_parameters", "seconds_per_image", "device", "label", "run")
SHOWN = COLUMNS[:6]  # the markdown and PNG table; the CSV also has the run's full label and folder


def safetensors_elements(path: Path) -> int:
    """The number of tensor elements in a .safetensors file, from its JSON header."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error) as exc:
        raise IqaError(f"{path}: not a readable safetensors file ({exc})") from None
    total = 0
    for name, entry in header.items():
        if name != "__metadata__":
            count = 1
            for dim in entry["shape"]:
                count *= int(dim)
            total += count
    return total


def trainable_parameters(checkpoint: dict | None) -> int | None:
    """Elements of the checkpoint's safetensors files; 0 without a checkpoint; None when unknown."""
    if not checkpoint:
        return 0
    where = Path(str(checkpoint.get("dir", "")))
    names = list(checkpoint.get("files") or {})
    paths = [where] if where.is_file() else [where / n for n in names]
    tensors = [p for p in paths if p.suffix == ".safetensors" and p.is_file()]
    if not tensors:
        return None
    return sum(safetensors_elements(p) for p in tensors)


def cost_rows(results: Path) -> list[dict]:
    """One row per finished run folder under `results`, in path order."""
    from iqabench.runs import find_runs

    rows = []
    for run in find_runs(results):
        if run.metrics is None:
            continue
        seconds = run.metrics.get("seconds_per_image_mean")
        rows.append({
            "method": run.method + (" (smoke test)" if run.smoke_test else ""),
            "dataset": f"{run.dataset}/{run.split}/{run.part}",
            "images": run.metrics.get("n_scored"),
            "trainable_parameters": trainable_parameters(run.checkpoint),
            "seconds_per_image": None if seconds is None else float(seconds),
            "device": run.manifest.get("device"),
            "label": run.method_label,
            "run": run.rel,
        })
    return rows


def _cell(key: str, value) -> str:
    if value is None:
        return "?"
    if key == "trainable_parameters":
        return f"{value:,}"
    if key == "seconds_per_image":
        return f"{value:.4f}"
    return str(value)


def table_lines(rows: list[dict]) -> list[str]:
    """A markdown table of the rows (the full label and folder are in the CSV)."""
    keys = SHOWN
    header = ["method", "dataset", "images", "trainable parameters", "s / image", "device"]
    body = [[_cell(k, row[k]) for k in keys] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in body)]


def write_cost_table(results: Path, out: Path) -> list[Path]:
    """cost.md, cost.csv and cost.png (the table as an image) under `out`."""
    import csv

    from iqabench.report.figures import text_panel, write_png

    rows = cost_rows(results)
    if not rows:
        raise IqaError(f"{results}: no finished runs to tabulate (run `iqabench run` first)")
    out.mkdir(parents=True, exist_ok=True)
    lines = table_lines(rows)
    note = "Trainable parameters: tensor elements in the run's trained checkpoint (0: zero-shot; ?: not safetensors). FLOPs not measured."
    (out / "cost.md").write_text("\n".join([*lines, "", note]) + "\n")
    with open(out / "cost.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    png = write_png(text_panel([*lines, "", note]), out / "cost.png")
    return [out / "cost.md", out / "cost.csv", png]
