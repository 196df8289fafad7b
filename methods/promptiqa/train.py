"""The PromptIQA training recipe (seed 003, sections 3.2 F and 4.1), resumable after a kill.

- Each epoch the train part is shuffled (seeded by seed and epoch) and cut into groups of
  k + 1 = prompt_size + 1 images (an incomplete last group is dropped); in a group every image is
  a target once, with the other k image-score pairs as its prompt. The training batch
  (`iqabench train --batch-size`, 6 when unset) is the number of groups in one optimiser step
  (the paper: 66 images on 6 GPUs = 6 groups of 11).
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
  epoch is kept, as the paper's fixed schedule (recorded as `criterion`). The authors' code
  selected on the test part, which this project never does. The loop, resume and selection are
  iqabench.training's; `PromptIQASteps` supplies the steps.

Files in the workdir: `checkpoint.safetensors` (the selected network, the prompt's pixels and
scores; JSON metadata) and `checkpoint.json` (a readable copy of that metadata);
`state.safetensors` (last epoch's network and Adam state; its metadata holds epoch, history,
best and the settings a resume must share) rewritten atomically after every epoch, with
`state.json` a readable copy; `targets.train.jsonl`, the train targets read for the prompt.
"""
from __future__ import annotations

import contextlib
import logging
import math
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


def make_groups(ids: list[str], size: int, rng, members: dict[str, list[str]] | None = None) -> list[list[str]]:
    """Groups of `size` ids. A training mix (`members`: each dataset's ids) groups within each
    dataset, as the paper draws each prompt from one dataset, and then shuffles the groups."""
    if not members:
        order = list(ids)
        rng.shuffle(order)
        return [order[i:i + size] for i in range(0, len(order) - size + 1, size)]
    groups = [group for own in members.values() for group in make_groups(own, size, rng)]
    order = rng.permutation(len(groups))
    return [groups[i] for i in order]


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


