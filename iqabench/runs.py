"""One run folder, read: the one read model every reader (report, suite tables, `score`, re-scoring)
goes through, and the written schema of the files it reads. `iqabench.store` writes these files;
`iqabench.layout.ResultsLayout.run_dirs` is the only finder of run folders.

Schema, version 2 (`schema_version` in manifest.json, metrics.json and inputs.json)
--------------------------------------------------------------------------------------
manifest.json   what was run, written once by the first attempt (a JSON object):
    method, dataset, split, part        required; they place the run in a table column
    method_label                        shown name (default: the method name)
    method_kind, options                the method's kind and its validated options ({})
    fingerprint                         {"method", "options"[, "rescored"]}: what a table row and a suite cell
                                        match on (default: built from method and options)
    identity, key                       what the run key hashes, and the key (default: the folder name)
    split_hash, inputs_hash             the split's membership hash; the hash of inputs.json's images
    labels                              false for `run --images` (scores only; default true)
    label_name, label_range, label_higher_better      the dataset's label ("label", null, true)
    method_higher_better                direction of the method's scores (true)
    n_images, limit                     images in the run; --limit N marks a smoke test (null)
    split_chosen_by                     why the split is the method's recipe's, not --split or the card's (null)
    checkpoint                          null, or {"kind": trained|given|external, "dir", "files",
                                        "trained_on": {dataset, split, split_hash, seed, limit}}
    seed, batch_size, device, world_size, started, versions and git commit of the attempt that made it
    seal                                the hash of every other field as first written (`manifest_seal`); a
                                        manifest edited since (a direction or label flipped) is refused
    imported                            only in a folder made by `iqabench import`: {"file", "sha256", "format",
                                        "formula", "formula_text", "labels": card|file, "label_field",
                                        "label_agreement", "entries", "matched", "unmatched", "outside_part",
                                        "not_in_file"} (iqabench/imports)
    rescored_from                       only in a folder made by `score --rescore`: {"run_dir", "key",
                                        "words": [positive, negative] | "levels": [levels, weights]}
inputs.json     {"hash": inputs_hash, "images": [{"id", "path", "label"[, "ref", "distortion", "level"]}]}
                the hash is checked against the images and against the manifest's inputs_hash
predictions.jsonl, predictions.rank{r}-of{n}.jsonl
                one record per line, {"id", "score", "label", "error"[, "seconds", method extras such as
                "word_logits"]}; a failure has `error` set and `score` null. Reading: a success wins over a
                failure, a later failure over an earlier one (see `read_records`)
predictions.csv the merged view of the records (id, score, label, error, extras), written with metrics.json
metrics.json    computed from the records only (`iqabench.score`): method, dataset, split, part, key, limit,
                checkpoint, n, n_scored, n_failed, n_missing, srcc, krcc, plcc, plcc_raw, rmse, ci95,
                logistic_params, status (complete | partial | inconsistent), created, runtime, ...
attempts.jsonl, runtime.rank{r}.jsonl   one line per attempt: command and device; method statistics

Version 1 is a folder written before `schema_version` existed: every field above it lacks is read
with the value in DEFAULTS below, the one place a run folder's defaults are written down.

A run's state (`Run.state`): unfinished (no metrics.json), smoke test (a --limit run, or a checkpoint
trained with one), else the recorded status: complete, partial, inconsistent. Only a complete run
that is not a smoke test fills a table cell (`Run.usable`).
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from iqabench import io
from iqabench.api import stable_hash
from iqabench.errors import IqaError
from iqabench.metrics import orient

SCHEMA_VERSION = 2
# What to do about a run folder whose own bookkeeping is unreadable.
RESTART_ADVICE = "restore it, or move this run folder away to score the run afresh"
REQUIRED = ("method", "dataset", "split", "part")
# What identifies a run folder's content: a manifest differing in these is another run.
IDENTITY_KEYS = ("method", "dataset", "split_hash", "part", "key")
# Fields a folder may lack (version 1, or fields a version adds) and what a missing one means.
DEFAULTS: dict[str, Any] = {
    "schema_version": 1, "method_label": None, "method_kind": None, "options": {}, "fingerprint": None,
    "identity": None, "key": None, "split_hash": None, "inputs_hash": None, "labels": True, "label_name": "label",
    "label_range": None, "label_higher_better": True, "method_higher_better": True, "n_images": None,
    "limit": None, "checkpoint": None, "seed": 0, "batch_size": None, "started": None, "rescored_from": None,
    "imported": None, "split_chosen_by": None,
}


# Fields repeated at the top of the manifest and in its identity (what the key hashes): they must agree.
IDENTITY_FIELDS = ("dataset", "split", "split_hash", "part", "limit", "batch_size", "fingerprint", "labels")
# Fields that must be true/false: each turns the numbers around (a direction) or on and off (labels).
FLAGS = ("labels", "label_higher_better", "method_higher_better")
EDITED_ADVICE = ("restore the file, or score the run afresh in another --results folder (a run folder's records "
                 "are only as good as what it says was run)")


def manifest_seal(manifest: dict) -> str:
    """The hash of a manifest as written (every field but the seal): `RunStore` stores it, `read_manifest`
    checks it, so a hand edit of any field (a direction, the label range, the identity) is found."""
    body = {k: v for k, v in json.loads(io.dumps(manifest)).items() if k != "seal"}
    return stable_hash(body, length=16)


def inputs_hash(images: list[dict]) -> str:
    """The hash inputs.json and the manifest record of a run's images (ids, files, labels)."""
    return stable_hash(images, length=16)


