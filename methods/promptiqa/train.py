"""The PromptIQA training recipe (seed 003, sections 3.2 F and 4.1), resumable after a kill.

- Each epoch the train part is shuffled (seeded by seed and epoch) and cut into groups of
  k + 1 = prompt_size + 1 images (an incomplete last group is dropped); in a group every image is
  a target once, with the other k image-score pairs as its prompt. `groups_per_step` groups make
  one optimiser step (the paper: 66 images on 6 GPUs = 6 groups of 11).
- Scores are the engine's targets ([0, 1], higher is better); per group, random scaling
  (p = 0.5, S / max(S), Eq. 4) then random flipping (p = 0.1, alpha - S with alpha = 1). The
  authors' code divides by a uniform draw in [max(S), 1] instead of max(S); we follow the paper.
- Images: bicubic resize to the network's size, random horizontal flip (p = 0.5, the authors'
  code), mean 0.5 / std 0.5. Left out: the per-dataset SPAQ resize (the engine gives every
  dataset the same path) and the authors' cv2 resize (PIL's bicubic is used).
- L1 loss; Adam, lr 1e-5, weight decay 1e-5; cosine annealing restarted every `cosine_period`
  (50) epochs; 100 epochs.
- Selection: after every epoch the val part is scored with the fixed prompt drawn from the train
  part (as at test time); the epoch with the best val SRCC is kept. The untrained network is
  scored once first (epoch 0 of the history), for reference; it is never selected. A split
  without a val part (the PromptIQA protocol's ratio80-0-20 splits) gets no selection: the last
  epoch is kept, as the paper's fixed schedule (recorded as `selection`). The authors' code
  selected on the test part, which this project never does.

Files in the workdir: `checkpoint.safetensors` (the selected network, the prompt's pixels and
scores; JSON metadata) and `checkpoint.json` (a readable copy of that metadata);
`state.safetensors` (last epoch's network and Adam state; its metadata holds epoch, history,
best and the settings a resume must share) rewritten atomically after every epoch, with
`state.json` a readable copy; `targets.train.jsonl`, the train targets read for the prompt.
"""
from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iqabench import io
from iqabench.errors import IqaError
from iqabench.methods.promptiqa import weights
from iqabench.methods.promptiqa.prompt import Prompt, check_fixed, interval, normalise, random_ids, resize_pixels

log = logging.getLogger("iqabench.methods.promptiqa")

CHECKPOINT, CHECKPOINT_JSON = "checkpoint.safetensors", "checkpoint.json"
STATE, STATE_JSON = "state.safetensors", "state.json"
PROMPT_PIXELS, PROMPT_SCORES = "prompt.pixels", "prompt.scores"


def learning_rate(base: float, epoch: int, period: int) -> float:
    """Cosine annealing from `base` towards 0, restarted every `period` epochs (epoch counts from 1)."""
    return base * 0.5 * (1.0 + math.cos(math.pi * ((epoch - 1) % period) / period))


def augment_scores(scores, rng, scale_p: float, flip_p: float, alpha: float = 1.0):
    """Random scaling then random flipping of one group's scores (prompt and targets together)."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    applied = []
    if rng.random() < scale_p and scores.max() > 0:
        scores = scores / scores.max()
        applied.append("scale")
    if rng.random() < flip_p:
        scores = alpha - scores
        applied.append("flip")
    return scores, applied


def make_groups(ids: list[str], size: int, rng) -> list[list[str]]:
    order = list(ids)
    rng.shuffle(order)
    return [order[i:i + size] for i in range(0, len(order) - size + 1, size)]


def target_of(sample) -> float:
    """The engine's target; the method never orients or rescales labels itself."""
    if sample.target is None:
        raise IqaError(f"promptiqa: the engine gave no training target for image {sample.id}")
    return float(sample.target)


def collect_targets(source, cache: Path | None) -> list[tuple[str, float]]:
    """(id, target) of every image of a source, appended to a JSONL cache as read so a kill resumes."""
    done: dict[str, float] = {}
    log_file = io.JsonlLog(cache) if cache is not None else None
    try:
        if log_file is not None:
            done = {r["id"]: r["target"] for r in log_file.read()}
        for sid in source.ids:
            if sid in done:
                continue
            sample = source.load(sid)
            if sample is None:
                continue
            done[sid] = target_of(sample)
            if log_file is not None:
                log_file.append({"id": sid, "target": done[sid]})
    finally:
        if log_file is not None:
            log_file.close()
    return [(i, done[i]) for i in source.ids if i in done]


