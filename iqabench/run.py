"""The runner: score one split part of one dataset with one method, resumably.

Nothing is scored twice: records already saved (by any rank, any earlier attempt) are skipped.
Every image ends as a record, scored or failed with its reason; metrics come from the records.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from iqabench import metrics as metrics_mod
from iqabench import parallel, provenance, resolve
from iqabench.api import SampleSource, TrainableMethod, stable_hash
from iqabench.errors import IqaError
from iqabench.store import RunStore, slug

SCHEMA_VERSION = 1
# A run stops when this many images in a row fail with the same error: a systematic problem.
MAX_SAME_FAILURES_IN_A_ROW = 25
# How often (at most) a rank of a data-parallel run looks for a failure flag of another rank.
PEER_POLL_SECONDS = 0.5


@dataclasses.dataclass
class RunConfig:
    method: str
    dataset: str
    split: str | None = None
    part: str = "test"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    data_root: Path = resolve.DEFAULT_DATA_ROOT
    results: Path = resolve.DEFAULT_RESULTS
    limit: int | None = None
    batch_size: int = 1
    device: str = "cpu"
    seed: int = 0
    checkpoint: Path | None = None
    retry_failed: bool = False
    progress: bool = True
    n_boot: int = 1000


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    metrics: dict | None  # None on ranks other than 0
    scored_now: int


def run(cfg: RunConfig, on_log: Callable[[str], None] = print) -> RunResult:
    world = parallel.current()
    device = parallel.device_for(world, cfg.device)
    cls, options = resolve.resolve_method(cfg.method, cfg.options)
    resolve.require_available(cls, options)
    with world.main_first():  # rank 0 builds the dataset and records the split; the others read them
        view = resolve.load_dataset(cfg.dataset, cfg.data_root, cfg.split, cfg.results)
    ids = view.split.ids(cfg.part)
    if cfg.limit is not None:
        ids = ids[: cfg.limit]
    if not ids:
        raise IqaError(f"{cfg.dataset} split {view.split.name} part {cfg.part!r} is empty")

    method = cls(options, device=device, batch_size=cfg.batch_size)
    method.card = view.card
    method.cache_dir = Path(cfg.results) / "cache"
    checkpoint_info = None
    if isinstance(method, TrainableMethod):
        ckpt = Path(cfg.checkpoint) if cfg.checkpoint else resolve.checkpoint_dir(cfg.results, view.card.name, view.split, cls, options)
        checkpoint_info = {"dir": str(ckpt), "files": _hash_files(ckpt, cls.checkpoint_files())}
        if checkpoint_info["files"] is not None and not cfg.checkpoint and not (ckpt / "train_summary.json").is_file():
            raise IqaError(f"{ckpt}: training did not finish (no train_summary.json); rerun the same "
                           f"`iqabench train` command to resume it")
        if checkpoint_info["files"] is None:
            raise IqaError(f"{ckpt}: no trained checkpoint ({', '.join(cls.checkpoint_files())}); run "
                           f"`iqabench train --method {cfg.method} --dataset {cfg.dataset}` with the same options first")

    identity = {"fingerprint": method.fingerprint(), "dataset": view.card.name, "split": view.split.name,
                "split_hash": view.split.hash, "part": cfg.part, "limit": cfg.limit, "batch_size": cfg.batch_size,
                "checkpoint": checkpoint_info and checkpoint_info["files"], "schema_version": SCHEMA_VERSION}
    key = stable_hash(identity)
    run_dir = Path(cfg.results) / view.card.name / f"{view.split.name}-{cfg.part}" / f"{slug(resolve.slug_name(cls.name))}-{key}"
    label = resolve.method_label(cls, options)
    manifest = {
        "method": cls.name, "method_label": label, "method_kind": cls.info.kind, "options": options.model_dump(mode="json"),
        "dataset": view.card.name, "dataset_folder": str(view.folder), "split": view.split.name,
        "split_hash": view.split.hash, "part": cfg.part, "n_images": len(ids), "limit": cfg.limit,
        "device": device, "batch_size": cfg.batch_size, "seed": cfg.seed, "world_size": world.size,
        "checkpoint": checkpoint_info, "label_name": view.card.label_name, "label_range": view.card.score_range,
        "label_higher_better": view.card.higher_better, "method_higher_better": cls.info.higher_better,
        "fingerprint": identity["fingerprint"], "key": key, "schema_version": SCHEMA_VERSION,
        "started": provenance.now(), **provenance.environment(),
    }
    labels = view.labels()
    with RunStore(run_dir, world.rank, world.size) as store:
        with world.main_first():
            store.check_or_write_manifest(manifest, ("method", "dataset", "split_hash", "part", "key"))
            if world.is_main:
                store.clear_failure_flags()  # left by an earlier attempt
            done = store.read_records()
        world.barrier()  # every rank has read the same records before any rank appends: same shards
        todo = [i for i in ids if i not in done or (cfg.retry_failed and done[i].get("error"))]
        mine = world.shard(todo)
        if world.is_main:
            on_log(f"{label} on {view.card.name}/{view.split.name}/{cfg.part}: {len(ids)} images, "
                   f"{len(ids) - len(todo)} already saved, {len(todo)} to score -> {run_dir}")
        if todo and world.size > 1 and _has_prepare(method):
            _prepare_own_shard(method, checkpoint_info, view, ids, store, world)
        ok, error = True, None
        scored_now = 0
        try:
            if mine:
                scored_now = _score_all(method, checkpoint_info, view, ids, mine, labels, store, cfg, world)
        except _PeerFailed:
            pass  # another rank failed: stop here and report its error below
        except BaseException as exc:  # noqa: BLE001 - re-raised below after telling the other ranks
            ok, error = False, exc
            if world.size > 1:
                store.flag_failure(_one_line(exc))
        finally:
            method.teardown()
            if mine:  # what this attempt cost (judge calls, segmentations, ...), kept across resumes
                # after setup, the fingerprint also names the loaded model (e.g. its resolved snapshot)
                store.append_runtime({"rank": world.rank, "world_size": world.size, "finished": provenance.now(),
                                      "scored": scored_now, "ok": ok, "fingerprint": method.fingerprint(),
                                      **(method.runtime_stats() or {})})
        failed_ranks = world.agree_ok(ok)  # also waits until every rank has saved its last record
        _raise_failures(error, failed_ranks, store, world)
        if not world.is_main:
            return RunResult(run_dir, None, scored_now)
        records = store.read_records()
        result_metrics = _finish(store, manifest, ids, records, labels, cls, method, cfg, view)
    return RunResult(run_dir, result_metrics, scored_now)


def _has_prepare(method) -> bool:
    from iqabench.api import Method

    return type(method).prepare is not Method.prepare


def _ensure_setup(method, checkpoint_info) -> None:
    """setup() and the checkpoint, once per method object."""
    if getattr(method, "_iqabench_setup_done", False):
        return
    method.setup()
    if checkpoint_info is not None:
        method.load_checkpoint(Path(checkpoint_info["dir"]))
    method._iqabench_setup_done = True


def _prepare_own_shard(method, checkpoint_info, view, ids, store, world) -> None:
    """Data-parallel: each rank first runs the method's dataset-wide pass on its own shard
    (e.g. Dog-IQA's segmentation, cached), so the later pass over all images finds it done.

    Every rank reaches the one collective below exactly once, failed or not."""
    error = None
    try:
        _ensure_setup(method, checkpoint_info)
        method.prepare(SampleSource(world.shard(ids), view.loader(), on_failure=lambda i, r: None))
    except BaseException as exc:  # noqa: BLE001 - re-raised below after telling the other ranks
        error = exc
        store.flag_failure(_one_line(exc))
    failed = world.agree_ok(error is None)
    if error is not None or failed:
        method.teardown()
    _raise_failures(error, failed, store, world)


def _raise_failures(error, failed_ranks, store, world) -> None:
    """This rank's own error first; else one line naming every rank that failed and why."""
    if error is not None:
        raise error
    if failed_ranks:
        flags = store.failed_ranks()
        reasons = "; ".join(f"rank {r} failed: {flags.get(r, 'see its output')}" for r in failed_ranks)
        raise IqaError(f"{reasons} (rank {world.rank} stopped too; saved predictions are kept, rerun to resume)")


def _score_all(method, checkpoint_info, view, ids, mine, labels, store, cfg, world) -> int:
    from tqdm import tqdm

    _ensure_setup(method, checkpoint_info)
    load = view.loader()
    # an image that fails to decode here is skipped by the pass and recorded with its reason
    # when the scoring loop below reaches it, so nothing is dropped
    method.prepare(SampleSource(ids, load, on_failure=lambda i, r: None))
    bar = tqdm(total=len(mine), desc=f"{method.name} rank{world.rank}" if world.size > 1 else method.name,
               unit="img", disable=not cfg.progress, position=world.rank, dynamic_ncols=True)
    streak: list[str] = []
    count = 0
    last_look = time.monotonic()
    for start in range(0, len(mine), cfg.batch_size):
        if world.size > 1 and time.monotonic() - last_look > PEER_POLL_SECONDS:
            last_look = time.monotonic()
            if store.failed_ranks():
                bar.close()
                raise _PeerFailed()
        batch_ids = mine[start:start + cfg.batch_size]
        samples = []
        for sid in batch_ids:
            try:
                samples.append(load(sid))
            except Exception as exc:  # noqa: BLE001 - every undecodable image is a recorded failure
                _save(store, method, sid, None, labels[sid], f"decode: {exc}", None, streak)
        if samples:
            t0 = time.perf_counter()
            outcome = _score_batch(method, samples)
            per_image = (time.perf_counter() - t0) / len(samples)
            for sample, (score, err) in zip(samples, outcome):
                _save(store, method, sample.id, score, labels[sample.id], err, per_image, streak)
        count += len(batch_ids)
        bar.update(len(batch_ids))
        if len(streak) >= MAX_SAME_FAILURES_IN_A_ROW and len(set(streak)) == 1:
            bar.close()
            raise IqaError(f"stopping: the last {len(streak)} images all failed with: {streak[0]} "
                           "(saved predictions are kept; fix the cause and rerun to resume)")
    bar.close()
    return count


class _PeerFailed(Exception):
    """Another rank flagged a failure: this rank stops between two batches."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:500] if text else ''}"


def _score_batch(method, samples) -> list[tuple[float | None, str | None]]:
    """Score a batch; if it raises, score image by image so the failure is pinned to one image."""
    try:
        scores = list(method.score(samples))
        if len(scores) != len(samples):
            raise IqaError(f"method {method.name} returned {len(scores)} scores for {len(samples)} images")
        return [_check(s) for s in scores]
    except IqaError:
        raise
    except Exception as exc:  # noqa: BLE001 - isolated below
        if len(samples) == 1:
            return [(None, f"score: {type(exc).__name__}: {exc}")]
        return [_score_batch(method, [s])[0] for s in samples]


def _check(score) -> tuple[float | None, str | None]:
    try:
        value = float(score)
    except (TypeError, ValueError):
        return None, f"score: not a number ({score!r})"
    if not math.isfinite(value):
        return None, f"score: non-finite ({value})"
    return value, None


def _save(store, method, sid, score, label, error, seconds, streak) -> None:
    record = {"id": sid, "score": score, "label": label, "error": error}
    if seconds is not None:
        record["seconds"] = round(seconds, 6)
    record.update(method.sample_extras(sid) or {})
    store.append(record)
    if error is None:
        streak.clear()
    else:
        # the same cause on different files: compare the reason without the file name
        streak.append(error.rsplit(": ", 1)[-1][:200])


def _finish(store, manifest, ids, records, labels, cls, method, cfg, view) -> dict:
    import numpy as np

    scored = [i for i in ids if i in records and records[i].get("error") is None]
    failed = [i for i in ids if i in records and records[i].get("error") is not None]
    missing = [i for i in ids if i not in records]
    pred = np.array([records[i]["score"] for i in scored], dtype=np.float64)
    lab = np.array([labels[i] for i in scored], dtype=np.float64)
    computed = metrics_mod.compute(pred, lab, method_higher_better=cls.info.higher_better,
                                   dataset_higher_better=view.card.higher_better, n_boot=cfg.n_boot, seed=cfg.seed)
    failure_kinds: dict[str, int] = {}
    for i in failed:
        kind = records[i]["error"].split(":", 1)[0]
        failure_kinds[kind] = failure_kinds.get(kind, 0) + 1
    seconds = [records[i]["seconds"] for i in scored if "seconds" in records[i]]
    attempts = store.read_runtime()
    result = {
        "method": manifest["method"], "method_label": manifest["method_label"], "dataset": manifest["dataset"],
        "split": manifest["split"], "split_hash": manifest["split_hash"], "part": manifest["part"],
        "n": len(ids), "n_failed": len(failed), "n_missing": len(missing), **computed,
        "plcc_note": "plcc is after the VQEG 4-parameter logistic fit; plcc_raw has no fit",
        "failures_by_kind": failure_kinds,
        "seconds_per_image_mean": float(np.mean(seconds)) if seconds else None,
        # the latest attempt's method statistics; every attempt (and rank) is in runtime_attempts
        "runtime": attempts[-1] if attempts else {},
        "runtime_attempts": attempts,
        # scores from different model snapshots must not be mixed silently
        "model_identity_changed": len({json.dumps(a.get("fingerprint"), sort_keys=True, default=str) for a in attempts}) > 1,
        "status": "complete" if not missing else "partial",
        "run_dir": str(store.dir), "key": manifest["key"], "created": provenance.now(),
    }
    store.write_merged_csv(ids, records)
    store.write_metrics(result)
    return result


def _hash_files(folder: Path, names) -> dict[str, str] | None:
    import hashlib

    out = {}
    for name in names:
        path = Path(folder) / name
        if not path.is_file():
            return None
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return out
