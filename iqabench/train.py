"""The training stage for any trainable method: fit on train, select on val, save, resume."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from iqabench import provenance, resolve
from iqabench.api import SampleSource, TrainableMethod
from iqabench.errors import IqaError
from iqabench.store import write_json_atomic


@dataclasses.dataclass
class TrainConfig:
    method: str
    dataset: str
    split: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    data_root: Path = resolve.DEFAULT_DATA_ROOT
    results: Path = resolve.DEFAULT_RESULTS
    batch_size: int = 1
    device: str = "cpu"
    seed: int = 42
    limit: int | None = None  # cap on train and val sizes, for quick trials


def train(cfg: TrainConfig, on_log: Callable[[str], None] = print) -> tuple[Path, dict]:
    import filelock

    cls, options = resolve.resolve_method(cfg.method, cfg.options)
    if not issubclass(cls, TrainableMethod):
        raise IqaError(f"method {cls.name} is not trainable (kind: {cls.info.kind})")
    resolve.require_available(cls, options)
    view = resolve.load_dataset(cfg.dataset, cfg.data_root, cfg.split, cfg.results)
    train_ids, val_ids = view.split.ids("train"), view.split.ids("val")
    if cfg.limit is not None:
        train_ids, val_ids = train_ids[: cfg.limit], val_ids[: cfg.limit]
    if not train_ids:
        raise IqaError(f"{cfg.dataset} split {view.split.name} has no training images")
    workdir = resolve.checkpoint_dir(cfg.results, view.card.name, view.split, cls, options)
    workdir.mkdir(parents=True, exist_ok=True)
    failures_path = workdir / "failures.jsonl"

    def record_failure(sample_id: str, reason: str) -> None:
        with open(failures_path, "a") as fh:
            fh.write(json.dumps({"id": sample_id, "error": reason}) + "\n")

    lock = filelock.FileLock(str(workdir / ".lock"), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise IqaError(f"{workdir}: another process is training this configuration") from None
    try:
        manifest = {"method": cls.name, "method_label": resolve.method_label(cls, options),
                    "options": options.model_dump(mode="json"), "dataset": view.card.name, "split": view.split.name,
                    "split_hash": view.split.hash, "n_train": len(train_ids), "n_val": len(val_ids),
                    "seed": cfg.seed, "device": cfg.device, "batch_size": cfg.batch_size, "limit": cfg.limit,
                    "started": provenance.now(), **provenance.environment()}
        write_json_atomic(workdir / "train_manifest.json", manifest)
        (workdir / "train_summary.json").unlink(missing_ok=True)  # present only once training has finished
        method = cls(options, device=cfg.device, batch_size=cfg.batch_size)
        method.card = view.card
        method.cache_dir = Path(cfg.results) / "cache"
        on_log(f"training {manifest['method_label']} on {view.card.name}/{view.split.name}: "
               f"{len(train_ids)} train, {len(val_ids)} val -> {workdir}")
        method.setup()
        load = view.loader()
        try:
            summary = method.fit(SampleSource(train_ids, load, record_failure),
                                 SampleSource(val_ids, load, record_failure), workdir, cfg.seed)
        finally:
            method.teardown()
        # an image that fails is met again every epoch and on every resume: count it once
        n_failed = len(_failed_ids(failures_path))
        summary = {**(summary or {}), "n_failed_images": n_failed, "finished": provenance.now()}
        write_json_atomic(workdir / "train_summary.json", summary)
        return workdir, summary
    finally:
        lock.release()


def _failed_ids(path: Path) -> set[str]:
    ids = set()
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                ids.add(json.loads(line)["id"])
            except (json.JSONDecodeError, KeyError):
                continue  # a torn line from a kill; the image fails again and is re-recorded
    return ids
