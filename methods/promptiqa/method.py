"""`promptiqa` as a TrainableMethod: options, training through the engine, scoring with a prompt.

Where the scoring prompt comes from, first match wins (recorded in fingerprint() and
runtime_stats() as `prompt`: source, selection, ids, scores, pixel hash):
1. `-o prompt_file=CSV` (image,score rows): a new dataset's handful of labelled images;
2. `ctx.prompt_source` (the RunContext given to setup): the train part of the split being
   scored, with the engine's targets; k = prompt_size pairs chosen by `prompt_select` (interval |
   random with `prompt_seed`) or the fixed `prompt_ids`. The engine gives it because the class
   says `wants_prompt_source`; None when that split has no train part.
3. the prompt stored in the checkpoint: drawn the same way from the training dataset's train
   part when the model was trained, the one it was selected with on val.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import pydantic

from iqabench.api import MethodInfo, Options, RunContext, Sample, SampleSource
from iqabench.errors import IqaError
from iqabench.training import EpochTrainable, refuse_batch_option

log = logging.getLogger("iqabench.methods.promptiqa")

class PromptIQAOptions(Options):
    backbone: Literal["vit_b8", "vit_tiny"] = "vit_b8"  # vit_b8: the paper's; vit_tiny: tests and CPU trials
    backbone_weights: str | None = None  # timm-format ViT file to start training from; None: random init
    weights: str | None = None  # a trained PromptIQA model file to score with (no training)
    prompt_size: int = pydantic.Field(10, ge=1)  # k ISPs in a prompt; a training group is k + 1 images
    prompt_select: Literal["interval", "random"] = "interval"
    prompt_seed: int = 0
    prompt_ids: tuple[str, ...] | None = None  # a fixed prompt: these train images
    prompt_file: str | None = None  # CSV image,score: the prompt of a new dataset
    epochs: int = pydantic.Field(100, ge=1)
    lr: float = pydantic.Field(1e-5, gt=0)
    weight_decay: float = pydantic.Field(1e-5, ge=0)
    cosine_period: int = pydantic.Field(50, ge=1)
    random_scale_p: float = pydantic.Field(0.5, ge=0, le=1)
    random_flip_p: float = pydantic.Field(0.1, ge=0, le=1)
    hflip: bool = True

    @pydantic.model_validator(mode="before")
    @classmethod
    def _no_batch_option(cls, values):
        if isinstance(values, dict) and "groups_per_step" in values:
            raise IqaError("method promptiqa: -o groups_per_step is not an option; the groups per step are the "
                           "training batch, `iqabench train --batch-size N`")
        return refuse_batch_option(values, "promptiqa")

    @pydantic.model_validator(mode="after")
    def _prompt_ids_fit(self):
        if self.prompt_ids is not None and len(self.prompt_ids) != self.prompt_size:
            raise ValueError(f"prompt_ids names {len(self.prompt_ids)} images, prompt_size is {self.prompt_size}")
        return self


class PromptIQA(EpochTrainable):
    name = "promptiqa"
    info = MethodInfo(kind="trainable", description="PromptIQA (seed 003): MoNet ViT-B/8 encoder + image-score-pair "
                      "prompt; adapts to a dataset through k labelled images", higher_better=True,
                      score_range=(0.0, 1.0), needs_weights="optional: timm ViT-B/8 weights (-o backbone_weights) "
                      "or a trained model (-o weights)", needs_gpu=True, extra="classic")
    Options: ClassVar[type[PromptIQAOptions]] = PromptIQAOptions
    schedule_options = ("epochs",)  # `-o epochs=150` continues a 100-epoch fit
    wants_prompt_source: ClassVar[bool] = True

    def __init__(self, options: PromptIQAOptions | None = None):
        super().__init__(options)
        self.net = None
        self.init_info: dict[str, Any] | None = None  # how the network's weights came to be
        self.stored_prompt = None  # the checkpoint's prompt
        self.trained_on: str | None = None  # the dataset the checkpoint's prompt came from
        self.prompt = None
        self._tokens = None

    # -- availability ----------------------------------------------------------------------------------
    @classmethod
    def check_available(cls, options: PromptIQAOptions | None = None) -> str | None:
        import importlib.util

        options = options if options is not None else cls.Options()
        for module in ("torch", "timm"):  # looked up, not imported: this must be cheap
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install 'iqabench[classic]')"
        for key in ("backbone_weights", "weights", "prompt_file"):
            value = getattr(options, key)
            if value and not Path(value).expanduser().is_file():
                return f"{key} {value}: file not found"
        return None

    @classmethod
    def option_files(cls, options: PromptIQAOptions) -> dict[str, Path]:
        return {"prompt_file": Path(options.prompt_file)} if options.prompt_file else {}

    @classmethod
    def named_files(cls, options: PromptIQAOptions) -> dict[str, Path]:
        if not options.prompt_file:
            return {}
        from iqabench.methods.promptiqa.prompt import prompt_images

        return {f"prompt_file:{k}": v for k, v in prompt_images(options.prompt_file).items()}

    @classmethod
    def contract_options(cls, workdir: Path) -> dict[str, Any]:
        """The paper's architecture on a tiny ViT; 1 epoch of groups of 4."""
        return {"backbone": "vit_tiny", "prompt_size": 3, "epochs": 1}

    @classmethod
    def external_weights(cls, options: PromptIQAOptions) -> Path | None:
        """`-o weights=FILE` (e.g. the authors' best_model.pth.tar): scored without `iqabench train`."""
        if not options.weights:
            return None
        path = Path(options.weights).expanduser()
        if not path.is_file():
            raise IqaError(f"weights {options.weights}: file not found")
        return path

    # -- the network ---------------------------------------------------------------------------------
    def new_net(self):
        from iqabench.methods.promptiqa.model import PRESETS, PromptIQANet

        return PromptIQANet(PRESETS[self.options.backbone])

    def _initial_net(self):
        """A network to train: the backbone from the user's file, else random (and said so)."""
        from iqabench.methods.promptiqa import weights

        net = self.new_net()
        if self.options.backbone_weights:
            weights.load_backbone(net, self.options.backbone_weights)
        else:
            log.warning("promptiqa: no backbone_weights: the %s backbone starts from random weights; scores of "
                        "such a model are not the paper's (give -o backbone_weights=FILE, timm ViT format)",
                        self.options.backbone)
        self.init_info = self._init_plan()
        return net

    def setup(self, ctx: RunContext) -> None:
        """Light: the network is built by fit, load_checkpoint or (for `weights`) here."""
        super().setup(ctx)
        if self.options.weights and self.net is None:
            from iqabench.methods.promptiqa import weights

            net = self.new_net()
            self.init_info = {"backbone": self.options.backbone, "init": "weights",
                              **weights.load_full(net, self.options.weights)}
            self._install(net)

    def _install(self, net) -> None:
        self.net = net.to(self.device).eval()
        self._tokens = None

    # -- training ------------------------------------------------------------------------------------
    @classmethod
    def default_batch_size(cls, options, dataset: str | None) -> int:
        """Groups of prompt_size + 1 images per optimiser step: the paper's 6 (66 images on 6 GPUs)."""
        return 6

    def training_stages(self, train: SampleSource, workdir: Path, seed: int):
        from iqabench.methods.promptiqa.train import PromptIQASteps, draw_prompt

        o = self.options
        if o.weights:
            raise IqaError("promptiqa: weights names a trained model to score with; drop -o weights to train")
        workdir = Path(workdir)
        init = self._init_plan()
        net_meta = {"net": self._config().to_dict(), "backbone": o.backbone, "init": init, "dataset": self.dataset}
        def member_prompts():  # a training mix: one prompt per member, from its own train images
            from iqabench.layout import slug

            return {m: draw_prompt(SampleSource(ids, train.load), o, self._size(), f"train part of {m}",
                                   workdir / f"targets.train.{slug(m)}.jsonl") for m, ids in train.groups.items()}

        steps = PromptIQASteps(o, self.device, self._initial_net, init, train, seed, self.batch_size,
                               lambda: draw_prompt(train, o, self._size(), "checkpoint", workdir / "targets.train.jsonl"),
                               net_meta, member_prompts if getattr(train, "groups", None) else None)
        yield steps
        self._load(workdir, warn=False)
        return {"prompt": steps.prompt.describe(),
                **({"val_prompts": {m: p.describe() for m, p in steps.member_prompts.items()}}
                   if steps.member_prompts else {})}

    def _init_plan(self) -> dict[str, Any]:
        """How training starts (part of what a resumed fit must match)."""
        from iqabench.methods.promptiqa.weights import file_sha256

        o = self.options
        if not o.backbone_weights:
            return {"backbone": o.backbone, "init": "random"}
        path = Path(o.backbone_weights).expanduser()
        return {"backbone": o.backbone, "init": "file", "file": str(path), "sha256": file_sha256(path)}

    # -- checkpoint ----------------------------------------------------------------------------------
    def load_checkpoint(self, workdir: Path) -> None:
        self._load(workdir, warn=True)

    def _load(self, workdir: Path, warn: bool) -> None:
        from iqabench.methods.promptiqa import weights
        from iqabench.methods.promptiqa.model import NetConfig, PromptIQANet
        from iqabench.methods.promptiqa.prompt import Prompt
        from iqabench.methods.promptiqa.train import CHECKPOINT, PROMPT_PIXELS, PROMPT_SCORES

        path = Path(workdir) / CHECKPOINT
        tensors, meta = weights.read_tensors_with_meta(path)
        if not {"net", "prompt"} <= meta.keys() or not {PROMPT_PIXELS, PROMPT_SCORES} <= tensors.keys():
            raise IqaError(f"{path}: not a PromptIQA checkpoint (no network description or no prompt)")
        config = NetConfig.from_dict(meta["net"])
        if config != self._config():
            raise IqaError(f"{path}: a {meta.get('backbone')} network, the options ask for {self.options.backbone}")
        net = PromptIQANet(config)
        pixels, scores = tensors.pop(PROMPT_PIXELS), tensors.pop(PROMPT_SCORES)
        weights.load_into(net, tensors, path, "a PromptIQA checkpoint for this network")
        self.init_info = {**meta.get("init", {}), "checkpoint": str(path)}
        if warn and self.init_info.get("init") == "random":
            log.warning("promptiqa: %s was trained from a randomly initialised backbone: its scores are not the "
                        "paper's", path)
        info = meta["prompt"]
        self.stored_prompt = Prompt(list(info["ids"]), [float(s) for s in scores], pixels, "checkpoint",
                                    info["selection"])
        self.trained_on = meta.get("dataset")
        self._install(net)

    # -- scoring -------------------------------------------------------------------------------------
    def _config(self):
        from iqabench.methods.promptiqa.model import PRESETS

        return PRESETS[self.options.backbone]

    def _size(self) -> int:
        return self._config().img_size

    def resolve_prompt(self):
        """The scoring prompt (module docstring: file, then the runner's source, then the checkpoint)."""
        from iqabench.methods.promptiqa.prompt import read_prompt_file
        from iqabench.methods.promptiqa.train import draw_prompt

        o = self.options
        if o.prompt_file:
            return read_prompt_file(o.prompt_file, self._size())
        source = self.ctx.prompt_source
        if source is not None and len(source):
            return draw_prompt(source, o, self._size(), "engine", self._targets_cache(source))
        if self.stored_prompt is not None:
            stored = self.stored_prompt
            if self.trained_on and self.dataset and self.trained_on != self.dataset:
                log.warning("promptiqa: scoring %s with the prompt drawn from %s's train part when the model was "
                            "trained; give -o prompt_file=CSV for a prompt of %s's own", self.dataset,
                            self.trained_on, self.dataset)
            if len(stored.ids) != o.prompt_size:
                raise IqaError(f"promptiqa: the checkpoint's prompt has {len(stored.ids)} pairs, prompt_size is "
                               f"{o.prompt_size}; give -o prompt_file=CSV")
            return stored
        raise IqaError("promptiqa: no prompt to score with: give -o prompt_file=CSV (image,score rows in [0, 1]); "
                       "a model from -o weights carries none")

    def _targets_cache(self, source) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(json.dumps([self.dataset, list(source.ids)]).encode()).hexdigest()[:16]
        folder = self.cache_dir / "promptiqa"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"targets-{key}.jsonl"

    def _prompt_tokens(self):
        import torch

        from iqabench.methods.promptiqa.prompt import normalise

        if self._tokens is None:
            if self.net is None:
                raise IqaError("promptiqa: no model loaded (train it first, or give -o weights=FILE)")
            self.prompt = self.resolve_prompt()
            log.info("promptiqa: prompt of %d pairs from the %s (%s)", len(self.prompt.ids), self.prompt.source,
                     self.prompt.selection)
            with torch.no_grad():
                self._tokens = self.net.prompt_tokens(normalise(self.prompt.pixels).to(self.device),
                                                      torch.tensor(self.prompt.scores, device=self.device))
        return self._tokens

    def score(self, samples: Sequence[Sample]) -> list[float]:
        import torch

        from iqabench.methods.promptiqa.prompt import normalise, resize_pixels

        tokens = self._prompt_tokens()
        pixels = normalise(resize_pixels([s.image for s in samples], self._size())).to(self.device)
        with torch.no_grad():
            return [float(v) for v in self.net.predict(pixels, tokens).cpu()]

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        if self.init_info is not None:
            out["init"] = self.init_info
        if self.prompt is not None:
            out["prompt"] = self.prompt.describe()
        return out

    def runtime_stats(self) -> dict[str, Any]:
        if self.prompt is None:
            return {}
        return {"prompt": self.prompt.describe()}

    def teardown(self) -> None:
        self._tokens = None

