"""Every run folder under a results folder, read from its files only (no model is ever run).

Public for other readers of results (e.g. paper-table suites):

    runs = collect(results)                  # list[Run], manifest.json and metrics.json loaded
    ident = identity.identity_of(runs[0])    # what makes a table row (see identity.py)
    mine = select.runs_of(runs, lambda r: r.method == "dog-iqa")   # the runs of one identity
    cells = select.select(runs).cells        # one value per (identity, column), reruns resolved

A run folder holds manifest.json (what was run), inputs.json (the images and labels), the
predictions (predictions.csv, merged from predictions*.jsonl) and metrics.json (written when the
run ended; a folder without it is an unfinished run and is listed as such, never dropped).
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from iqabench.errors import IqaError
from iqabench.metrics import orient


@dataclasses.dataclass(frozen=True)
class Predictions:
    """The scored images of a run (raw scores and labels, in the run's order) and the failures."""

    ids: list[str]
    scores: np.ndarray
    labels: np.ndarray
    n_failed: int

    def oriented(self, method_higher_better: bool, label_higher_better: bool) -> tuple[np.ndarray, np.ndarray]:
        return orient(self.scores, method_higher_better), orient(self.labels, label_higher_better)


@dataclasses.dataclass(eq=False)
class Run:
    """One run folder: its manifest, its metrics (None while unfinished) and where it lives."""

    run_dir: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any] | None
    mtime: float
    results_dir: Path
    _predictions: Predictions | None = dataclasses.field(default=None, repr=False)
    _inputs: list[dict] | None = dataclasses.field(default=None, repr=False)

    def _get(self, key: str, default: Any = None) -> Any:
        if key in self.manifest:
            return self.manifest[key]
        return (self.metrics or {}).get(key, default)

    @property
    def method(self) -> str:
        return str(self._get("method", ""))

    @property
    def method_label(self) -> str:
        return str(self._get("method_label") or self.method)

    @property
    def dataset(self) -> str:
        return str(self._get("dataset", ""))

    @property
    def split(self) -> str:
        return str(self._get("split", ""))

    @property
    def part(self) -> str:
        return str(self._get("part", ""))

    @property
    def key(self) -> str:
        return str(self._get("key") or self.run_dir.name)

    @property
    def status(self) -> str:
        """complete | partial | inconsistent | unfinished (no metrics.json yet)."""
        if self.metrics is None:
            return "unfinished"
        return str(self.metrics.get("status", "unknown"))

    @property
    def checkpoint(self) -> dict | None:
        ckpt = self._get("checkpoint")
        return ckpt if isinstance(ckpt, dict) else None

    @property
    def trained_on(self) -> dict | None:
        ckpt = self.checkpoint
        trained = ckpt.get("trained_on") if ckpt else None
        return trained if isinstance(trained, dict) else None

    @property
    def limit(self) -> int | None:
        """The run's --limit (a smoke test), or the limit its checkpoint was trained with."""
        if self._get("limit") is not None:
            return int(self._get("limit"))
        trained = self.trained_on or {}
        return None if trained.get("limit") is None else int(trained["limit"])

    @property
    def n(self) -> int | None:
        if self.metrics is not None and self.metrics.get("n") is not None:
            return int(self.metrics["n"])
        return None if self._get("n_images") is None else int(self._get("n_images"))

    @property
    def method_higher_better(self) -> bool:
        return bool(self._get("method_higher_better", True))

    @property
    def label_higher_better(self) -> bool:
        return bool(self._get("label_higher_better", True))

    @property
    def label_name(self) -> str:
        return str(self._get("label_name") or "label")

    @property
    def time(self) -> float:
        """When the run ended: metrics.json's `created` (ISO 8601), else the file's modification time."""
        created = (self.metrics or {}).get("created")
        if isinstance(created, str):
            try:
                return datetime.datetime.fromisoformat(created).timestamp()
            except ValueError:
                pass  # not a timestamp we can read: fall back to the file time
        return self.mtime

    @property
    def rel(self) -> str:
        """The run folder relative to the results folder (how tables name it)."""
        try:
            return self.run_dir.relative_to(self.results_dir).as_posix()
        except ValueError:
            return str(self.run_dir)

    def metric(self, name: str) -> float | None:
        """A metric as float; None (JSON null), NaN and a missing key all mean undefined."""
        value = (self.metrics or {}).get(name)
        if value is None:
            return None
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None

    def inputs(self) -> list[dict]:
        """inputs.json's images (id, path, label and, when the dataset has them, ref, distortion, level)."""
        if self._inputs is None:
            path = self.run_dir / "inputs.json"
            data = _read_json(path, "run inputs") if path.exists() else {"images": []}
            images = data.get("images") if isinstance(data, dict) else None
            if not isinstance(images, list):
                raise IqaError(f"{path}: expected an object with an `images` list")
            self._inputs = images
        return self._inputs

    def predictions(self) -> Predictions:
        if self._predictions is None:
            self._predictions = read_predictions(self)
        return self._predictions