class PromptIQASteps:
    """One fit of the network, run by iqabench.training: groups of k + 1 images, `groups_per_step`
    (the training batch) groups a step; Adam with the cosine lr set at each epoch's start."""

    name, state_file, criterion, validate_untrained = "", STATE, "srcc", True

    def __init__(self, options, device: str, new_net: Callable[[], Any], init_info: dict, train, seed: int,
                 groups_per_step: int, prompt_of: Callable[[], Prompt], net_meta: dict,
                 member_prompts_of: Callable[[], dict[str, Prompt]] | None = None):
        import torch

        o = self.o = options
        if len(train) < o.prompt_size + 1:
            raise IqaError(f"promptiqa: {len(train)} train images, a training group needs prompt_size + 1 = "
                           f"{o.prompt_size + 1}")
        self.device, self.init_info, self.train, self.seed = device, init_info, train, seed
        self.groups_per_step, self.net_meta, self.epochs = groups_per_step, net_meta, o.epochs
        self.val_batch_size = max(o.prompt_size + 1, 8)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = new_net().to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        self.prompt = prompt_of()
        # a training mix: each member's val part is scored with a prompt from its own train part, as
        # a dataset is at test time (the saved checkpoint keeps the prompt drawn from the whole mix)
        self.member_prompts = member_prompts_of() if member_prompts_of is not None else {}
        self.lr, self.rng = o.lr, None

    def compat(self) -> dict:
        """What a resumed fit must share with the fit that wrote the state (epochs may grow)."""
        return {"options": {k: v for k, v in self.o.model_dump(mode="json").items() if k != "epochs"},
                "batch_size": self.groups_per_step, "seed": self.seed, "n_train": len(self.train),
                "init": self.init_info}

    # -- state: the network and Adam's moments ---------------------------------------------------------
    def state(self) -> dict:
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        for index, values in self.optimizer.state_dict()["state"].items():
            for name, value in values.items():
                tensors[f"opt.{index}.{name}"] = value
        return tensors

    def load_state(self, tensors: dict, source: str) -> None:
        weights.load_into(self.net, {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}, source,
                          "a training state of this network (delete it to start over)")
        opt_state: dict = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, index, name = key.split(".", 2)
                opt_state.setdefault(int(index), {})[name] = value
        groups = self.optimizer.state_dict()["param_groups"]  # the lr is set again at each epoch's start
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})

    # -- one epoch ------------------------------------------------------------------------------------
    def _pixels(self, samples, rng=None):
        import torch

        pixels = resize_pixels([s.image for s in samples], self.net.config.img_size)
        if rng is not None and self.o.hflip:
            flips = torch.from_numpy(rng.random(len(samples)) < 0.5)
            pixels = torch.where(flips.view(-1, 1, 1, 1), pixels.flip(-1), pixels)
        return normalise(pixels).to(self.device)

    @contextlib.contextmanager
    def epoch(self, epoch: int):
        import numpy as np
        import torch

        self.rng = np.random.default_rng([self.seed, epoch])  # groups, then each group's augmentations
        groups = make_groups(self.train.ids, self.o.prompt_size + 1, self.rng, getattr(self.train, "groups", None))
        n = self.groups_per_step
        self.lr = learning_rate(self.o.lr, epoch, self.o.cosine_period)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.net.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + epoch)  # dropout: the same draws on a resumed epoch
            yield [groups[i:i + n] for i in range(0, len(groups), n)]

    def epoch_info(self, epoch: int) -> dict:
        return {"lr": self.lr}

    def step(self, step: list[list[str]], at) -> tuple[float, int]:
        import torch

        o = self.o
        self.optimizer.zero_grad(set_to_none=True)
        # an image that fails to decode is recorded by the source and left out of its group
        loaded = [[s for s in (self.train.load(i) for i in ids) if s is not None] for ids in step]
        used = [g for g in loaded if len(g) >= 2]
        total = 0.0
        for samples in used:
            scores, _ = augment_scores([target_of(s) for s in samples], self.rng, o.random_scale_p, o.random_flip_p)
            target = torch.tensor(scores, dtype=torch.float32, device=self.device)
            loss = torch.nn.functional.l1_loss(self.net.forward_group(self._pixels(samples, self.rng), target), target)
            if not torch.isfinite(loss):
                raise IqaError(f"promptiqa: non-finite training loss at epoch {at.epoch} (lr {self.lr:g})")
            (loss / len(used)).backward()  # the mean over groups, as data-parallel training averages
            total += float(loss.detach())
        if used:
            self.optimizer.step()
        return total, len(used)

    # -- validation and the selected checkpoint --------------------------------------------------------
    def predictor(self):
        import torch

        from iqabench.data.union import ID_SEP

        self.net.eval()

        def tokens_of(prompt: Prompt):
            with torch.no_grad():
                return self.net.prompt_tokens(normalise(prompt.pixels).to(self.device),
                                              torch.tensor(prompt.scores, device=self.device))

        tokens = tokens_of(self.prompt)
        own = {m: tokens_of(p) for m, p in self.member_prompts.items()}

        def predict(samples):
            members = {s.id.partition(ID_SEP)[0] for s in samples}
            use = own.get(next(iter(members))) if len(members) == 1 and own else None
            with torch.no_grad():
                return self.net.predict(self._pixels(samples), tokens if use is None else use).cpu().tolist()

        return predict

    def save_selected(self, workdir: Path, record: dict) -> None:
        save_checkpoint(workdir, self.net, self.prompt, record, self.net_meta)


def save_checkpoint(workdir: Path, net, prompt: Prompt, record: dict, net_meta: dict) -> None:
    """The selected network with its prompt's pixels and scores, and its metadata (json: a copy)."""
    import torch

    tensors = dict(net.state_dict())
    tensors[PROMPT_PIXELS] = prompt.pixels
    tensors[PROMPT_SCORES] = torch.tensor(prompt.scores, dtype=torch.float32)
    meta = {"method": "promptiqa", **net_meta, "prompt": prompt.describe(), "selected": record}
    weights.save_tensors(Path(workdir) / CHECKPOINT, tensors, meta)
    io.write_json_atomic(Path(workdir) / CHECKPOINT_JSON, meta)
