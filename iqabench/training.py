"""The one epoch trainer: resume, validation, selection, patience, progress. Methods supply steps.

A trainable method that trains by epochs subclasses `EpochTrainable` and yields its stages from
`training_stages` (one stage for most; q-adapt has two). Each stage is an object with:

    name, epochs, state_file, compat()       what it is, how long, where its state lives, and
                                             what a resumed state must share with this run
    state() / load_state(tensors, source)    every tensor a resume needs (parameters, moments)
    epoch(n)                                 a context manager yielding the epoch's steps (a list,
                                             the same on a resumed run: seeded by seed and n)
    step(item, at)                           one optimizer step -> (loss sum, weight)
    predictor()                              a callable: samples -> scores, for validation
    save_selected(workdir, record)           write the selected checkpoint (record: that epoch's)
and optionally: criterion ("srcc_plcc" | "srcc" | None: no validation, the last epoch is kept),
patience, save_every (steps between mid-epoch saves), loss_name, val_batch_size,
validate_untrained (validate once before epoch 1, recorded as epoch 0), epoch_info(n), framework.

The engine owns the rest: the state file (tensors + its own JSON state, written atomically after
each epoch and every `save_every` steps, so a kill resumes to the same result), the refusal of a
state written with other settings, validation on the targets after each epoch over one or several
named sources (selected on the mean criterion), patience, progress lines and the summary.
Selection alone (`Selection`, `val_scores`) also serves trainers without epochs (a grid search).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from iqabench import io
from iqabench.api import SampleSource, TrainableMethod
from iqabench.errors import IqaError

__all__ = ["CRITERIA", "EpochSteps", "EpochTrainable", "Position", "Selection", "combine", "fit", "read_state",
           "refuse_batch_option", "resolve_batch_size", "val_scores", "validate"]

# name -> label; every trainer's selection is one of these, recorded by label in the summary
CRITERIA = {"srcc_plcc": "val (SRCC + PLCC) / 2", "srcc": "val SRCC"}
LAST_EPOCH = "last epoch (no val part)"
STATE_KEY = "iqabench_training_state"


# -- batch size -----------------------------------------------------------------------------------
def resolve_batch_size(cls: type, options: Any, dataset: str | None, requested: int | None) -> int | None:
    """The training batch a fit uses: --batch-size when given, else the method's recipe for the
    dataset. None for a trainer without a batch (which then refuses --batch-size)."""
    default = getattr(cls, "default_batch_size", None)
    recipe = default(options, dataset) if callable(default) else None
    if recipe is None:
        if requested is not None:
            raise IqaError(f"method {cls.name} has no training batch (it fits on every image at once); "
                           f"drop --batch-size")
        return None
    return int(requested) if requested is not None else int(recipe)


def refuse_batch_option(values: Any, method: str) -> Any:
    """For an Options class's before-validator: `-o batch_size` is not an option of a trainer."""
    if isinstance(values, dict) and "batch_size" in values:
        raise IqaError(f"method {method}: -o batch_size is not an option; the training batch is "
                       f"`iqabench train --batch-size N`")
    return values


# -- validation and selection ---------------------------------------------------------------------
def val_scores(pred, target, criterion: str = "srcc_plcc") -> dict[str, float]:
    """SRCC, raw PLCC and the criterion's value against the targets; NaN (criterion -inf) when
    undefined (fewer than 3 images, or constant predictions or targets)."""
    import numpy as np

    from iqabench import metrics

    p, y = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    defined = len(p) >= 3 and np.ptp(p) > 0 and np.ptp(y) > 0
    srcc = metrics.srcc(p, y) if defined else float("nan")
    plcc = metrics.plcc(p, y) if defined else float("nan")
    if criterion == "srcc_plcc":
        value = metrics.selection_score(p, y)
    elif criterion == "srcc":
        value = srcc if defined else float("-inf")
    else:
        raise IqaError(f"unknown selection criterion {criterion!r} (known: {', '.join(CRITERIA)})")
    return {"val_srcc": srcc, "val_plcc": plcc, "val_selection": value, "val_n": len(p)}


def targets_of(samples, who: str) -> list[float]:
    """The engine's targets (higher is better, in [0, 1]); never derived from raw labels."""
    missing = next((s.id for s in samples if s.target is None), None)
    if missing is not None:
        raise IqaError(f"{who}: the engine gave no training target for image {missing}")
    return [float(s.target) for s in samples]


