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
from iqabench.api import RunContext, SampleSource
from iqabench.config import RunConfig
from iqabench.devices import resolve_device
from iqabench.errors import IqaError, NotAvailable, one_line
from iqabench.lifecycle import Lifecycle
from iqabench.plan import RunPlan, build_run_plan
from iqabench.prefetch import decoded_batches
from iqabench.runs import IDENTITY_KEYS, inputs_hash
from iqabench.score import finish, finished_metrics
from iqabench.store import RunStore

__all__ = ["RunConfig", "RunResult", "run"]

# A run stops when this many images in a row fail with the same error: a systematic problem.
MAX_SAME_FAILURES_IN_A_ROW = 25
# How often (at most) a rank of a data-parallel run looks for a failure flag of another rank.
PEER_POLL_SECONDS = 0.5


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    metrics: dict | None  # None on ranks other than 0
    scored_now: int


def run(cfg: RunConfig, on_log: Callable[[str], None] = print) -> RunResult:
    world = parallel.current(cfg.dist_timeout_minutes, rendezvous=Path(cfg.results))
    device = parallel.device_for(world, resolve_device(cfg.device))
    with world.main_first():  # rank 0 builds the dataset and records the split; the others read them
        plan = build_run_plan(cfg)
    if plan.split_note and world.is_main:  # before any refusal: the split is part of what was asked
        on_log(plan.split_note)
    # Nothing is written to a run folder before the method is known to be ready: a missing checkpoint
    # is never a finished run (its absence is part of the run's identity), and a new run has
    # everything left to score, so its method is checked, built and set up first.
    fresh = not plan.run_dir.exists()
    check_plan(plan, check_method=fresh)
    if not fresh and world.size == 1:  # a finished run is shown as it stands: nothing written, so a
        manifest = _manifest(plan, device, world.size)  # read-only archive of results can be shown
        shown = finished_metrics(plan.run_dir, manifest, cfg.n_boot, cfg.seed, cfg.retry_failed)
        if shown is not None:
            _announce(plan, 0, on_log)
            return RunResult(plan.run_dir, shown, 0)
    ready = None
    if fresh and world.size == 1:  # ranks of a data-parallel run set up together, after their barrier
        ready = _ready_method(plan, device)
    try:
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
                _announce(plan, len(todo), on_log)
            life = None
            ok, error = True, None
            scored_now = 0
            if todo:
                # only now: a finished run recomputes its metrics without its method or weights
                life = ready if ready is not None else _build_method(plan, device)
            try:
                if todo and world.size > 1 and _has_prepare(life.method):
                    _prepare_own_shard(life, plan, store, world)
                if mine:
                    scored_now = _score_all(life, plan, mine, store, world)
            except _PeerFailed:
                pass  # another rank failed: stop here and report its error below
            except BaseException as exc:  # noqa: BLE001 - re-raised below after telling the other ranks
                ok, error = False, exc
                if world.size > 1:
                    store.flag_failure(one_line(exc, 500, typed=True))
            finally:
                if life is not None:
                    life.teardown()
                if mine and life is not None:  # what this attempt cost (judge calls, ...), kept across resumes
                    # after setup, the fingerprint also names the loaded model (e.g. its resolved snapshot)
                    method = life.method
                    try:
                        store.append_runtime({"rank": world.rank, "world_size": world.size, "finished": provenance.now(),
                                              "scored": scored_now, "ok": ok, "fingerprint": method.fingerprint(),
                                              "torch_threads": provenance.torch_threads(),
                                              **(method.runtime_stats() or {})})
                    except IqaError:
                        if error is None:  # a full disk: the scoring error, if any, is the one to report
                            raise
            failed_ranks = world.agree_ok(ok)  # also waits until every rank has saved its last record
            _raise_failures(error, failed_ranks, store, world)
            if not world.is_main:
                return RunResult(plan.run_dir, None, scored_now)
            # a rerun that scored nothing answers from metrics.json when it still describes the records
            result_metrics = finish(store, n_boot=cfg.n_boot, seed=cfg.seed, reuse=scored_now == 0)
        return RunResult(plan.run_dir, result_metrics, scored_now)
    finally:
        if ready is not None:  # set up but never used (nothing left to score, or the store failed)
            ready.teardown()


