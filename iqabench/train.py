"""The training stage for any trainable method: fit on train, select on val, save, resume.

A checkpoint folder holds one fit of exactly one thing (method options except schedule-only
ones, seed, --limit, training dataset, split name and hash: see plan.training_key), described once
in train_manifest.json; every attempt (first, resumed, extended) is a line of train_attempts.jsonl.
--batch-size is the training batch (unset: the method's recipe) and part of that key; the resolved
number is what the manifest records. Methods that train by epochs run through iqabench.training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from iqabench import io, provenance, training
from iqabench.api import RunContext, SampleSource
from iqabench.devices import resolve_device
from iqabench.errors import Busy, IqaError
from iqabench.lifecycle import Lifecycle
from iqabench.plan import TrainConfig, TrainPlan, build_train_plan

__all__ = ["TrainConfig", "summary_lines", "train"]


def train(cfg: TrainConfig, on_log: Callable[[str], None] = print) -> tuple[Path, dict]:
    import filelock

    device = resolve_device(cfg.device)
    plan = build_train_plan(cfg)  # checks that the method can run here before reading the dataset
    workdir = plan.workdir
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IqaError(f"{workdir}: cannot create the checkpoint folder ({exc.strerror or exc})") from None
    failures_path = workdir / "failures.jsonl"

    def record_failure(sample_id: str, reason: str) -> None:
        io.append_jsonl(failures_path, {"id": sample_id, "error": reason})

    lock = filelock.FileLock(str(workdir / ".lock"), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise Busy(f"{workdir}: another process is training this configuration") from None
    try:
        manifest = _manifest(plan)
        _check_or_write_manifest(workdir / "train_manifest.json", manifest)
        batch = plan.identity.get("batch_size")  # resolved: --batch-size, else the method's recipe
        attempt = {"started": provenance.now(), "command": provenance.command_line(), "seed": cfg.seed,
                   "limit": cfg.limit, "options": plan.method.options.model_dump(mode="json"),
                   "device": device, "batch_size": batch, "git_commit": manifest.get("git_commit")}
        io.append_jsonl(workdir / "train_attempts.jsonl", {**attempt, "event": "started"})
        (workdir / "train_summary.json").unlink(missing_ok=True)  # present only once training has finished
        # trainers show bars only on a terminal, and never with --no-progress
        ctx = RunContext(device=device, batch_size=batch, dataset=plan.view.name,
                         cache_dir=plan.layout.cache_dir(), progress=cfg.progress)
        life = Lifecycle(plan.method.build(), ctx)
        if plan.split_note:
            on_log(plan.split_note)
        load = plan.view.loader(with_reference=plan.method.cls.info.needs_reference)
        try:
            method = life.setup()  # loads the weights: a missing model is reported before training is announced
            on_log(f"training {plan.method.label()} on {plan.view.name}/{plan.view.split.name}: "
                   f"{len(plan.train_ids)} train, {len(plan.val_ids)} val -> {workdir}")
            if plan.val_sets is not None:
                on_log("mix: " + ", ".join(f"{m} {len(plan.train_groups[m])} train, {len(plan.val_sets[m])} val"
                                           for m in plan.val_sets) + "; selected on the mean of the members' val")
            if cfg.limit is not None:
                on_log(f"WARNING: --limit {cfg.limit}: a smoke test, not a result (its checkpoint folder is its own)")
            train_source = SampleSource(plan.train_ids, load, record_failure, groups=plan.train_groups)
            val_source = SampleSource(plan.val_ids, load, record_failure)
            if plan.val_sets is not None:  # a mix: validated on each member, selected on their mean
                val_source = {m: SampleSource(ids, load, record_failure) for m, ids in plan.val_sets.items()}
            if isinstance(method, training.EpochTrainable):
                summary = training.fit(method, train_source, val_source, workdir, cfg.seed, on_log=on_log,
                                       progress=cfg.progress)
            else:
                summary = method.fit(train_source, val_source, workdir, cfg.seed)
        finally:
            life.teardown()
        # an image that fails is met again every epoch and on every resume: count it once
        n_failed = len({r["id"] for r in io.JsonlLog(failures_path).read(on_bad=lambda n, r: None)})
        summary = {**(summary or {}), "n_failed_images": n_failed, "finished": provenance.now()}
        io.write_json_atomic(workdir / "train_summary.json", summary)
        io.append_jsonl(workdir / "train_attempts.jsonl", {**attempt, "event": "finished", "finished": summary["finished"]})
        return workdir, summary
    finally:
        lock.release()


def _manifest(plan: TrainPlan) -> dict:
    cfg = plan.config
    return {"method": plan.method.name, "method_label": plan.method.label(),
            "options": plan.method.options.model_dump(mode="json"), "dataset": plan.view.name,
            "split": plan.view.split.name, "split_hash": plan.view.split.hash, "n_train": len(plan.train_ids),
            "n_val": len(plan.val_ids), "split_chosen_by": plan.split_note, "seed": cfg.seed, "limit": cfg.limit,
            **({"members": [{**m, "n_train": len(plan.train_groups[m["dataset"]]),
                             "n_val": len(plan.val_sets[m["dataset"]])} for m in plan.identity["members"]]}
               if plan.val_sets is not None else {}),
            "batch_size": plan.identity.get("batch_size"), "identity": plan.identity,
            "created": provenance.now(), **provenance.environment()}


def _check_or_write_manifest(path: Path, manifest: dict) -> None:
    """Written once: a checkpoint folder never changes what it claims to hold."""
    if path.exists():
        old = io.read_json(path, "training manifest")
        if old.get("identity") != manifest["identity"]:
            raise IqaError(f"{path}: this checkpoint folder holds another training "
                           f"(manifest identity differs); use another --results folder")
        return
    io.write_json_atomic(path, manifest)


def summary_lines(workdir: Path, summary: dict) -> list[str]:
    """A finished training in a few lines: what was selected, its val scores, where it is.
    The full summary (grid or per-epoch history) is train_summary.json in the checkpoint folder."""
    import math

    def fmt(value) -> str:
        return "n/a" if not isinstance(value, (int, float)) or not math.isfinite(value) else f"{value:.4f}"

    chosen = []
    if summary.get("best_epoch") is not None:
        text = f"best epoch {summary['best_epoch']}"
        if summary.get("epochs_run") is not None:
            text += f" of {summary['epochs_run']} run"
        if summary.get("stopped"):
            text += f" (stopped: {str(summary['stopped']).replace('_', ' ')})"
        chosen.append(text)
    selected = summary.get("selected")
    if isinstance(selected, dict) and selected:
        chosen.append("selected " + ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                                              for k, v in selected.items()))
    best = summary.get("best_val") if isinstance(summary.get("best_val"), dict) else {}
    from iqabench.metrics import label

    # the trainers' val_plcc is Pearson on the raw predictions (no logistic fit on the val part)
    lines = [f"trained: {'; '.join(chosen) or 'done'}",
             f"val {label('srcc')} {fmt(best.get('val_srcc'))}  {label('plcc_raw')} {fmt(best.get('val_plcc'))}"
             + (f"  (selected by {summary['criterion']}" if summary.get("criterion") else "")
             + (f", the mean over {', '.join(summary['selected_on_mean_of'])})" if summary.get("selected_on_mean_of")
                else ")" if summary.get("criterion") else "")]
    if summary.get("n_failed_images"):
        failures = Path(workdir) / "failures.jsonl"
        lines.append(f"{summary['n_failed_images']} image(s) could not be used (listed in {failures})")
    lines.append(f"checkpoint: {workdir}")
    lines.append(f"full summary: {Path(workdir) / 'train_summary.json'}")
    return lines