# -- the files -------------------------------------------------------------------------------------------
def read_manifest(run_dir: Path) -> dict[str, Any]:
    """manifest.json with DEFAULTS filled in, or one line naming the file and the problem."""
    path = Path(run_dir) / "manifest.json"
    raw = io.read_json(path, "run manifest", advice=RESTART_ADVICE)
    if not isinstance(raw, dict):
        raise IqaError(f"{path}: run manifest is not a JSON object; {RESTART_ADVICE}")
    missing = [k for k in REQUIRED if not raw.get(k)]
    if missing:
        raise IqaError(f"{path}: run manifest lacks {', '.join(missing)}; {RESTART_ADVICE}")
    _check_manifest(path, raw)
    manifest = {**DEFAULTS, **raw}
    manifest["method_label"] = manifest["method_label"] or manifest["method"]
    manifest["key"] = manifest["key"] or Path(run_dir).name
    if not isinstance(manifest["fingerprint"], dict):
        manifest["fingerprint"] = {"method": manifest["method"], "options": manifest["options"] or {}}
    return manifest


def _check_manifest(path: Path, raw: dict) -> None:
    """The manifest agrees with itself: its seal (when it has one), its flags, and its identity."""
    for flag in FLAGS:
        if flag in raw and not isinstance(raw[flag], bool) and not (flag == "label_higher_better" and raw[flag] is None):
            raise IqaError(f"{path}: run manifest field {flag} is {raw[flag]!r}, not true or false; {RESTART_ADVICE}")
    if "seal" in raw and raw["seal"] != manifest_seal(raw):
        raise IqaError(f"{path}: run manifest was edited after the run wrote it (its content no longer matches "
                       f"the recorded identity and seal); {EDITED_ADVICE}")
    identity = raw.get("identity")
    if raw.get("schema_version", 1) >= 2 and "identity" not in raw:
        raise IqaError(f"{path}: run manifest lacks its identity (what its key hashes); {RESTART_ADVICE}")
    if identity is None:
        return
    if not isinstance(identity, dict):
        raise IqaError(f"{path}: run manifest identity is not a JSON object; {RESTART_ADVICE}")
    differ = [k for k in IDENTITY_FIELDS if k in identity and k in raw and raw[k] != identity[k]]
    if "images" in identity and raw.get("inputs_hash") not in (None, identity["images"]):
        differ.append("inputs_hash")
    if differ:
        raise IqaError(f"{path}: run manifest says {', '.join(differ)} differently from its recorded identity "
                       f"(edited by hand?); {EDITED_ADVICE}")


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """metrics.json, or None while the run is unfinished (no such file)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    metrics = io.read_json(path, "run metrics", advice="recompute it with `iqabench score RUN_DIR`")
    if not isinstance(metrics, dict):
        raise IqaError(f"{path}: run metrics is not a JSON object; recompute it with `iqabench score RUN_DIR`")
    return metrics


def read_inputs(run_dir: Path, manifest: dict | None = None) -> list[dict]:
    """inputs.json's images, checked against the hash stored with them and the manifest's inputs_hash."""
    path = Path(run_dir) / "inputs.json"
    data = io.read_json(path, "run inputs", advice=RESTART_ADVICE)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not all(isinstance(r, dict) and "id" in r for r in images):
        raise IqaError(f"{path}: not a run inputs record (no list of images with ids); {RESTART_ADVICE}")
    stored = data.get("hash")
    if stored is not None and inputs_hash(images) != stored:
        raise IqaError(f"{path}: the images listed do not match the hash stored with them (edited by hand?); "
                       f"{RESTART_ADVICE}")
    expected = (manifest or {}).get("inputs_hash")
    if expected is not None and stored is None:
        raise IqaError(f"{path}: run inputs carry no hash, but manifest.json recorded one ({expected}); "
                       f"{RESTART_ADVICE}")
    if expected is not None and expected != stored:
        raise IqaError(f"{path}: these inputs (hash {stored}) are not the ones manifest.json recorded "
                       f"({expected}): the files come from two runs; {RESTART_ADVICE}")
    if manifest is not None and manifest.get("labels") is not False:
        for row in images:
            label = row.get("label")
            if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
                raise IqaError(f"{path}: label {label!r} of image {row['id']!r} is not a finite number; "
                               f"{RESTART_ADVICE}")
    return images


def with_schema(obj: dict) -> dict:
    """What the store writes: the object stamped with this schema's version."""
    return {**obj, "schema_version": SCHEMA_VERSION}