def _announce(plan: RunPlan, n_todo: int, on_log: Callable[[str], None]) -> None:
    where = f"{plan.dataset_name}/{plan.split_name}/{plan.part}" if plan.labelled \
        else f"{plan.view.source} (no labels: scores only)"
    on_log(f"{plan.label} on {where}: {len(plan.ids)} images, "
           f"{len(plan.ids) - n_todo} already saved, {n_todo} to score -> {plan.run_dir}")
    if plan.config.limit is not None:
        print(f"iqabench: WARNING: --limit {plan.config.limit}: a smoke test on {len(plan.ids)} images, not a result "
              "(its run folder is its own; reports keep it out of the main table)", file=sys.stderr)


def _manifest(plan: RunPlan, device: str, world_size: int) -> dict:
    cfg, cls = plan.config, plan.method.cls
    if plan.labelled:
        card = plan.view.card
        data = {"dataset_folder": str(plan.view.folder), "split_hash": plan.view.split.hash, "labels": True,
                "label_name": card.label_name, "label_range": card.score_range,
                "label_higher_better": card.higher_better, "label_method": card.label_method}
    else:  # the user's own images: what was scored is the folder's content (inputs.json)
        data = {"dataset_folder": str(Path(plan.view.folder).resolve()), "images_folder": str(plan.view.source),
                "split_hash": plan.identity["images"], "labels": False, "label_name": None, "label_range": None,
                "label_higher_better": None}
        refs = plan.view.references if cls.info.needs_reference else None
        if refs is not None:  # -r: which folder (or file) the references came from
            data["references"] = str(refs.given)
    return {
        "method": cls.name, "method_label": plan.label, "method_kind": cls.info.kind,
        "method_full_reference": cls.info.needs_reference,
        "options": plan.method.options.model_dump(mode="json"),
        "dataset": plan.dataset_name, "split": plan.split_name, "part": plan.part, **data,
        "split_chosen_by": plan.split_note,  # None: --split or the card's default
        "n_images": len(plan.ids), "limit": cfg.limit,
        "device": device, "batch_size": cfg.batch_size, "seed": cfg.seed, "world_size": world_size,
        "checkpoint": plan.checkpoint and plan.checkpoint.describe(),
        "method_higher_better": cls.info.higher_better, "fingerprint": plan.identity["fingerprint"],
        "identity": plan.identity, "key": plan.key,
        "inputs_hash": inputs_hash(plan.inputs), "started": provenance.now(), **provenance.environment(),
    }


def _build_method(plan: RunPlan, device: str) -> Lifecycle:
    """Check that the method can run here and that its checkpoint exists, then construct it (not set up)."""
    plan.method.require_available()
    _check_checkpoint(plan)

    def load_checkpoint(method) -> None:
        if plan.checkpoint is not None and plan.checkpoint.kind != "external":
            method.load_checkpoint(plan.checkpoint.path)

    return Lifecycle(plan.method.build(), _context(plan, device), after_setup=load_checkpoint)


def check_plan(plan: RunPlan, check_method: bool = True) -> None:
    """What a run checks before it writes anything: the method can run here (`check_method`) and its
    checkpoint is complete; one line each, or the method's one line when both are missing."""
    if check_method:
        try:
            plan.method.require_available()
        except NotAvailable:
            help_line = _missing_checkpoint_help(plan)  # the weights and the checkpoint are both missing
            if help_line:
                raise IqaError(help_line) from None
            raise
    _check_checkpoint(plan)


def ready_method(plan: RunPlan, device: str) -> Lifecycle:
    """The plan's method checked, built and set up as a run would have it (its checkpoint loaded), for
    callers that score outside a run (figures); the caller tears it down."""
    check_plan(plan)
    return _ready_method(plan, device)


def _context(plan: RunPlan, device: str) -> RunContext:
    prompt_source = None
    if plan.method.cls.wants_prompt_source and plan.labelled:
        # labelled images a method conditions on (PromptIQA's image-score prompt): the split's train
        # part, never the part being scored; an undecodable prompt image stops the run
        train_ids = plan.view.split.ids("train") if "train" in plan.view.split.parts else []
        prompt_source = SampleSource(train_ids, _loader(plan)) if train_ids else None
    return RunContext(device=device, batch_size=plan.config.batch_size,
                      dataset=plan.view.card.name if plan.labelled else None, cache_dir=plan.layout.cache_dir(),
                      progress=plan.config.progress, prompt_source=prompt_source)


