"""The two training stages of Q-Adapt (seed 002, section 3.3; appendix A for the schedule).

Stage 1: LoRA on the vision encoder and the LLM (and the connector, fully) learn from
instruction conversations with the language-model loss (eq. 2), averaged per answer token
over each optimizer step. Stage 2: the LoRA adapters are frozen; the instruction-adaptive
prompt (and the connector) fit the engine's targets by the MSE of the softmax quality score;
after each epoch the val split scores the prompt and the best epoch is kept by
(SRCC + PLCC) / 2 (iqabench.metrics.selection_score), with early stopping.

Both stages: AdamW without weight decay, cosine decay after a linear warm-up (the Hugging Face
schedule the public code trains with), `batch_size` x `grad_accum` items per optimizer step.
Resuming is exact: the data order of an epoch and every dropout mask come from the seed and the
step's position (a forked RNG per micro-batch), and the state file (trainable tensors, AdamW
moments, position, history) is rewritten atomically every `save_every` steps and at each
epoch's end, so a run killed at any point continues from its last state to the same result.
"""
from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from iqabench.errors import IqaError

from . import state as state_io
from .instructions import Conversation

log = logging.getLogger("iqabench.methods.q_adapt")

STAGE1_STATE, STAGE2_STATE = "stage1_state.safetensors", "stage2_state.safetensors"


def lr_factor(step: int, total: int, warmup_ratio: float) -> float:
    """Hugging Face's cosine schedule with warm-up: the factor for optimizer step `step` (0-based)."""
    warm = math.ceil(total * warmup_ratio)
    if step < warm:
        return step / max(1, warm)
    progress = (step - warm) / max(1, total - warm)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def step_seed(seed: int, stage: int, epoch: int, step: int, micro: int) -> int:
    return (((seed * 1_000_003 + stage) * 10_007 + epoch) * 1_000_033 + step) * 101 + micro


def epoch_order(items: list, seed: int, stage: int, epoch: int) -> list:
    order = list(items)
    random.Random(seed * 1000 + 100 * stage + epoch).shuffle(order)
    return order


def chunks(order: list, size: int, limit: int | None) -> list[list]:
    out = [order[i:i + size] for i in range(0, len(order), size)]
    return out[:limit] if limit is not None else out