def as_sources(val: SampleSource | Mapping[str, SampleSource] | None) -> dict[str, SampleSource]:
    if val is None:
        return {}
    return dict(val) if isinstance(val, Mapping) else {"val": val}


def validate(predict: Callable, sources: Mapping[str, SampleSource], batch: int, criterion: str,
             who: str = "trainer", progress: bool = False) -> dict[str, Any]:
    """Score every named source; one source gives val_srcc/val_plcc/val_selection/val_n, several give
    each source's under `val_sets` and their means (the criterion selected on is the mean)."""
    per: dict[str, dict[str, float]] = {}
    for name, source in sources.items():
        preds, targets = [], []
        with _bar(math.ceil(len(source) / batch), f"{who} {name}", progress) as bar:
            for samples in source.batches(batch):
                targets += targets_of(samples, who)
                preds += [float(v) for v in predict(samples)]
                bar.update(1)
        per[name] = val_scores(preds, targets, criterion)
    return combine(per)


def combine(per: Mapping[str, dict[str, float]]) -> dict[str, Any]:
    """Several named sources' `val_scores` as one: their means (the criterion selected on is the
    mean), the total count and each source's own under `val_sets`; one source is itself."""
    if len(per) == 1:
        return dict(next(iter(per.values())))
    mean = {k: sum(r[k] for r in per.values()) / len(per) for k in ("val_srcc", "val_plcc", "val_selection")}
    return {**mean, "val_n": sum(r["val_n"] for r in per.values()),
            "val_sets": {name: {k: _finite(v) for k, v in r.items()} for name, r in per.items()}}


@dataclasses.dataclass
class Selection:
    """The best candidate so far by one criterion (higher is better; -inf when undefined), and how
    many candidates in a row brought no gain. `criterion` is its label, recorded with the result."""

    criterion: str
    best_value: float | None = None  # JSON: None stands for -inf
    best: Any = None  # the selected candidate's key (an epoch, a grid point)
    without_gain: int = 0

    def offer(self, value: float, key: Any) -> bool:
        best = self.best_value if self.best_value is not None else -math.inf
        gain = self.best is None or self.criterion == LAST_EPOCH or value > best
        if gain:
            self.best_value, self.best, self.without_gain = _finite(value), key, 0
        else:
            self.without_gain += 1
        return gain

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- the protocol -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Position:
    epoch: int  # from 1
    index: int  # the step's index in its epoch, from 0
    global_step: int  # optimizer steps before this one, over all epochs


class EpochSteps(Protocol):
    name: str
    epochs: int
    state_file: str

    def compat(self) -> dict[str, Any]: ...
    def state(self) -> dict[str, Any]: ...
    def load_state(self, tensors: dict[str, Any], source: str) -> None: ...
    def epoch(self, epoch: int) -> contextlib.AbstractContextManager[list]: ...
    def step(self, item: Any, at: Position) -> tuple[float, float]: ...
    def predictor(self) -> Callable[[list], list[float]]: ...
    def save_selected(self, workdir: Path, record: dict[str, Any] | None) -> None: ...


class EpochTrainable(TrainableMethod):
    """A trainable method whose training is one or more `EpochSteps` stages run by this module.
    `batch_size` is the training batch (--batch-size, else `default_batch_size`)."""

    @property
    def batch_size(self) -> int:
        return resolve_batch_size(type(self), self.options, self.ctx.dataset, self.ctx.batch_size) or 1

    @classmethod
    def default_batch_size(cls, options, dataset: str | None) -> int:
        """The training batch when --batch-size is not given (the method's recipe)."""
        return 1

    def training_stages(self, train: SampleSource, workdir: Path, seed: int) -> Iterator[EpochSteps]:
        """Yield the stages in order (code after a yield runs once that stage is done); the
        generator's return value (a dict) is added to the summary."""
        raise NotImplementedError

    def fit(self, train: SampleSource, val, workdir: Path, seed: int, *, on_log: Callable[[str], None] | None = None,
            progress: bool | None = None) -> dict[str, Any]:
        if progress is None:
            progress = self.ctx.progress
        return fit(self, train, val, Path(workdir), seed, on_log=on_log, progress=progress)