# -- prediction records ----------------------------------------------------------------------------------
class RecordProblems:
    """What reading the records found that is not a clean one-record-per-image log."""

    def __init__(self):
        self.conflicts: list[str] = []  # ids with two successful records that disagree, or a record and inputs.json
        self.outside: list[str] = []  # ids that are not among the run's images
        self.bad_lines: list[str] = []  # file:line of records that are not usable

    def as_dict(self) -> dict:
        return {"conflicting_records": self.conflicts, "records_outside_run": self.outside,
                "unreadable_records": self.bad_lines}

    def __bool__(self) -> bool:
        return bool(self.conflicts or self.outside or self.bad_lines)


def prediction_files(run_dir: Path) -> list[Path]:
    return sorted(Path(run_dir).glob("predictions*.jsonl"))


def read_records(run_dir: Path, run_ids: Iterable[str] | dict[str, Any] | None = None,
                 problems: RecordProblems | None = None) -> dict[str, dict]:
    """Every saved record of every rank, one per image.

    A success is never retried, so it wins over a failure whatever the file order; a retried
    failure replaces the older failure. Two successes for one image that disagree (merged
    folders), records of images outside the run and unusable records are collected in
    `problems` (and left out) when it is given, else raise IqaError. When `run_ids` maps each id
    to its label in inputs.json, a record carrying another label (another run's) is such a conflict."""
    records: dict[str, dict] = {}
    wanted = set(run_ids) if run_ids is not None else None
    labels = run_ids if isinstance(run_ids, dict) else {}

    def trouble(kind: list, item: str, message: str) -> None:
        if problems is None:
            raise IqaError(message)
        kind.append(item)

    for path in prediction_files(run_dir):
        def bad(lineno: int, reason: str, path=path) -> None:
            trouble(problems.bad_lines if problems is not None else [], f"{path.name}:{lineno}",
                    f"{path}:{lineno}: corrupt prediction record: {reason}; delete that line "
                    "(its image is scored again) or restore the file")

        for lineno, rec in io.JsonlLog(path).read_numbered(on_bad=bad):
            reason = record_problem(rec)
            if reason:
                bad(lineno, reason)
                continue
            sid = rec["id"]
            if wanted is not None and sid not in wanted:
                trouble(problems.outside if problems is not None else [], sid,
                        f"{path}: a record of image {sid!r}, which is not among this run's images "
                        "(copied from another run?); delete its line or score afresh in another --results folder")
                continue
            label = rec.get("label")
            if label is not None and labels.get(sid) is not None and label != labels[sid]:
                trouble(problems.conflicts if problems is not None else [], sid,
                        f"{path}:{lineno}: the record of image {sid!r} has label {label}, but inputs.json "
                        f"gives {labels[sid]} (copied from another run?); delete that line (its image is "
                        "scored again) or score afresh in another --results folder")
                continue
            old = records.get(sid)
            if old is not None and old.get("error") is None:
                if rec.get("error") is None and old["score"] != rec["score"]:
                    trouble(problems.conflicts if problems is not None else [], sid,
                            f"{path}: two records of image {sid!r} with different scores "
                            f"({old['score']} and {rec['score']}; merged run folders?); keep one of "
                            "them or score afresh in another --results folder")
                continue
            records[sid] = rec
    return records


