"""Metrics of a run folder, from its saved records only: no model, no weights, no dataset files.

`iqabench score RUN_DIR` and the end of every `run` both come here, so a finished run's numbers
can be recomputed (e.g. after a metrics fix) long after its model is gone.
"""
from __future__ import annotations

import json
from pathlib import Path

from iqabench import metrics as metrics_mod
from iqabench import provenance
from iqabench.errors import IqaError
from iqabench.store import RecordProblems, RunStore

DEFAULT_N_BOOT = 1000


def score_run(run_dir: Path, n_boot: int = DEFAULT_N_BOOT, seed: int | None = None) -> dict:
    """Recompute and write metrics.json and predictions.csv of a run folder; returns the metrics."""
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise IqaError(f"{run_dir}: not a run folder (no manifest.json)")
    store = RunStore(run_dir)
    with store:
        return finish(store, n_boot=n_boot, seed=seed)


def finish(store: RunStore, n_boot: int = DEFAULT_N_BOOT, seed: int | None = None) -> dict:
    import numpy as np

    manifest = store.manifest()
    inputs = store.inputs()
    ids = [r["id"] for r in inputs]
    labelled = manifest.get("labels", True) is not False
    problems = RecordProblems()
    records = store.read_records(ids, problems)
    scored = [i for i in ids if i in records and records[i].get("error") is None]
    failed = [i for i in ids if i in records and records[i].get("error") is not None]
    missing = [i for i in ids if i not in records]
    pred = np.array([records[i]["score"] for i in scored], dtype=np.float64)
    seed = manifest.get("seed", 0) if seed is None else seed
    if labelled:
        labels = {r["id"]: float(r["label"]) for r in inputs}
        lab = np.array([labels[i] for i in scored], dtype=np.float64)
        computed = metrics_mod.compute(pred, lab, method_higher_better=manifest["method_higher_better"],
                                       dataset_higher_better=manifest["label_higher_better"], n_boot=n_boot, seed=seed)
        computed["plcc_note"] = "plcc is after the VQEG 4-parameter logistic fit; plcc_raw has no fit"
    else:  # the user's own images: scores only; a correlation needs labels, so none is computed
        computed = {"labels": False, "note": "no labels: per-image scores only (predictions.csv), no correlations",
                    "score_summary": _summary(pred)}
    failure_kinds: dict[str, int] = {}
    for i in failed:
        kind = records[i]["error"].split(":", 1)[0]
        failure_kinds[kind] = failure_kinds.get(kind, 0) + 1
    seconds = [records[i]["seconds"] for i in scored if "seconds" in records[i]]
    attempts = store.read_runtime()
    result = {
        "method": manifest["method"], "method_label": manifest["method_label"], "dataset": manifest["dataset"],
        "split": manifest["split"], "split_hash": manifest["split_hash"], "part": manifest["part"],
        "limit": manifest.get("limit"), "checkpoint": manifest.get("checkpoint"),
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
    }
    store.write_merged_csv(ids, records)
    store.write_metrics(result)
    return result


def _summary(scores) -> dict | None:
    """Describes the scores themselves (no labels to compare them with)."""
    import numpy as np

    if not len(scores):
        return None
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "min": float(np.min(scores)),
            "median": float(np.median(scores)), "max": float(np.max(scores))}