class _Stage:
    """An AdamW over named parameter groups, its schedule and its state file."""

    def __init__(self, method, path: Path, groups: dict[str, tuple[dict[str, torch.nn.Parameter], float]],
                 total_steps: int, compat: dict[str, Any]):
        self.method, self.path, self.total, self.compat = method, path, total_steps, compat
        self.named = {f"{g}.{n}": p for g, (params, _) in groups.items() for n, p in params.items()}
        self.base_lrs = [lr for _, lr in groups.values()]
        self.optimizer = torch.optim.AdamW([{"params": list(params.values()), "lr": lr} for params, lr in groups.values()],
                                           weight_decay=method.options.weight_decay)
        self.ids = {id(p): name for name, p in self.named.items()}

    def set_lr(self, global_step: int) -> float:
        factor = lr_factor(global_step, self.total, self.method.options.warmup_ratio)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        return factor

    def save(self, meta: dict[str, Any]) -> None:
        adam, steps = state_io.optimizer_tensors(self.optimizer, self.ids)
        state_io.save(self.path, {"params": {n: p for n, p in self.named.items()}, "adam": adam},
                      {**meta, "adam_steps": steps, "compat": self.compat})

    def restore(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        from .lora import load_tensors

        groups, meta = state_io.load(self.path)
        old = meta.get("compat", {})
        diff = sorted(k for k in set(old) | set(self.compat) if old.get(k) != self.compat.get(k))
        if diff:
            raise IqaError(f"{self.path}: was written with other settings ({', '.join(diff)}); "
                           f"use another workdir or delete it to start over")
        load_tensors(self.named, groups.get("params", {}), str(self.path), "trainable tensors")
        state_io.restore_optimizer(self.optimizer, self.named, groups.get("adam", {}), meta.get("adam_steps", {}),
                                   str(self.path))
        return meta


def _micro(items: list, batch: int) -> list[list]:
    return [items[i:i + batch] for i in range(0, len(items), batch)]


def _fork(device: str):
    devices = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    return torch.random.fork_rng(devices=devices)


def _manual_seed(value: int) -> None:
    torch.manual_seed(value % (2 ** 63))


# -- stage 1 ------------------------------------------------------------------------------------
def run_stage1(method, conversations: list[Conversation], read_image: Callable, workdir: Path, seed: int,
               compat: dict[str, Any]) -> dict[str, Any]:
    from .conversation import encoder_for
    from .lora import set_dropout_training

    o = method.options
    step_items = o.batch_size * o.grad_accum
    per_epoch = len(chunks(list(range(len(conversations))), step_items, o.max_steps))
    groups = {"lora": (method.lora, o.stage1_lr)}
    if o.train_connector:
        groups["connector"] = (method.connector_params(), o.connector_lr)
    for params, _ in groups.values():
        for p in params.values():
            p.requires_grad_(True)
    stage = _Stage(method, workdir / STAGE1_STATE, groups, per_epoch * o.stage1_epochs, compat)
    meta = stage.restore() or {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "loss_sum": 0.0, "tokens": 0,
                               "history": [], "done": False}
    resumed = None if meta["global_step"] == 0 and meta["epoch"] == 0 else {"epoch": meta["epoch"], "step_in_epoch": meta["step_in_epoch"]}
    encoder = encoder_for(method.scorer.backend, method.parts.kind)
    set_dropout_training(method.parts.model, True)
    try:
        while not meta["done"] and meta["epoch"] < o.stage1_epochs:
            epoch = meta["epoch"] + 1
            steps = chunks(epoch_order(list(range(len(conversations))), seed, 1, epoch), step_items, o.max_steps)
            for k in range(meta["step_in_epoch"], len(steps)):
                convs = [conversations[i] for i in steps[k]]
                encoded = [encoder.encode(c) for c in convs]
                tokens = sum(len(e.targets) for e in encoded)
                stage.set_lr(meta["global_step"])
                loss_sum = 0.0
                for j, group in enumerate(_micro(list(zip(convs, encoded)), o.batch_size)):
                    with _fork(method.device):
                        _manual_seed(step_seed(seed, 1, epoch, k, j))
                        for conv, enc in group:
                            pixels = method.scorer.normalize(method.scorer.pixels([read_image(conv)]))
                            ce, _ = encoder.loss(enc, pixels)
                            if not torch.isfinite(ce):
                                raise IqaError(f"q-adapt: non-finite stage-1 loss at epoch {epoch}, step {k + 1} "
                                               f"(conversation {conv.id})")
                            (ce / tokens).backward()
                            loss_sum += float(ce.detach())
                stage.optimizer.step()
                stage.optimizer.zero_grad(set_to_none=True)
                meta.update(step_in_epoch=k + 1, global_step=meta["global_step"] + 1,
                            loss_sum=meta["loss_sum"] + loss_sum, tokens=meta["tokens"] + tokens)
                if meta["global_step"] % o.save_every == 0 and k + 1 < len(steps):
                    stage.save(meta)
            if meta["tokens"] == 0:
                raise IqaError("q-adapt: stage 1 saw no answer token (empty instructions?)")
            meta["history"].append({"epoch": epoch, "steps": meta["step_in_epoch"],
                                    "lm_loss": meta["loss_sum"] / meta["tokens"]})
            meta.update(epoch=epoch, step_in_epoch=0, loss_sum=0.0, tokens=0)
            if epoch >= o.stage1_epochs:
                method.write_adapters(workdir, meta["history"])  # before the state says done
                meta["done"] = True
            stage.save(meta)
            log.info("q-adapt stage 1: epoch %d LM loss %.5f", epoch, meta["history"][-1]["lm_loss"])
    finally:
        set_dropout_training(method.parts.model, False)
        for params, _ in groups.values():
            for p in params.values():
                p.requires_grad_(False)
    if not (workdir / "adapters.safetensors").is_file():
        method.write_adapters(workdir, meta["history"])
    return {"history": meta["history"], "resumed_from": resumed, "steps_per_epoch": per_epoch}


# -- stage 2 ------------------------------------------------------------------------------------
def _targets(samples) -> list[float]:
    missing = next((s.id for s in samples if s.target is None), None)
    if missing is not None:
        raise IqaError(f"q-adapt: the engine gave no training target for image {missing}")
    return [float(s.target) for s in samples]


def evaluate(method, source, batch: int) -> dict[str, float]:
    import numpy as np

    from iqabench import metrics

    preds, targets = [], []
    for samples in source.batches(batch):
        targets += _targets(samples)
        preds += method.score(samples)
    p, y = np.asarray(preds), np.asarray(targets)
    if len(p) >= 3 and np.ptp(p) > 0 and np.ptp(y) > 0:
        srcc, plcc = metrics.srcc(p, y), metrics.plcc(p, y)
    else:
        srcc = plcc = float("nan")
    return {"val_srcc": srcc, "val_plcc": plcc, "val_selection": metrics.selection_score(p, y), "val_n": len(p)}


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def run_stage2(method, train, val, workdir: Path, seed: int, compat: dict[str, Any]) -> dict[str, Any]:
    o = method.options
    step_items = o.batch_size * o.grad_accum
    per_epoch = len(chunks(list(train.ids), step_items, o.max_steps))
    groups = {"prompt": (dict(method.prompt.named_parameters()), o.stage2_lr)}
    if o.train_connector:
        groups["connector"] = (method.connector_params(), o.connector_lr)
    stage = _Stage(method, workdir / STAGE2_STATE, groups, per_epoch * o.stage2_epochs, compat)
    meta = stage.restore() or {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "loss_sum": 0.0, "count": 0,
                               "history": [], "best_epoch": None, "best_selection": None,
                               "epochs_without_gain": 0, "stopped": None}
    resumed = None if meta["global_step"] == 0 and meta["epoch"] == 0 else {"epoch": meta["epoch"], "step_in_epoch": meta["step_in_epoch"]}
    best = meta["best_selection"] if meta["best_selection"] is not None else -math.inf
    for params, _ in groups.values():
        for p in params.values():
            p.requires_grad_(True)
    try:
        while meta["stopped"] is None and meta["epoch"] < o.stage2_epochs:
            epoch = meta["epoch"] + 1
            steps = chunks(epoch_order(list(train.ids), seed, 2, epoch), step_items, o.max_steps)
            method.prompt.train()
            for k in range(meta["step_in_epoch"], len(steps)):
                samples = [s for s in (train.load(i) for i in steps[k]) if s is not None]
                stage.set_lr(meta["global_step"])
                loss_sum = 0.0
                for j, micro in enumerate(_micro(samples, o.batch_size)):
                    with _fork(method.device):
                        _manual_seed(step_seed(seed, 2, epoch, k, j))
                        targets = torch.tensor(_targets(micro), dtype=torch.float32, device=method.device)
                        scores = method.scorer.score_pixels(method.scorer.pixels([s.image for s in micro]))
                        mse = torch.nn.functional.mse_loss(scores.float(), targets)
                        if not torch.isfinite(mse):
                            raise IqaError(f"q-adapt: non-finite stage-2 loss at epoch {epoch}, step {k + 1}")
                        (mse * len(micro) / len(samples)).backward()
                        loss_sum += float(mse.detach()) * len(micro)
                if samples:
                    stage.optimizer.step()
                    stage.optimizer.zero_grad(set_to_none=True)
                meta.update(step_in_epoch=k + 1, global_step=meta["global_step"] + 1,
                            loss_sum=meta["loss_sum"] + loss_sum, count=meta["count"] + len(samples))
                if meta["global_step"] % o.save_every == 0 and k + 1 < len(steps):
                    stage.save(meta)
            if meta["count"] == 0:
                raise IqaError("q-adapt: the training split yielded no images")
            method.prompt.eval()
            with torch.no_grad():
                record = {"epoch": epoch, "steps": meta["step_in_epoch"], "train_loss": meta["loss_sum"] / meta["count"],
                          **evaluate(method, val, o.batch_size)}
            gain = meta["best_epoch"] is None or record["val_selection"] > best
            if gain:
                best = record["val_selection"]
                meta.update(best_epoch=epoch, best_selection=_finite(best), epochs_without_gain=0)
                method.write_prompt(workdir, record)
            else:
                meta["epochs_without_gain"] += 1
            meta["history"].append({k: _finite(v) for k, v in record.items()})
            meta.update(epoch=epoch, step_in_epoch=0, loss_sum=0.0, count=0)
            if meta["epochs_without_gain"] >= o.patience:
                meta["stopped"] = "early_stop"
            elif epoch >= o.stage2_epochs:
                meta["stopped"] = "epochs"
            stage.save(meta)
            log.info("q-adapt stage 2: epoch %d loss %.5f val SRCC %s PLCC %s%s", epoch, record["train_loss"],
                     record["val_srcc"], record["val_plcc"], " (best)" if gain else "")
    finally:
        method.prompt.eval()
        for params, _ in groups.values():
            for p in params.values():
                p.requires_grad_(False)
    return {"history": meta["history"], "best_epoch": meta["best_epoch"], "stopped": meta["stopped"],
            "resumed_from": resumed, "steps_per_epoch": per_epoch}