def record_problem(rec: dict) -> str | None:
    """Why a saved record cannot be used, or None."""
    sid = rec.get("id")
    if not isinstance(sid, str) or not sid:
        return "no image id"
    if rec.get("error") is None:
        score = rec.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            return f"score {score!r} is not a number"
        if score != score or score in (float("inf"), float("-inf")):
            return f"score {score!r} is not finite"
    return None


def read_attempts(run_dir: Path) -> list[dict]:
    """attempts.jsonl: one line per attempt (a corrupt line loses that line only)."""
    return io.JsonlLog(Path(run_dir) / "attempts.jsonl").read(on_bad=lambda lineno, reason: None)


def read_runtime(run_dir: Path) -> list[dict]:
    """Every attempt's method statistics, of every rank, in the order they finished."""
    out = []
    for path in sorted(Path(run_dir).glob("runtime.rank*.jsonl")):
        # a corrupt line loses that attempt's statistics, never its scores
        out.extend(io.JsonlLog(path).read(on_bad=lambda lineno, reason: None))
    return sorted(out, key=lambda r: str(r.get("finished")))


# -- the read model --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Predictions:
    """The scored images of a run (raw scores and labels, in the run's order) and the failures."""

    ids: list[str]
    scores: np.ndarray
    labels: np.ndarray
    n_failed: int

    def oriented(self, method_higher_better: bool, label_higher_better: bool) -> tuple[np.ndarray, np.ndarray]:
        """Scores and labels both higher-better."""
        return orient(self.scores, method_higher_better), orient(self.labels, label_higher_better)


@dataclasses.dataclass(eq=False)
class Run:
    """One run folder: its manifest (defaults filled in), its metrics (None while unfinished) and
    where it lives; inputs, records and predictions are read when first asked for."""

    run_dir: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any] | None
    mtime: float
    results_dir: Path
    _predictions: Predictions | None = dataclasses.field(default=None, repr=False)
    _inputs: list[dict] | None = dataclasses.field(default=None, repr=False)

    # -- identity: what was run, on which column
    @property
    def method(self) -> str:
        return str(self.manifest["method"])

    @property
    def method_label(self) -> str:
        return str(self.manifest["method_label"])

    @property
    def dataset(self) -> str:
        return str(self.manifest["dataset"])

    @property
    def split(self) -> str:
        return str(self.manifest["split"])

    @property
    def part(self) -> str:
        return str(self.manifest["part"])

    @property
    def key(self) -> str:
        return str(self.manifest["key"])

    @property
    def fingerprint(self) -> dict:
        return self.manifest["fingerprint"]

    @property
    def options(self) -> dict:
        return self.fingerprint.get("options", self.manifest["options"]) or {}

    @property
    def labelled(self) -> bool:
        return self.manifest["labels"] is not False

    @property
    def rescored_from(self) -> dict | None:
        value = self.manifest["rescored_from"]
        return value if isinstance(value, dict) else None

    @property
    def imported(self) -> dict | None:
        """What `iqabench import` read (source file, hash, formula, label agreement), or None."""
        value = self.manifest["imported"]
        return value if isinstance(value, dict) else None

    @property
    def checkpoint(self) -> dict | None:
        ckpt = self.manifest["checkpoint"]
        return ckpt if isinstance(ckpt, dict) else None

    @property
    def trained_on(self) -> dict | None:
        ckpt = self.checkpoint
        trained = ckpt.get("trained_on") if ckpt else None
        return trained if isinstance(trained, dict) else None

    @property
    def method_higher_better(self) -> bool:
        return bool(self.manifest["method_higher_better"])

    @property
    def label_higher_better(self) -> bool:
        return bool(self.manifest["label_higher_better"])

    @property
    def label_name(self) -> str:
        return str(self.manifest["label_name"] or "label")

    # -- state
    @property
    def limit(self) -> int | None:
        """The run's --limit (a smoke test), or the limit its checkpoint was trained with."""
        own = self.manifest["limit"] if self.manifest["limit"] is not None else (self.metrics or {}).get("limit")
        if own is not None:
            return int(own)
        trained = self.trained_on or {}
        return None if trained.get("limit") is None else int(trained["limit"])

    @property
    def smoke_test(self) -> bool:
        return self.limit is not None

    @property
    def status(self) -> str:
        """The recorded status: complete | partial | inconsistent, or unfinished (no metrics.json yet)."""
        if self.metrics is None:
            return "unfinished"
        return str(self.metrics.get("status", "unknown"))

    @property
    def state(self) -> str:
        """unfinished | smoke test | complete | partial | inconsistent (see the module doc)."""
        if self.metrics is None:
            return "unfinished"
        return "smoke test" if self.smoke_test else self.status

    @property
    def usable(self) -> bool:
        """Only a complete run of every image, with a checkpoint trained on every image, fills a cell."""
        return self.labelled and self.state == "complete"

    @property
    def n(self) -> int | None:
        if self.metrics is not None and self.metrics.get("n") is not None:
            return int(self.metrics["n"])
        return None if self.manifest["n_images"] is None else int(self.manifest["n_images"])

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
        return _finite((self.metrics or {}).get(name))

    # -- contents
    def inputs(self) -> list[dict]:
        """inputs.json's images (id, path, label and, when the dataset has them, ref, distortion, level)."""
        if self._inputs is None:
            self._inputs = read_inputs(self.run_dir, self.manifest) if (self.run_dir / "inputs.json").exists() else []
        return self._inputs

    def records(self, problems: RecordProblems | None = None) -> dict[str, dict]:
        """The prediction records, one per image of the run (see `read_records`)."""
        labels = {str(r["id"]): r.get("label") for r in self.inputs()}
        return read_records(self.run_dir, labels or None, problems)

    def attempts(self) -> list[dict]:
        return read_attempts(self.run_dir)

    def runtime(self) -> list[dict]:
        return read_runtime(self.run_dir)

    def predictions(self) -> Predictions:
        if self._predictions is None:
            self._predictions = _predictions(self)
        return self._predictions


