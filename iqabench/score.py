"""Metrics of a run folder, from its saved records only: no model, no weights, no dataset files.

`iqabench score RUN_DIR` and the end of every `run` both come here, so a finished run's numbers
can be recomputed (e.g. after a metrics fix) long after its model is gone. `rescore_run` makes a
new run folder from a run's stored answer-word logits with other words or levels
(`iqabench score RUN_DIR --words ... | --levels ... --weights ...`). Files are read through
`iqabench.runs`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Sequence

from iqabench import metrics as metrics_mod
from iqabench import provenance, runs
from iqabench.errors import IqaError, environment_cause, one_line
from iqabench.runs import RecordProblems
from iqabench.store import RunStore

DEFAULT_N_BOOT = 1000


def score_run(run_dir: Path, n_boot: int = DEFAULT_N_BOOT, seed: int | None = None,
              on_log: Callable[[str], None] | None = None) -> dict:
    """Recompute and write metrics.json and predictions.csv of a run folder (always: this is how a
    user asks for fresh numbers); returns the metrics. A folder that cannot be written (a read-only
    archive) is scored all the same, its numbers returned and not written (`on_log` says so)."""
    run_dir = Path(run_dir)
    runs.read_run(run_dir)  # a folder that is not a run, or whose manifest is unreadable: one line
    store = RunStore(run_dir)
    try:
        with store:
            return finish(store, n_boot=n_boot, seed=seed)
    except IqaError as exc:
        if environment_cause(exc) is None:
            raise
        # no lock could be taken: nothing is written, so nothing can be torn by a writer elsewhere
        if on_log is not None:
            on_log(f"iqabench: note: {run_dir}: cannot write here ({one_line(exc, 160)}); "
                   "the metrics below are computed, not saved")
        return finish(store, n_boot=n_boot, seed=seed, write=False)


def finished_metrics(run_dir: Path, manifest: dict, n_boot: int, seed: int | None,
                     retry_failed: bool = False) -> dict | None:
    """The metrics of a run that is finished as it stands, read without writing anything (no lock, no
    attempt line): the same run (identity and inputs), every image recorded, metrics.json describing
    exactly these records (`stored_metrics`). None when anything is left to do or to check."""
    if not (Path(run_dir) / "metrics.json").is_file() or any(Path(run_dir).glob(".*.tmp")):
        return None  # (a temp file left by a killed writer is removed by the locked path)
    run = runs.read_run(run_dir)
    if any(run.manifest.get(k) != manifest.get(k) for k in (*runs.IDENTITY_KEYS, "inputs_hash")):
        return None  # the store's own checks say what differs
    stored = stored_metrics(run, n_boot, run.manifest["seed"] if seed is None else seed)
    if stored is None or stored.get("status") != "complete" or stored.get("n") != manifest.get("n_images"):
        return None
    if stored.get("n_missing") or stored.get("record_problems") or (retry_failed and stored.get("n_failed")):
        return None
    run.inputs()  # readable, and the images the manifest recorded (else one line, as on any resume)
    return stored


def records_stamp(run_dir: Path) -> dict[str, int]:
    """The size of every predictions file: the files are append-only, so equal sizes mean the same records."""
    return {p.name: p.stat().st_size for p in runs.prediction_files(run_dir)}


def stored_metrics(run: runs.Run, n_boot: int, seed: int) -> dict | None:
    """metrics.json as it stands when it still describes the run: written by this metrics version, from
    exactly the records on disk now, with the same bootstrap; else None (recompute)."""
    stored = run.metrics
    if not stored or stored.get("metrics_version") != metrics_mod.METRICS_VERSION:
        return None
    if stored.get("records_stamp") != records_stamp(run.run_dir) or stored.get("bootstrap_seed") != seed:
        return None
    if run.labelled and (stored.get("bootstrap") or {}).get("n") not in (None, n_boot):
        return None
    if not (run.run_dir / "predictions.csv").is_file():
        return None
    return {k: v for k, v in stored.items() if k != "schema_version"}  # as `finish` returns them


def finish(store: RunStore, n_boot: int = DEFAULT_N_BOOT, seed: int | None = None, reuse: bool = False,
           write: bool = True) -> dict:
    """Metrics of the run in `store`, written to metrics.json (and predictions.csv) unless not `write`.
    With `reuse` (a rerun of a finished run), a metrics.json that still describes the run (see
    `stored_metrics`) is returned as it is."""
    import numpy as np

    run = runs.read_run(store.dir)
    manifest = run.manifest
    if reuse:
        stored = stored_metrics(run, n_boot, manifest["seed"] if seed is None else seed)
        if stored is not None:
            return stored
    stamp = records_stamp(store.dir)  # before reading: a record appended meanwhile makes the stamp stale, not wrong
    inputs = run.inputs()
    ids = [r["id"] for r in inputs]
    labelled = run.labelled
    problems = RecordProblems()
    records = runs.read_records(store.dir, {r["id"]: r.get("label") for r in inputs}, problems)
    scored = [i for i in ids if i in records and records[i].get("error") is None]
    failed = [i for i in ids if i in records and records[i].get("error") is not None]
    missing = [i for i in ids if i not in records]
    pred = np.array([records[i]["score"] for i in scored], dtype=np.float64)
    seed = manifest["seed"] if seed is None else seed
    if labelled:
        labels = {r["id"]: float(r["label"]) for r in inputs}
        lab = np.array([labels[i] for i in scored], dtype=np.float64)
        ref_of = {r["id"]: r.get("ref") for r in inputs}
        computed = metrics_mod.compute(pred, lab, method_higher_better=manifest["method_higher_better"],
                                       dataset_higher_better=manifest["label_higher_better"], n_boot=n_boot, seed=seed,
                                       refs=[ref_of[i] for i in scored])
        computed["plcc_note"] = "plcc is after the VQEG 4-parameter logistic fit; plcc_raw has no fit"
    else:  # the user's own images: scores only; a correlation needs labels, so none is computed
        computed = {"labels": False, "note": "no labels: per-image scores only (predictions.csv), no correlations",
                    "score_summary": _summary(pred)}
    failure_kinds: dict[str, int] = {}
    for i in failed:
        kind = records[i]["error"].split(":", 1)[0]
        failure_kinds[kind] = failure_kinds.get(kind, 0) + 1
    seconds = [records[i]["seconds"] for i in scored if "seconds" in records[i]]
    attempts = run.runtime()
    result = {
        "method": manifest["method"], "method_label": manifest["method_label"], "dataset": manifest["dataset"],
        "split": manifest["split"], "split_hash": manifest["split_hash"], "part": manifest["part"],
        "limit": manifest["limit"], "checkpoint": manifest["checkpoint"],
        "n": len(ids), "n_scored": len(scored), "n_failed": len(failed), "n_missing": len(missing), **computed,
        "failures_by_kind": failure_kinds,
        "record_problems": problems.as_dict() if problems else None,
        "seconds_per_image_mean": float(np.mean(seconds)) if seconds else None,
        # the latest attempt's method statistics; every attempt (and rank) is in runtime_attempts
        "runtime": attempts[-1] if attempts else {},
        "runtime_attempts": attempts,
        # scores from different model snapshots must not be mixed silently
        "model_identity_changed": len({json.dumps(a.get("fingerprint"), sort_keys=True, default=str) for a in attempts}) > 1,
        # two disagreeing scores for one image: the run's numbers cannot be trusted as they stand
        "status": "inconsistent" if problems.conflicts else "complete" if not missing else "partial",
        "run_dir": str(store.dir), "key": manifest["key"], "bootstrap_seed": seed, "created": provenance.now(),
        "metrics_version": metrics_mod.METRICS_VERSION, "records_stamp": stamp,
    }
    if run.rescored_from:
        result["rescored_from"] = run.rescored_from
    if write:
        store.write_merged_csv(ids, records)
        store.write_metrics(result)
    return result


# -- re-scoring stored answer-word logits ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Rescoring:
    """Other answer words (positive vs negative) or rated levels with weights, for `rescore_run`."""

    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()

    def __post_init__(self):
        if bool(self.positive or self.negative) == bool(self.levels):
            raise IqaError("re-scoring needs either positive and negative words or levels with weights")
        if (self.positive or self.negative) and not (self.positive and self.negative):
            raise IqaError("re-scoring with words needs at least one positive and one negative word")
        if len(self.levels) != len(self.weights):
            raise IqaError(f"{len(self.levels)} level(s) but {len(self.weights)} weight(s)")

    @classmethod
    def words(cls, positive: Sequence[str], negative: Sequence[str]) -> "Rescoring":
        return cls(positive=tuple(positive), negative=tuple(negative))

    @classmethod
    def rated(cls, levels: Sequence[str], weights: Sequence[float]) -> "Rescoring":
        return cls(levels=tuple(levels), weights=tuple(float(w) for w in weights))

    def spec(self) -> dict:
        """How a re-scored run's manifest records it (part of its identity)."""
        if self.levels:
            return {"levels": list(self.levels), "weights": list(self.weights)}
        return {"positive": list(self.positive), "negative": list(self.negative)}

    def score(self, word_logits: dict[str, float]) -> float:
        from iqabench.models.scoring.formulas import rescore_levels, rescore_words

        if self.levels:
            return rescore_levels(word_logits, self.levels, self.weights)
        return rescore_words(word_logits, self.positive, self.negative)