def draw_prompt(source, options, size: int, origin: str, cache: Path | None) -> Prompt:
    """k = prompt_size pairs from a source: the fixed `prompt_ids`, a seeded random draw, or interval
    selection over every target (read once, cached)."""
    k = options.prompt_size
    if options.prompt_ids:
        ids, how = check_fixed(source.ids, options.prompt_ids), "fixed list"
    elif options.prompt_select == "random":
        ids, how = random_ids(source.ids, k, options.prompt_seed), f"random (seed {options.prompt_seed})"
    else:
        ids, how = [i for i, _ in interval(collect_targets(source, cache), k)], "interval"
    images, scores = [], []
    for sid in ids:
        sample = source.load(sid)
        if sample is None:
            raise IqaError(f"promptiqa: prompt image {sid} could not be decoded (see the failures log)")
        images.append(sample.image)
        scores.append(target_of(sample))
    return Prompt(list(ids), scores, resize_pixels(images, size), origin, how)


class Trainer:
    """One fit: the network, its optimiser and the loop; `run` resumes from the workdir's state."""

    def __init__(self, options, device: str, new_net: Callable[[], Any], init_info: dict):
        self.o, self.device, self.new_net, self.init_info = options, device, new_net, init_info

    def compat(self, seed: int, n_train: int) -> dict:
        """What a resumed fit must share with the fit that wrote the state (epochs may grow)."""
        o = self.o
        return {"options": {k: v for k, v in o.model_dump(mode="json").items() if k != "epochs"},
                "seed": seed, "n_train": n_train, "init": self.init_info}

    # -- one pass ----------------------------------------------------------------------------------
    def _pixels(self, samples, rng=None):
        import torch

        pixels = resize_pixels([s.image for s in samples], self.net.config.img_size)
        if rng is not None and self.o.hflip:
            flips = torch.from_numpy(rng.random(len(samples)) < 0.5)
            pixels = torch.where(flips.view(-1, 1, 1, 1), pixels.flip(-1), pixels)
        return normalise(pixels).to(self.device)

    def evaluate(self, val, tokens) -> dict:
        import numpy as np
        import torch

        from iqabench import metrics

        preds, targets = [], []
        self.net.eval()
        with torch.no_grad():
            for samples in val.batches(max(self.o.prompt_size + 1, 8)):
                preds += self.net.predict(self._pixels(samples), tokens).cpu().tolist()
                targets += [target_of(s) for s in samples]
        self.net.train()
        p, y = np.asarray(preds), np.asarray(targets)
        ok = len(p) >= 3 and np.ptp(p) > 0 and np.ptp(y) > 0
        srcc = metrics.srcc(p, y) if ok else None
        plcc = metrics.plcc(p, y) if ok else None
        return {"val_srcc": srcc, "val_plcc": plcc, "val_n": len(p)}

    def prompt_tokens(self, prompt: Prompt):
        import torch

        self.net.eval()
        with torch.no_grad():
            tokens = self.net.prompt_tokens(normalise(prompt.pixels).to(self.device),
                                            torch.tensor(prompt.scores, device=self.device))
        self.net.train()
        return tokens

    def train_epoch(self, train, epoch: int, seed: int, optimizer) -> dict:
        import numpy as np
        import torch
        from tqdm import tqdm

        o = self.o
        rng = np.random.default_rng([seed, epoch])
        groups = make_groups(train.ids, o.prompt_size + 1, rng)
        steps = [groups[i:i + o.groups_per_step] for i in range(0, len(groups), o.groups_per_step)]
        lr = learning_rate(o.lr, epoch, o.cosine_period)
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = []
        self.net.train()
        bar = tqdm(steps, desc=f"promptiqa epoch {epoch}", unit="step", disable=not sys.stderr.isatty(), leave=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1_000_003 + epoch)  # dropout: the same draws on a resumed epoch
            for step in bar:
                optimizer.zero_grad(set_to_none=True)
                # an image that fails to decode is recorded by the source and left out of its group
                loaded = [[s for s in (train.load(i) for i in ids) if s is not None] for ids in step]
                used = [g for g in loaded if len(g) >= 2]
                for samples in used:
                    scores, _ = augment_scores([target_of(s) for s in samples], rng, o.random_scale_p, o.random_flip_p)
                    target = torch.tensor(scores, dtype=torch.float32, device=self.device)
                    loss = torch.nn.functional.l1_loss(self.net.forward_group(self._pixels(samples, rng), target), target)
                    if not torch.isfinite(loss):
                        raise IqaError(f"promptiqa: non-finite training loss at epoch {epoch} (lr {lr:g})")
                    (loss / len(used)).backward()  # the mean over groups, as data-parallel training averages
                    losses.append(float(loss.detach()))
                if used:
                    optimizer.step()
                bar.set_postfix(loss=f"{np.mean(losses):.4f}" if losses else "-")
        bar.close()
        if not losses:
            raise IqaError("promptiqa: no training group could be formed this epoch (images failed to decode?)")
        return {"epoch": epoch, "lr": lr, "steps": len(steps), "groups": len(losses), "train_loss": float(np.mean(losses))}

    # -- files -------------------------------------------------------------------------------------
    def save_checkpoint(self, workdir: Path, prompt: Prompt, record: dict, net_meta: dict) -> None:
        import torch

        tensors = dict(self.net.state_dict())
        tensors[PROMPT_PIXELS] = prompt.pixels
        tensors[PROMPT_SCORES] = torch.tensor(prompt.scores, dtype=torch.float32)
        meta = {"method": "promptiqa", **net_meta, "prompt": prompt.describe(), "selected": record}
        weights.save_tensors(workdir / CHECKPOINT, tensors, meta)
        io.write_json_atomic(workdir / CHECKPOINT_JSON, meta)

    def save_state(self, workdir: Path, optimizer, state: dict) -> None:
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        opt = optimizer.state_dict()
        for index, values in opt["state"].items():
            for name, value in values.items():
                tensors[f"opt.{index}.{name}"] = value
        state = {**state, "param_groups": [{k: v for k, v in g.items()} for g in opt["param_groups"]]}
        weights.save_tensors(workdir / STATE, tensors, state)
        io.write_json_atomic(workdir / STATE_JSON, state)

    def load_state(self, workdir: Path, optimizer) -> dict | None:
        path = workdir / STATE
        if not path.is_file():
            return None
        tensors, state = weights.read_tensors_with_meta(path)
        if not {"epoch", "history", "compat", "param_groups"} <= state.keys():
            raise IqaError(f"{path}: not a PromptIQA training state; delete it to start over")
        weights.load_into(self.net, {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}, path,
                          "a training state of this network (delete it to start over)")
        opt_state: dict = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, index, name = key.split(".", 2)
                opt_state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
        return state

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, train, val, workdir: Path, seed: int, prompt_of: Callable[[], Prompt], net_meta: dict) -> dict:
        import torch

        o = self.o
        workdir.mkdir(parents=True, exist_ok=True)
        if len(train) < o.prompt_size + 1:
            raise IqaError(f"promptiqa: {len(train)} train images, a training group needs prompt_size + 1 = "
                           f"{o.prompt_size + 1}")
        selection = "val SRCC" if len(val) else "last epoch (no val part)"
        if not len(val):
            log.warning("promptiqa: the split has no val part: no selection, the last epoch is kept "
                        "(the paper's fixed schedule)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = self.new_net().to(self.device)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        compat = self.compat(seed, len(train))
        state = self.load_state(workdir, optimizer)
        resumed_from = None
        if state is not None:
            diff = sorted(k for k in compat if state.get("compat", {}).get(k) != compat[k])
            if diff:
                raise IqaError(f"{workdir / STATE}: written by a fit with other settings ({', '.join(diff)}); "
                               "use another --results folder or delete it to start over")
            resumed_from = state["epoch"]
            log.info("promptiqa: resuming after epoch %d of %d", state["epoch"], o.epochs)
        prompt = prompt_of()
        if state is None:
            before = {"epoch": 0, **(self.evaluate(val, self.prompt_tokens(prompt)) if len(val) else {})}
            log.info("promptiqa: untrained network: val SRCC %s", _fmt(before.get("val_srcc")))
            state = {"epoch": 0, "history": [before], "best_epoch": None, "best_srcc": None, "compat": compat,
                     "selection": selection}
        best = state["best_srcc"] if state["best_srcc"] is not None else -math.inf
        for epoch in range(state["epoch"] + 1, o.epochs + 1):
            record = self.train_epoch(train, epoch, seed, optimizer)
            if len(val):
                record.update(self.evaluate(val, self.prompt_tokens(prompt)))
                srcc = record["val_srcc"] if record["val_srcc"] is not None else -math.inf
                gain = state["best_epoch"] is None or srcc > best
            else:
                srcc, gain = -math.inf, True
            if gain:
                best = srcc
                state.update(best_epoch=epoch, best_srcc=record.get("val_srcc"))
                self.save_checkpoint(workdir, prompt, {**record, "selection": selection}, net_meta)
            state["history"].append(record)
            state["epoch"] = epoch
            self.save_state(workdir, optimizer, state)
            log.info("promptiqa: epoch %d/%d lr %.3g loss %.5f val SRCC %s PLCC %s%s", epoch, o.epochs, record["lr"],
                     record["train_loss"], _fmt(record.get("val_srcc")), _fmt(record.get("val_plcc")),
                     " (kept)" if gain else "")
        history = state["history"]
        best_record = next((r for r in history if r["epoch"] == state["best_epoch"]), {})
        return {"best_epoch": state["best_epoch"], "selection": selection,
                "best_val": {k: best_record.get(k) for k in ("val_srcc", "val_plcc")},
                "untrained_val_srcc": history[0].get("val_srcc"), "epochs_run": state["epoch"],
                "resumed_from_epoch": resumed_from, "train_loss": [r["train_loss"] for r in history[1:]],
                "prompt": prompt.describe(), "history": history}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