def _ready_method(plan: RunPlan, device: str) -> Lifecycle:
    """The method built and set up (checkpoint loaded), or its one-line error before anything is written."""
    life = _build_method(plan, device)
    try:
        life.setup()
    except BaseException:
        life.teardown()
        raise
    return life


def _check_checkpoint(plan: RunPlan) -> None:
    """A trainable method's checkpoint is complete and finished, or one line saying what to run."""
    ckpt = plan.checkpoint
    if ckpt is None:
        return
    if ckpt.files is None:
        if ckpt.kind == "given":
            raise IqaError(f"{ckpt.path}: not a complete checkpoint (needs {', '.join(plan.method.cls.checkpoint_files())})")
        raise IqaError(_missing_checkpoint_help(plan) or
                       f"{ckpt.path}: no trained checkpoint; train it first: {train_command(plan)}")
    if ckpt.kind == "trained" and not (ckpt.path / "train_summary.json").is_file():
        raise IqaError(f"{ckpt.path}: training did not finish (no train_summary.json); resume it with the "
                       f"same command: {train_command(plan)}")


def _missing_checkpoint_help(plan: RunPlan) -> str | None:
    """The method's own line for a run with no trained checkpoint (e.g. naming the missing base weights
    too, and the ways on), or None: the engine's."""
    ckpt = plan.checkpoint
    if ckpt is None or ckpt.kind != "trained" or ckpt.files is not None:
        return None
    advice = plan.method.cls.missing_checkpoint_help(plan.method.options, train_command(plan))
    return f"{ckpt.path}: {advice}" if advice else None