def rescore_run(run_dir: Path, rescoring: Rescoring, n_boot: int = DEFAULT_N_BOOT,
                seed: int | None = None) -> tuple[Path, dict]:
    """A new run folder beside `run_dir` whose scores come from its stored `word_logits` with other
    words or levels, and its metrics; the folder's manifest says what it was re-scored from. Rerunning
    it finds its folder and recomputes only what is missing. Returns (folder, metrics)."""
    from iqabench.layout import ResultsLayout

    source = runs.read_run(Path(run_dir))
    inputs = source.inputs()
    ids = [r["id"] for r in inputs]
    problems = RecordProblems()
    records = runs.read_records(source.run_dir, ids, problems)
    if problems.conflicts:
        raise IqaError(f"{source.run_dir}: {len(problems.conflicts)} image(s) have conflicting records; "
                       "score it (`iqabench score RUN_DIR`) and resolve them before re-scoring")
    spec = rescoring.spec()
    key = _rescored_key(source, spec)
    manifest = {key_: value for key_, value in source.manifest.items() if key_ != "schema_version"}
    manifest.update({
        "key": key, "fingerprint": {**source.fingerprint, "rescored": spec},
        "identity": {"rescored_from": source.key, "source_identity": source.manifest["identity"], **spec},
        "rescored_from": {"run_dir": str(source.run_dir), "key": source.key, **spec},
        "method_higher_better": True,  # a probability of the positive words, or an expected level weight
        "started": provenance.now()})
    target = ResultsLayout.sibling_run_dir(source.run_dir, source.method, key)
    attempt = {"started": provenance.now(), "command": provenance.command_line(), "rescored_from": str(source.run_dir)}
    with RunStore(target) as store:
        store.check_or_write_manifest(manifest, runs.IDENTITY_KEYS, attempt)
        store.check_or_write_inputs(inputs, runs.inputs_hash(inputs))
        done = store.read_records(ids)
        for sid in ids:
            rec = records.get(sid)
            if rec is None or sid in done:
                continue  # not scored in the source (the new run is partial too), or already re-scored
            if rec.get("error") is not None:
                store.append({"id": sid, "score": None, "label": rec.get("label"), "error": rec["error"]})
                continue
            logits = rec.get("word_logits")
            if not isinstance(logits, dict):
                raise IqaError(f"{source.run_dir}: the record of image {sid!r} has no stored word_logits "
                               f"(method {source.method} does not keep them); only runs that store answer-word "
                               "logits can be re-scored")
            try:
                score = rescoring.score(logits)
            except IqaError as exc:
                raise IqaError(f"{source.run_dir}: image {sid!r}: {exc}") from None
            store.append({**rec, "score": score})
        return target, finish(store, n_boot=n_boot, seed=seed)


def _rescored_key(source: runs.Run, spec: dict) -> str:
    """The key of a re-scored run: its source's key and the words or levels."""
    from iqabench.api import stable_hash

    return stable_hash({"rescored_from": source.key, **spec})


def _summary(scores) -> dict | None:
    """Describes the scores themselves (no labels to compare them with)."""
    import numpy as np

    if not len(scores):
        return None
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "min": float(np.min(scores)),
            "median": float(np.median(scores)), "max": float(np.max(scores))}
