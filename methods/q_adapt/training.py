"""The two training stages of Q-Adapt (seed 002, section 3.3; appendix A for the schedule).

Stage 1: LoRA on the vision encoder and the LLM (and the connector, fully) learn from
instruction conversations with the language-model loss (eq. 2), averaged per answer token
over each optimizer step. Stage 2: the LoRA adapters are frozen; the instruction-adaptive
prompt (and the connector) fit the engine's targets by the MSE of the softmax quality score;
after each epoch the val split scores the prompt and the best epoch is kept by
(SRCC + PLCC) / 2 (iqabench.metrics.selection_score), with early stopping.

Both stages: AdamW without weight decay, cosine decay after a linear warm-up (the Hugging Face
schedule the public code trains with), --batch-size x `grad_accum` items per optimizer step.
Both run in iqabench.training's epoch trainer, which owns the state files, resume, validation,
selection and patience. Resuming is exact: the data order of an epoch and every dropout mask come
from the seed and the step's position (a forked RNG per micro-batch), and the state (trainable
tensors and AdamW moments, here; position and history, the engine's) is rewritten atomically every
`save_every` steps and at each epoch's end, so a killed run continues to the same result.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from iqabench.errors import IqaError
from iqabench.training import Position

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


class _AdamSteps:
    """An AdamW over named parameter groups and its schedule; its tensors are the stage's state."""

    framework = "pt"

    def __init__(self, method, groups: dict[str, tuple[dict[str, torch.nn.Parameter], float]], per_epoch: int,
                 epochs: int, seed: int, compat: dict[str, Any]):
        o = method.options
        self.method, self.seed, self._compat = method, seed, compat
        self.steps_per_epoch, self.epochs, self.total = per_epoch, epochs, per_epoch * epochs
        self.save_every, self.step_items = o.save_every, method.batch_size * o.grad_accum
        self.named = {f"{g}.{n}": p for g, (params, _) in groups.items() for n, p in params.items()}
        self.base_lrs = [lr for _, lr in groups.values()]
        self.optimizer = torch.optim.AdamW([{"params": list(params.values()), "lr": lr} for params, lr in groups.values()],
                                           weight_decay=o.weight_decay)
        self.ids = {id(p): name for name, p in self.named.items()}

    def compat(self) -> dict[str, Any]:
        return self._compat

    def set_lr(self, global_step: int) -> float:
        factor = lr_factor(global_step, self.total, self.method.options.warmup_ratio)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        return factor

    def state(self) -> dict[str, torch.Tensor]:
        adam, steps = state_io.optimizer_tensors(self.optimizer, self.ids)
        return {**{f"params/{n}": p for n, p in self.named.items()}, **{f"adam/{k}": v for k, v in adam.items()},
                **{f"adam_step/{n}": torch.tensor(v, dtype=torch.float64) for n, v in steps.items()}}

    def load_state(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        from .lora import load_tensors

        part = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        load_tensors(self.named, part("params/"), source, "trainable tensors")
        state_io.restore_optimizer(self.optimizer, self.named, part("adam/"),
                                   {n: float(v) for n, v in part("adam_step/").items()}, source)

    @contextlib.contextmanager
    def _trainable(self) -> Iterator[None]:
        for p in self.named.values():
            p.requires_grad_(True)
        try:
            yield
        finally:
            for p in self.named.values():
                p.requires_grad_(False)

    def _optimizer_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def _micro(items: list, batch: int) -> list[list]:
    return [items[i:i + batch] for i in range(0, len(items), batch)]


def _fork(device: str):
    devices = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    return torch.random.fork_rng(devices=devices)


def _manual_seed(value: int) -> None:
    torch.manual_seed(value % (2 ** 63))


def _groups(method, params: dict[str, torch.nn.Parameter], name: str, lr: float) -> dict:
    groups = {name: (params, lr)}
    if method.options.train_connector:
        groups["connector"] = (method.connector_params(), method.options.connector_lr)
    return groups


# -- stage 1 ------------------------------------------------------------------------------------
class Stage1(_AdamSteps):
    """LoRA (and the connector) on instruction conversations, by the LM loss; no validation."""

    name, state_file, criterion, loss_name = "stage1", STAGE1_STATE, None, "lm_loss"

    def __init__(self, method, conversations: list[Conversation], read_image: Callable, seed: int,
                 compat: dict[str, Any]):
        from .conversation import encoder_for

        o = method.options
        per_epoch = len(chunks(list(range(len(conversations))), method.batch_size * o.grad_accum, o.max_steps))
        super().__init__(method, _groups(method, method.lora, "lora", o.stage1_lr), per_epoch, o.stage1_epochs,
                         seed, compat)
        self.conversations, self.read_image = conversations, read_image
        self.encoder = encoder_for(method.scorer.backend, method.parts.kind)

    @contextlib.contextmanager
    def epoch(self, epoch: int):
        from .lora import set_dropout_training

        order = epoch_order(list(range(len(self.conversations))), self.seed, 1, epoch)
        set_dropout_training(self.method.parts.model, True)
        try:
            with self._trainable():
                yield chunks(order, self.step_items, self.method.options.max_steps)
        finally:
            set_dropout_training(self.method.parts.model, False)

    def step(self, indices: list[int], at: Position) -> tuple[float, int]:
        method = self.method
        convs = [self.conversations[i] for i in indices]
        encoded = [self.encoder.encode(c) for c in convs]
        tokens = sum(len(e.targets) for e in encoded)
        self.set_lr(at.global_step)
        loss_sum = 0.0
        for j, group in enumerate(_micro(list(zip(convs, encoded)), method.batch_size)):
            with _fork(method.device):
                _manual_seed(step_seed(self.seed, 1, at.epoch, at.index, j))
                for conv, enc in group:
                    pixels = method.scorer.normalize(method.scorer.pixels([self.read_image(conv)]))
                    ce, _ = self.encoder.loss(enc, pixels)
                    if not torch.isfinite(ce):
                        raise IqaError(f"q-adapt: non-finite stage-1 loss at epoch {at.epoch}, step {at.index + 1} "
                                       f"(conversation {conv.id})")
                    (ce / tokens).backward()
                    loss_sum += float(ce.detach())
        self._optimizer_step()
        return loss_sum, tokens

    def predictor(self):
        raise NotImplementedError("stage 1 is not validated")

    def save_selected(self, workdir: Path, record: dict[str, Any] | None) -> None:
        self.method.write_adapters(workdir, record)


# -- stage 2 ------------------------------------------------------------------------------------
class Stage2(_AdamSteps):
    """The prompt module (and the connector) fit the targets by MSE; selected on val."""

    name, state_file, criterion = "stage2", STAGE2_STATE, "srcc_plcc"

    def __init__(self, method, train, seed: int, compat: dict[str, Any]):
        o = method.options
        per_epoch = len(chunks(list(train.ids), method.batch_size * o.grad_accum, o.max_steps))
        super().__init__(method, _groups(method, dict(method.prompt.named_parameters()), "prompt", o.stage2_lr),
                         per_epoch, o.stage2_epochs, seed, compat)
        self.train, self.patience, self.val_batch_size = train, o.patience, method.batch_size

    @contextlib.contextmanager
    def epoch(self, epoch: int):
        order = epoch_order(list(self.train.ids), self.seed, 2, epoch)
        self.method.prompt.train()
        try:
            with self._trainable():
                yield chunks(order, self.step_items, self.method.options.max_steps)
        finally:
            self.method.prompt.eval()

    def step(self, ids: list[str], at: Position) -> tuple[float, int]:
        from iqabench.training import targets_of

        method = self.method
        samples = [s for s in (self.train.load(i) for i in ids) if s is not None]
        self.set_lr(at.global_step)
        loss_sum = 0.0
        for j, micro in enumerate(_micro(samples, method.batch_size)):
            with _fork(method.device):
                _manual_seed(step_seed(self.seed, 2, at.epoch, at.index, j))
                targets = torch.tensor(targets_of(micro, "q-adapt"), dtype=torch.float32, device=method.device)
                scores = method.scorer.score_pixels(method.scorer.pixels([s.image for s in micro]))
                mse = torch.nn.functional.mse_loss(scores.float(), targets)
                if not torch.isfinite(mse):
                    raise IqaError(f"q-adapt: non-finite stage-2 loss at epoch {at.epoch}, step {at.index + 1}")
                (mse * len(micro) / len(samples)).backward()
                loss_sum += float(mse.detach()) * len(micro)
        if samples:
            self._optimizer_step()
        return loss_sum, len(samples)

    def predictor(self):
        self.method.prompt.eval()
        return self.method.score

    def save_selected(self, workdir: Path, record: dict[str, Any]) -> None:
        self.method.write_prompt(workdir, record)


def stages(method, conversations: list[Conversation], read_image: Callable, train, workdir: Path, seed: int,
           compat1: dict[str, Any], build_prompt: Callable[[], dict[str, Any]]):
    """Stage 1, then (once its adapters are written) the prompt module built and stage 2."""
    from .method import ADAPTERS

    yield Stage1(method, conversations, read_image, seed, compat1)
    if not (Path(workdir) / ADAPTERS).is_file():  # stage1_epochs = 0: the untrained adapters
        method.write_adapters(workdir, None)
    yield Stage2(method, train, seed, build_prompt())