def train_command(plan: RunPlan) -> str:
    """The `iqabench train` command that makes the checkpoint this run looks for: the user's own
    folders, dataset, split, options, seed, limit, device and batch size (defaults left out)."""
    import json
    import shlex

    from iqabench.layout import DEFAULT_DATA_ROOT, DEFAULT_RESULTS

    cfg = plan.config
    trained = (plan.checkpoint.trained_on if plan.checkpoint else None) or {}
    words = ["iqabench", "train", "--method", cfg.method,
             "--dataset", cfg.train_dataset or cfg.dataset or trained.get("dataset")]
    split = cfg.train_split if (cfg.train_dataset or cfg.train_split) else cfg.split
    if split:
        words += ["--split", split]
    for key, value in cfg.options.items():
        words += ["-o", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    if cfg.seed != RunConfig.seed:
        words += ["--seed", str(cfg.seed)]
    if trained.get("limit") is not None:
        words += ["--limit", str(trained["limit"])]
    if cfg.device != RunConfig.device:
        words += ["--device", cfg.device]
    if cfg.batch_size != RunConfig.batch_size:
        words += ["--batch-size", str(cfg.batch_size)]
    if cfg.accept_out_of_range:
        words.append("--accept-out-of-range")
    words += _plugin_flags(plan.method.cls)  # global options: accepted after the command name too
    if Path(cfg.results) != DEFAULT_RESULTS:
        words += ["--results", str(cfg.results)]
    if Path(cfg.data_root) != DEFAULT_DATA_ROOT:
        words += ["--data-root", str(cfg.data_root)]
    return shlex.join(str(w) for w in words)


def _plugin_flags(cls) -> list[str]:
    """--plugin FILE when the method came from a plugin file the user named (entry points need none)."""
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if cls.__module__.startswith("iqabench_plugin_") and path:
        return ["--plugin", path]
    return []


def _has_prepare(method) -> bool:
    from iqabench.api import Method

    return type(method).prepare is not Method.prepare


def _loader(plan: RunPlan):
    return plan.view.loader(with_reference=plan.method.cls.info.needs_reference)


def _prepare_own_shard(life: Lifecycle, plan: RunPlan, store, world) -> None:
    """Data-parallel: each rank first runs the method's dataset-wide pass on its own shard
    (e.g. Dog-IQA's segmentation, cached), so the later pass over all images finds it done.

    Every rank reaches the one collective below exactly once, failed or not."""
    error = None
    try:
        life.setup().prepare(SampleSource(world.shard(plan.ids), _loader(plan), on_failure=lambda i, r: None))
    except BaseException as exc:  # noqa: BLE001 - re-raised below after telling the other ranks
        error = exc
        store.flag_failure(one_line(exc, 500, typed=True))
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


def _score_all(life: Lifecycle, plan: RunPlan, mine, store, world) -> int:
    from tqdm import tqdm

    cfg = plan.config
    labels = {r["id"]: r["label"] for r in plan.inputs}
    method = life.setup()
    load = _loader(plan)
    # an image that fails to decode here is skipped by the pass and recorded with its reason
    # when the scoring loop below reaches it, so nothing is dropped
    method.prepare(SampleSource(plan.ids, load, on_failure=lambda i, r: None))
    bar = tqdm(total=len(mine), desc=f"{method.name} rank{world.rank}" if world.size > 1 else method.name,
               unit="img", disable=not cfg.progress, position=world.rank, dynamic_ncols=True)
    streak: list[str] = []
    count = 0
    last_look = time.monotonic()
    # the next batches are decoded by cfg.workers threads while this one is scored (order kept)
    for batch_ids, entries in decoded_batches(mine, cfg.batch_size, load, workers=cfg.workers):
        if world.size > 1 and time.monotonic() - last_look > PEER_POLL_SECONDS:
            last_look = time.monotonic()
            if store.failed_ranks():
                bar.close()
                raise _PeerFailed()
        samples = []
        for sid, entry in zip(batch_ids, entries):
            if isinstance(entry, Exception):  # every undecodable image is a recorded failure
                _save(store, method, sid, None, labels[sid], f"decode: {entry}", None, streak)
            else:
                samples.append(entry)
        if samples:
            t0 = time.perf_counter()
            outcome = _score_batch(method, samples)
            per_image = (time.perf_counter() - t0) / len(samples)
            for sample, (score, err) in zip(samples, outcome):
                _save(store, method, sample.id, score, labels[sample.id], err, per_image, streak)
        store.commit()  # group commit: one fsync per batch at most every COMMIT_SECONDS
        count += len(batch_ids)
        bar.update(len(batch_ids))
        if len(streak) >= MAX_SAME_FAILURES_IN_A_ROW and len(set(streak)) == 1:
            bar.close()
            raise IqaError(f"stopping: the last {len(streak)} images all failed with: {streak[0]} "
                           "(saved predictions are kept; fix the cause and rerun to resume)")
    bar.close()
    store.commit(force=True)  # every record durable before the run reports them saved
    return count


class _PeerFailed(Exception):
    """Another rank flagged a failure: this rank stops between two batches."""


def _score_batch(method, samples) -> list[tuple[float | None, str | None]]:
    """Score a batch; if it raises, score image by image so the failure is pinned to one image."""
    try:
        scores = list(method.score(samples))
        if len(scores) != len(samples):
            raise IqaError(f"method {method.name} returned {len(scores)} scores for {len(samples)} images")
        declared = getattr(method.info, "score_range", None)
        return [_check(s, declared) for s in scores]
    except IqaError:
        raise
    except Exception as exc:  # noqa: BLE001 - isolated below
        if len(samples) == 1:
            return [(None, f"score: {type(exc).__name__}: {exc}")]
        return [_score_batch(method, [s])[0] for s in samples]


def _check(score, declared: tuple[float, float] | None = None) -> tuple[float | None, str | None]:
    """A finite float, inside the method's declared `score_range` if it declares one. Outside it is
    that image's failure (kind "range"), not a warning: a table's correlations use only scores the
    method stands behind, n_failed shows the broken claim, and the same-error streak stops a run
    whose every score is out of range. A rounding error of a millionth of the range is let through."""
    try:
        value = float(score)
    except (TypeError, ValueError):
        return None, f"score: not a number ({score!r})"
    if not math.isfinite(value):
        return None, f"score: non-finite ({value})"
    if declared is not None:
        lo, hi = declared
        slack = 1e-6 * (hi - lo) if math.isfinite(hi - lo) else 0.0
        if not lo - slack <= value <= hi + slack:
            return None, f"range: {value:.6g} outside the method's declared score_range [{lo:g}, {hi:g}]"
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