def read_run(run_dir: Path, results: Path | None = None) -> Run:
    """The run folder `run_dir`, or one line naming the file that cannot be read."""
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise IqaError(f"{run_dir}: not a run folder (no manifest.json)")
    manifest = read_manifest(run_dir)
    metrics = read_metrics(run_dir)
    stamp = run_dir / ("metrics.json" if metrics is not None else "manifest.json")
    return Run(run_dir, manifest, metrics, stamp.stat().st_mtime, Path(results) if results else run_dir.parent)


def find_runs(results: Path, problems: list[str] | None = None, progress: bool = False) -> list[Run]:
    """Every run folder under `results` (found by ResultsLayout), in path order. An unreadable one
    raises IqaError, or is left out with its one-line reason appended to `problems` when given."""
    from tqdm.auto import tqdm

    from iqabench.layout import ResultsLayout

    out = []
    dirs = ResultsLayout(results).run_dirs()
    for run_dir in tqdm(dirs, desc="reading runs", unit="run", disable=None if progress else True):
        try:
            out.append(read_run(run_dir, results))
        except IqaError as exc:
            if problems is None:
                raise
            problems.append(str(exc))
    return out


def _predictions(run: Run) -> Predictions:
    """The run's scored images from predictions.csv (the merged view `score` writes), else from the
    append-only predictions*.jsonl. A record with an error or a non-finite score is a failure."""
    path = run.run_dir / "predictions.csv"
    if path.exists():
        records = _csv_records(path)
    elif prediction_files(run.run_dir):
        ids = [str(r["id"]) for r in run.inputs()]
        records = run.records(RecordProblems())
        records = {i: records[i] for i in (ids or records) if i in records}
    else:
        raise IqaError(f"{run.run_dir}: no predictions (predictions.csv or predictions*.jsonl)")
    input_labels = {str(r["id"]): r.get("label") for r in run.inputs()}
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
                raise IqaError(f"{path}: missing column(s) {', '.join(sorted(missing))}; "
                               "rewrite it with `iqabench score RUN_DIR`")
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