# -- the trainer ------------------------------------------------------------------------------------
def fit(method: EpochTrainable, train: SampleSource, val, workdir: Path, seed: int, *,
        on_log: Callable[[str], None] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run every stage of `method` (resuming each from its state file) and return the summary:
    best_epoch, epochs_run, stopped, best_val, criterion, history (of the last stage that selects),
    each stage's own summary under its name when there are several, and the method's extras."""
    import logging

    say = on_log or logging.getLogger(f"iqabench.methods.{method.name}").info
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    sources = as_sources(val)
    stages, summaries = method.training_stages(train, workdir, seed), {}
    while True:
        try:
            steps = next(stages)
        except StopIteration as done:
            extras = done.value or {}
            break
        summaries[steps.name] = _run_stage(steps, sources, workdir, seed, say, progress, method.name)
    if not summaries:
        raise IqaError(f"{method.name}: no training stage to run")
    chosen = [s for s in summaries.values() if s["criterion"] is not None] or list(summaries.values())
    summary = dict(chosen[-1])
    if len(summaries) > 1:
        summary.update(summaries)
    return {**summary, **extras}


def _run_stage(steps: EpochSteps, sources: dict[str, SampleSource], workdir: Path, seed: int,
               say: Callable[[str], None], progress: bool, who: str) -> dict[str, Any]:
    path = workdir / steps.state_file
    who = f"{who} {steps.name}" if steps.name and steps.name != who else who
    wanted = getattr(steps, "criterion", "srcc_plcc")
    has_val = wanted is not None and any(len(s) for s in sources.values())
    label = CRITERIA[wanted] if has_val else (LAST_EPOCH if wanted is not None else None)
    if wanted is not None and not has_val:
        say(f"{who}: no val images: no selection, the last epoch is kept")
    live = {name: s for name, s in sources.items() if len(s)}
    compat = {**steps.compat(), "criterion": label}
    if wanted is not None:
        compat["val_sets"] = sorted(live)  # selection over other sources is another training
    loss_name = getattr(steps, "loss_name", "train_loss")
    state = _restore(path, steps, compat)
    resumed = None
    if state is None:
        state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "loss_sum": 0.0, "weight": 0.0, "seed": seed,
                 "history": [], "selection": Selection(label or LAST_EPOCH).to_dict(), "stopped": None,
                 "compat": compat}
        if has_val and getattr(steps, "validate_untrained", False):
            before = {"epoch": 0, **_validate(steps, live, wanted, who, progress)}
            state["history"].append(_clean(before))
            say(f"{who}: untrained: val SRCC {_fmt(before['val_srcc'])}")
    else:
        resumed = {"epoch": state["epoch"], "step_in_epoch": state["step_in_epoch"]}
        say(f"{who}: resuming after epoch {state['epoch']}, step {state['step_in_epoch']}")
    selection = Selection(**state["selection"])
    total, patience = steps.epochs, getattr(steps, "patience", None)
    save_every = getattr(steps, "save_every", None)
    if state["stopped"] == "epochs" and state["epoch"] < total:
        state["stopped"] = None  # more epochs were asked for: carry on
    steps_per_epoch = getattr(steps, "steps_per_epoch", None)
    while state["stopped"] is None and state["epoch"] < total:
        epoch = state["epoch"] + 1
        started = time.perf_counter()
        with steps.epoch(epoch) as items:
            steps_per_epoch = len(items)
            with _bar(len(items), f"{who} epoch {epoch}/{total}", progress) as bar:
                bar.update(state["step_in_epoch"])
                for k in range(state["step_in_epoch"], len(items)):
                    loss, weight = steps.step(items[k], Position(epoch, k, state["global_step"]))
                    state.update(step_in_epoch=k + 1, global_step=state["global_step"] + 1,
                                 loss_sum=state["loss_sum"] + float(loss), weight=state["weight"] + float(weight))
                    if save_every and state["global_step"] % save_every == 0 and k + 1 < len(items):
                        _save(path, steps, state)
                    if state["weight"]:
                        bar.set_postfix(loss=f"{state['loss_sum'] / state['weight']:.4f}", refresh=False)
                    bar.update(1)
        if not state["weight"]:
            raise IqaError(f"{who}: epoch {epoch} had nothing to train on (no usable images)")
        info = steps.epoch_info(epoch) if hasattr(steps, "epoch_info") else {}
        record = {"epoch": epoch, **info, "steps": state["step_in_epoch"], loss_name: state["loss_sum"] / state["weight"]}
        if has_val:
            record.update(_validate(steps, live, wanted, who, progress, f"after epoch {epoch}"))
        gain = selection.offer(record.get("val_selection", math.inf), epoch)
        record = _clean(record)
        if gain:  # written before the state says this epoch is done
            steps.save_selected(workdir, {**record, "criterion": label or LAST_EPOCH})
        state["history"].append(record)
        state.update(epoch=epoch, step_in_epoch=0, loss_sum=0.0, weight=0.0, selection=selection.to_dict())
        if patience is not None and selection.without_gain >= patience:
            state["stopped"] = "early_stop"
        elif epoch >= total:
            state["stopped"] = "epochs"
        _save(path, steps, state)
        line = f"{who}: epoch {epoch}/{total} {loss_name.removeprefix('train_').replace('_', ' ')} {record[loss_name]:.5f}"
        if has_val:
            # the trainers' val PLCC is Pearson on the raw predictions (no logistic fit on the val part)
            from iqabench.metrics import label as metric_label  # numpy: kept out of importing a method

            line += (f" val {metric_label('srcc')} {_fmt(record.get('val_srcc'))}"
                     f" {metric_label('plcc_raw')} {_fmt(record.get('val_plcc'))}")
        say(line + (" (best so far)" if gain and has_val else "") + f" [{time.perf_counter() - started:.1f} s]")
    history = state["history"]
    best = next((r for r in history if r["epoch"] == selection.best), {})
    over = {"selected_on_mean_of": sorted(live)} if has_val and len(live) > 1 else {}
    return {"best_epoch": selection.best, "epochs_run": state["epoch"], "stopped": state["stopped"],
            "criterion": label, **over, "best_val": {k: best.get(k) for k in ("val_srcc", "val_plcc", "val_selection")},
            "resumed_from": resumed, "steps_per_epoch": steps_per_epoch,
            loss_name: [r[loss_name] for r in history if loss_name in r], "history": history}


def _validate(steps, sources, criterion, who, progress, when: str = "") -> dict[str, Any]:
    batch = getattr(steps, "val_batch_size", None) or 1
    return validate(steps.predictor(), sources, batch, criterion, f"{who} val {when}".strip(), progress)


# -- the state file ---------------------------------------------------------------------------------
def _save(path: Path, steps: EpochSteps, state: dict[str, Any]) -> None:
    """Tensors and the engine's state in one safetensors file (the authority), written atomically;
    a readable .json copy of the state beside it."""
    tensors = {k: v for k, v in steps.state().items()}
    meta = {STATE_KEY: io.dumps(state)}
    if getattr(steps, "framework", "pt") == "numpy":
        from safetensors.numpy import save
    else:
        from safetensors.torch import save
    io.write_bytes_atomic(path, save({k: _contiguous(v) for k, v in tensors.items()}, metadata=meta))
    io.write_json_atomic(path.with_suffix(".json"), state)


def _contiguous(value):
    if hasattr(value, "detach"):
        return value.detach().to("cpu").contiguous()
    import numpy as np

    return np.ascontiguousarray(value)


def read_state(path: Path, framework: str = "pt") -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, state) of a training state file; one line naming the file when it is not one."""
    from iqabench.models.safe_load import read_safetensors

    tensors, meta = read_safetensors(Path(path), framework)
    if STATE_KEY not in meta:
        raise IqaError(f"{path}: not a training state written by this version of iqabench; "
                       f"delete it to start over")
    try:
        return tensors, json.loads(meta[STATE_KEY])
    except json.JSONDecodeError:
        raise IqaError(f"{path}: its training state is not valid JSON; delete it to start over") from None


def _restore(path: Path, steps: EpochSteps, compat: dict[str, Any]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    tensors, state = read_state(path, getattr(steps, "framework", "pt"))
    old = state.get("compat", {})
    diff = sorted(k for k in set(old) | set(compat) if old.get(k) != compat.get(k))
    if diff:
        raise IqaError(f"{path}: was written with other settings ({', '.join(diff)}); "
                       f"use another --results folder or delete it to start over")
    steps.load_state(tensors, str(path))
    return state


# -- small helpers ----------------------------------------------------------------------------------
def _finite(value):
    """JSON has no infinity or NaN: an undefined number is recorded as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    return {k: _finite(v) for k, v in record.items()}


def _fmt(value) -> str:
    return "n/a" if not isinstance(value, (int, float)) or not math.isfinite(value) else f"{value:.4f}"


def _bar(total: int, desc: str, progress: bool):
    """A progress bar (rate, ETA) on a terminal only, never with progress off (`--no-progress`)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True,
                disable=None if progress else True)
