"""The runner: score one split part of one dataset with one method, resumably.

Nothing is scored twice: records already saved (by any rank, any earlier attempt) are skipped.
Every image ends as a record, scored or failed with its reason; metrics come from the records.
The run plan is built first; the method is checked and built only when something is left to score.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Callable

from iqabench import parallel, provenance
from iqabench.devices import resolve_device
from iqabench.api import SampleSource
from iqabench.errors import IqaError
from iqabench.plan import RunConfig, RunPlan, build_run_plan, inputs_hash
from iqabench.score import finish
from iqabench.store import RunStore

__all__ = ["RunConfig", "RunResult", "run"]

# A run stops when this many images in a row fail with the same error: a systematic problem.
MAX_SAME_FAILURES_IN_A_ROW = 25
# How often (at most) a rank of a data-parallel run looks for a failure flag of another rank.
PEER_POLL_SECONDS = 0.5
# What identifies a run folder's content: a manifest differing in these is another run.
IDENTITY_KEYS = ("method", "dataset", "split_hash", "part", "key")


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    metrics: dict | None  # None on ranks other than 0
    scored_now: int


def run(cfg: RunConfig, on_log: Callable[[str], None] = print) -> RunResult:
    world = parallel.current()
    device = parallel.device_for(world, resolve_device(cfg.device))
    with world.main_first():  # rank 0 builds the dataset and records the split; the others read them
        plan = build_run_plan(cfg)
    manifest = _manifest(plan, device, world.size)
    attempt = {"started": provenance.now(), "command": provenance.command_line(), "seed": cfg.seed,
               "device": device, "world_size": world.size, "git_commit": manifest.get("git_commit")}
    with RunStore(plan.run_dir, world.rank, world.size) as store:
        with world.main_first():
            store.check_or_write_manifest(manifest, IDENTITY_KEYS, attempt)
            store.check_or_write_inputs(plan.inputs, inputs_hash(plan.inputs))
            if world.is_main:
                store.clear_failure_flags()  # left by an earlier attempt
            done = store.read_records(plan.ids)
        world.barrier()  # every rank has read the same records before any rank appends: same shards
        todo = [i for i in plan.ids if i not in done or (cfg.retry_failed and done[i].get("error"))]
        mine = world.shard(todo)
        if world.is_main:
            on_log(f"{plan.label} on {plan.view.card.name}/{plan.view.split.name}/{cfg.part}: {len(plan.ids)} images, "
                   f"{len(plan.ids) - len(todo)} already saved, {len(todo)} to score -> {plan.run_dir}")
            if cfg.limit is not None:
                print(f"iqabench: WARNING: --limit {cfg.limit}: a smoke test on {len(plan.ids)} images, not a result "
                      "(its run folder is its own; reports keep it out of the main table)", file=sys.stderr)
        method = None
        ok, error = True, None
        scored_now = 0
        if todo:
            # only now: a finished run recomputes its metrics without its method or weights
            method = _build_method(plan, device)
        try:
            if todo and world.size > 1 and _has_prepare(method):
                _prepare_own_shard(method, plan, store, world)
            if mine:
                scored_now = _score_all(method, plan, mine, store, world)
        except _PeerFailed:
            pass  # another rank failed: stop here and report its error below
        except BaseException as exc:  # noqa: BLE001 - re-raised below after telling the other ranks
            ok, error = False, exc
            if world.size > 1:
                store.flag_failure(_one_line(exc))
        finally:
            if method is not None:
                method.teardown()
            if mine and method is not None:  # what this attempt cost (judge calls, ...), kept across resumes
                # after setup, the fingerprint also names the loaded model (e.g. its resolved snapshot)
                store.append_runtime({"rank": world.rank, "world_size": world.size, "finished": provenance.now(),
                                      "scored": scored_now, "ok": ok, "fingerprint": method.fingerprint(),
                                      **(method.runtime_stats() or {})})
        failed_ranks = world.agree_ok(ok)  # also waits until every rank has saved its last record
        _raise_failures(error, failed_ranks, store, world)
        if not world.is_main:
            return RunResult(plan.run_dir, None, scored_now)
        result_metrics = finish(store, n_boot=cfg.n_boot, seed=cfg.seed)
    return RunResult(plan.run_dir, result_metrics, scored_now)


def _manifest(plan: RunPlan, device: str, world_size: int) -> dict:
    cfg, card, cls = plan.config, plan.view.card, plan.method.cls
    return {
        "method": cls.name, "method_label": plan.label, "method_kind": cls.info.kind,
        "options": plan.method.options.model_dump(mode="json"),
        "dataset": card.name, "dataset_folder": str(plan.view.folder), "split": plan.view.split.name,
        "split_hash": plan.view.split.hash, "part": cfg.part, "n_images": len(plan.ids), "limit": cfg.limit,
        "device": device, "batch_size": cfg.batch_size, "seed": cfg.seed, "world_size": world_size,
        "checkpoint": plan.checkpoint and plan.checkpoint.describe(), "label_name": card.label_name,
        "label_range": card.score_range, "label_higher_better": card.higher_better,
        "method_higher_better": cls.info.higher_better, "fingerprint": plan.identity["fingerprint"],
        "identity": plan.identity, "key": plan.key, "schema_version": plan.identity["schema_version"],
        "inputs_hash": inputs_hash(plan.inputs), "started": provenance.now(), **provenance.environment(),
    }


def _build_method(plan: RunPlan, device: str):
    """Check that the method can run here and that its checkpoint exists, then construct it."""
    plan.method.require_available()
    ckpt = plan.checkpoint
    if ckpt is not None and ckpt.files is None:
        if ckpt.kind == "given":
            raise IqaError(f"{ckpt.path}: not a complete checkpoint (needs {', '.join(plan.method.cls.checkpoint_files())})")
        cfg = plan.config
        train_on = ckpt.trained_on or {}
        hint = f"iqabench train --method {cfg.method} --dataset {train_on.get('dataset', cfg.dataset)} --split {train_on.get('split')}"
        hint += "".join(f" -o {k}={v}" for k, v in cfg.options.items())
        hint += f" --seed {cfg.seed}" + (f" --limit {cfg.limit}" if cfg.limit is not None else "")
        raise IqaError(f"{ckpt.path}: no trained checkpoint; train it first: {hint}")
    if ckpt is not None and ckpt.kind == "trained" and not (ckpt.path / "train_summary.json").is_file():
        raise IqaError(f"{ckpt.path}: training did not finish (no train_summary.json); rerun the same "
                       "`iqabench train` command to resume it")
    return plan.method.build(device, plan.config.batch_size, plan.view.card.name, plan.layout.cache_dir())


def _has_prepare(method) -> bool:
    from iqabench.api import Method

    return type(method).prepare is not Method.prepare


def _ensure_setup(method, plan: RunPlan) -> None:
    """setup() and the checkpoint, once per method object."""
    if getattr(method, "_iqabench_setup_done", False):
        return
    method.setup()
    if plan.checkpoint is not None and plan.checkpoint.kind != "external":
        method.load_checkpoint(plan.checkpoint.path)
    method._iqabench_setup_done = True


def _loader(plan: RunPlan):
    return plan.view.loader(with_reference=plan.method.cls.info.needs_reference)


def _prepare_own_shard(method, plan: RunPlan, store, world) -> None:
    """Data-parallel: each rank first runs the method's dataset-wide pass on its own shard
    (e.g. Dog-IQA's segmentation, cached), so the later pass over all images finds it done.

    Every rank reaches the one collective below exactly once, failed or not."""
    error = None
    try:
        _ensure_setup(method, plan)
        method.prepare(SampleSource(world.shard(plan.ids), _loader(plan), on_failure=lambda i, r: None))
    except BaseException as exc:  # noqa: BLE001 - re-raised below after telling the other ranks
        error = exc
        store.flag_failure(_one_line(exc))
    failed = world.agree_ok(error is None)
    _raise_failures(error, failed, store, world)


def _raise_failures(error, failed_ranks, store, world) -> None:
    """This rank's own error first; else one line naming every rank that failed and why."""
    if error is not None:
        raise error
    if failed_ranks:
        flags = store.failed_ranks()
        reasons = "; ".join(f"rank {r} failed: {flags.get(r, 'see its output')}" for r in failed_ranks)
        raise IqaError(f"{reasons} (rank {world.rank} stopped too; saved predictions are kept, rerun to resume)")


def _score_all(method, plan: RunPlan, mine, store, world) -> int:
    from tqdm import tqdm

    cfg = plan.config
    labels = {r["id"]: r["label"] for r in plan.inputs}
    _ensure_setup(method, plan)
    load = _loader(plan)
    # an image that fails to decode here is skipped by the pass and recorded with its reason
    # when the scoring loop below reaches it, so nothing is dropped
    method.prepare(SampleSource(plan.ids, load, on_failure=lambda i, r: None))
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