def collect(results: Path, progress: bool = False) -> list[Run]:
    """Every run folder (one holding manifest.json) under `results`, in path order."""
    from tqdm.auto import tqdm

    results = Path(results)
    if not results.is_dir():
        raise IqaError(f"results folder {results} does not exist")
    paths = sorted(results.rglob("manifest.json"))
    if not paths:
        raise IqaError(f"no run folder (manifest.json) under {results}: run `iqabench run` first")
    return [read_run(p.parent, results)
            for p in tqdm(paths, desc="reading runs", unit="run", disable=None if progress else True)]


def read_run(run_dir: Path, results: Path) -> Run:
    manifest = _read_json(run_dir / "manifest.json", "run manifest")
    if not isinstance(manifest, dict):
        raise IqaError(f"{run_dir / 'manifest.json'}: expected a JSON object")
    metrics_path = run_dir / "metrics.json"
    metrics = _read_json(metrics_path, "run metrics") if metrics_path.exists() else None
    if metrics is not None and not isinstance(metrics, dict):
        raise IqaError(f"{metrics_path}: expected a JSON object")
    missing = [k for k in ("method", "dataset", "split", "part") if not manifest.get(k)]
    if missing:
        raise IqaError(f"{run_dir / 'manifest.json'}: missing field(s) {', '.join(missing)}")
    stamp = metrics_path if metrics is not None else run_dir / "manifest.json"
    return Run(run_dir, manifest, metrics, stamp.stat().st_mtime, Path(results))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise IqaError(f"{path}: cannot read {what} ({exc})") from None
    except json.JSONDecodeError as exc:
        raise IqaError(f"{path}: {what} is not valid JSON (line {exc.lineno}: {exc.msg})") from None


def read_predictions(run: Run) -> Predictions:
    """The run's scored images from predictions.csv (the merged view `score` writes), else from the
    append-only predictions*.jsonl. A record with an error or a non-finite score is a failure."""
    path = run.run_dir / "predictions.csv"
    if path.exists():
        records = _csv_records(path)
    elif list(run.run_dir.glob("predictions*.jsonl")):
        from iqabench.store import RecordProblems, RunStore

        ids = [str(r["id"]) for r in run.inputs()]
        records = RunStore(run.run_dir).read_records(ids or None, RecordProblems())
        records = {i: records[i] for i in (ids or records) if i in records}
    else:
        raise IqaError(f"{run.run_dir}: no predictions (predictions.csv or predictions*.jsonl)")
    input_labels = {str(r["id"]): r.get("label") for r in run.inputs() if isinstance(r, dict) and "id" in r}
    ids, scores, labels, failed = [], [], [], 0
    for sid, rec in records.items():
        score = _finite(rec.get("score"))
        label = _finite(rec.get("label"))
        if label is None:
            label = _finite(input_labels.get(sid))
        if rec.get("error") or score is None or label is None:
            failed += 1
            continue
        ids.append(sid)
        scores.append(score)
        labels.append(label)
    return Predictions(ids, np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64), failed)


def _csv_records(path: Path) -> dict[str, dict]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"id", "score", "label"} - set(reader.fieldnames or [])
            if missing:
                raise IqaError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            out: dict[str, dict] = {}
            for record in reader:
                error = (record.get("error") or "").strip()
                record["error"] = error if error and error.lower() != "nan" else None
                out[record["id"]] = record  # a repeated id: the last record wins, as in the store
            return out
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IqaError(f"{path}: cannot read predictions ({exc})") from None


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
