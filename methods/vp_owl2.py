"""vp-owl2 (seed 000): a pixel-space visual prompt trained on a frozen MLLM for NR-IQA.

score(x) = softmax quality of the frozen model on normalise(clamp(x + tanh(p), 0, 1)),
read as (e^good + e^fine) / (e^good + e^fine + e^poor + e^bad) at the answer position. The
images reach x through softmax-owl2's pipeline (SeedPipelineOptions, SoftmaxScorer): with a
zero prompt the two methods give the same scores.
Training: MSE between score and the sample's `target` (the engine's label, oriented higher is
better and scaled to [0, 1] from the card's range: KADID dmos/5, KonIQ MOS/100, AGIQA MOS/5 as
the seed), plain SGD without momentum at a constant lr of 60, random horizontal flips
(p = 0.5), one val pass per epoch, the best epoch kept by (SRCC + PLCC) / 2 on the val targets,
early stop after `patience` epochs without gain (the loop, resume and selection are
iqabench.training's). The training batch is `iqabench train --batch-size`; unset, it and the
epochs are the paper's recipe (RECIPES, keyed by the dataset name the engine passes).

A published prompt (the authors' visual_prompt.pth, or a .safetensors) is scored without
training through `-o prompt_path=FILE`; `external_weights` names that file to the engine.

Files in the training workdir:
- prompt.safetensors / prompt.json: the selected prompt (tensor names of the public code),
  its configuration, epoch and val scores (the json is a readable copy of the metadata);
- state.safetensors / state.json: the last epoch's prompt and the engine's training state
  (epoch, seed, history, selection), rewritten atomically after every epoch by
  iqabench.training, which resumes from it. The safetensors metadata is the authority.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import pydantic

from iqabench.api import MethodInfo, RunContext, Sample, SampleSource
from iqabench.errors import IqaError
from iqabench.methods.visual_prompt import PromptConfig, VisualPrompt, prompt_figure, read_prompt_file, save_prompt_file
from iqabench.models.backend import ResizePolicy
from iqabench.models.scoring import (
    Normalization,
    SeedPipelineOptions,
    SoftmaxScorer,
    backend_unavailable,
    mllm_info,
    weights_on_disk,
)
from iqabench.training import EpochTrainable, refuse_batch_option

log = logging.getLogger("iqabench.methods.vp")

# dataset name -> (batch size, epochs), seed 000 section 4.2; other datasets: DEFAULT_RECIPE
RECIPES: dict[str, tuple[int, int]] = {"kadid10k": (32, 25), "koniq10k": (4, 25), "agiqa3k": (4, 35)}
DEFAULT_RECIPE = (4, 25)  # the KonIQ-10k recipe: small batches suit any in-the-wild set and fit in memory
# dataset name -> the split seed 000 published with its code (datasets/<name>/splits/): the default of
# `run` and `train` for these methods when --split is not given
RECIPE_SPLITS: dict[str, str] = {"kadid10k": "seed000-vp", "agiqa3k": "seed000-vp"}

PROMPT_FILE, PROMPT_JSON = "prompt.safetensors", "prompt.json"
STATE_FILE, STATE_JSON = "state.safetensors", "state.json"


class VisualPromptOptions(SeedPipelineOptions):
    """Prompt shape, training schedule and where a published prompt comes from. The question,
    answer words, resize and normalisation are softmax-owl2's (the seed's pipeline)."""

    vp_type: Literal["padding", "patch_center", "patch_topleft", "full"] = "padding"
    vp_size: int = pydantic.Field(30, gt=0)
    epochs: int | None = pydantic.Field(None, ge=1)  # None: the dataset's recipe
    lr: float = pydantic.Field(60.0, gt=0)
    stage2_epochs: int = pydantic.Field(0, ge=0)  # the paper's KADID padding-30 run: 25 more at lr 20
    stage2_lr: float = pydantic.Field(20.0, gt=0)
    max_steps: int | None = pydantic.Field(None, ge=1)  # optimizer steps per epoch at most (short runs)
    patience: int = pydantic.Field(6, ge=1)
    flip: bool = True
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # autocast on CUDA only; auto = bf16 if supported
    prompt_path: str | None = None  # a published prompt (.safetensors, or .pt/.pth read as plain tensors)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _no_batch_option(cls, values):
        return refuse_batch_option(values, "vp-owl2/vp-llava")


class LlavaVisualPromptOptions(VisualPromptOptions):
    backend: str = "llava"
    backend_path: str = "llava-hf/llava-1.5-7b-hf"
    resize: ResizePolicy = "model"  # the hf-vlm backend crops as the model's processor
    normalization: Normalization = "model"


class VisualPromptMethod(EpochTrainable):
    """The shared implementation; subclasses choose the backend defaults."""

    Options: ClassVar[type[VisualPromptOptions]] = VisualPromptOptions
    schedule_options = ("epochs", "patience")  # `iqabench train -o epochs=40` continues a 25-epoch run

    def __init__(self, options: VisualPromptOptions | None = None):
        super().__init__(options)
        self.scorer: SoftmaxScorer | None = None
        self.prompt: VisualPrompt | None = None
        self._pending: tuple[dict[str, Any], str] | None = None  # tensors read before the backend exists

    # -- availability and setup ------------------------------------------------------------
    @classmethod
    def contract_options(cls, workdir) -> dict:
        """A tiny model and a short schedule: 2 epochs of at most 2 steps, a 4-px padding prompt."""
        from iqabench.models.tiny import tiny_model_path

        return {"backend_path": tiny_model_path(cls.Options().backend, workdir), "vp_size": 4, "epochs": 2,
                "max_steps": 2}

    @classmethod
    def check_available(cls, options: VisualPromptOptions | None = None) -> str | None:
        options = options if options is not None else cls.Options()
        if options.prompt_path and not Path(options.prompt_path).expanduser().is_file():
            return f"prompt_path {options.prompt_path}: file not found"
        return backend_unavailable(options)

    @classmethod
    def checkpoint_files(cls) -> tuple[str, ...]:
        return (PROMPT_FILE, PROMPT_JSON)

    @classmethod
    def recipe_split(cls, dataset: str) -> tuple[str, str] | None:
        name = RECIPE_SPLITS.get(dataset)
        return (name, "seed 000's published split (60/20/20, from the paper's code)") if name else None

    @classmethod
    def missing_checkpoint_help(cls, options: VisualPromptOptions, train_command: str) -> str | None:
        """No trained prompt and no base weights on this machine: one line naming both and the two ways on."""
        if weights_on_disk(options):
            return None
        return (f"no trained prompt here, and the {options.backend} weights {options.backend_path} are not on this "
                f"machine either. Two ways on: train a prompt with a local copy of the weights, "
                f"`{train_command} -o backend_path=DIR`; or score a published prompt (e.g. the authors' "
                f"visual_prompt.pth) without training, with this run command and `-o prompt_path=FILE` "
                f"(it still needs the weights: -o backend_path=DIR, or `hf download {options.backend_path}`)")

    @classmethod
    def external_weights(cls, options: VisualPromptOptions | None = None) -> Path | None:
        """The published prompt file `-o prompt_path=FILE` names, or None. With a file, the engine
        scores without a trained checkpoint (setup() reads the file) and keys the run on its bytes."""
        options = options if options is not None else cls.Options()
        if not options.prompt_path:
            return None
        path = Path(options.prompt_path).expanduser()
        if not path.is_file():
            raise IqaError(f"prompt_path {options.prompt_path}: file not found")
        return path

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        from iqabench.models.backend import load_backend

        if self.scorer is None:
            self.scorer = SoftmaxScorer(load_backend(self.options.backend_spec(), self.device), self.options)
        if not getattr(self.scorer.backend, "pixel_space", True):
            raise IqaError(f"{self.name}: backend {self.options.backend} tiles images in its processor; a pixel-space "
                           "visual prompt needs a fixed image grid (owl2, llava, paligemma, gemma3)")
        if self._pending is not None:
            state, source = self._pending
            self._install(state, source)
        elif self.prompt is None and self.options.prompt_path:
            state, _ = read_prompt_file(self.options.prompt_path)
            self._install(state, self.options.prompt_path)

    def prompt_config(self) -> PromptConfig:
        if self.scorer is None:
            raise IqaError(f"{self.name}: setup() must run before the prompt is built")
        return PromptConfig(self.options.vp_type, self.options.vp_size, self.scorer.backend.image_size)

    def _install(self, state: dict[str, Any], source: str) -> None:
        prompt = VisualPrompt(self.prompt_config(), device=self.device)
        prompt.load_state_dict(state, source)
        prompt.tensors = {k: v.requires_grad_(False) for k, v in prompt.tensors.items()}
        self.prompt, self._pending = prompt, None

    # -- scoring -------------------------------------------------------------------------------
    def _autocast(self):
        import contextlib

        import torch

        if not str(self.device).startswith("cuda") or self.options.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.options.amp == "fp16" else torch.bfloat16
        if self.options.amp == "auto" and not torch.cuda.is_bf16_supported():
            dtype = torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def _prompted_scores(self, prompt: VisualPrompt, pixels):
        with self._autocast():
            return self.scorer.score_pixels(prompt.apply(pixels)).float()

    def score(self, samples: Sequence[Sample]) -> list[float]:
        import torch

        self.setup(self.ctx)
        if self.prompt is None:
            raise IqaError(f"{self.name}: no visual prompt loaded; train one (iqabench train) or set -o prompt_path=FILE")
        pixels = self.scorer.pixels([s.image for s in samples])
        with torch.no_grad():
            scores = self._prompted_scores(self.prompt, pixels)
        return [float(v) for v in scores.cpu()]

    def figure(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Seed 000's Fig. 2: the loaded prompt applied to these images, with their scores."""
        if self.prompt is None:
            raise IqaError(f"{self.name}: no visual prompt loaded; train one (iqabench train) or set -o prompt_path=FILE")
        title = f"{self.name}: {self.options.vp_type} prompt on {self.options.backend_path}"
        return {"prompt": prompt_figure(self.prompt, self.scorer, samples, title)}

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        if self.options.prompt_path and Path(self.options.prompt_path).expanduser().is_file():
            # the engine asks before setup(): hash the file itself (at most a few MB)
            from iqabench.io import sha256_file

            out["prompt_file_sha256"] = sha256_file(Path(self.options.prompt_path).expanduser())
        if self.scorer is not None:
            out.update(self.scorer.fingerprint())
        if self.prompt is not None:
            out["prompt_sha"] = self.prompt.digest()
        return out

    # -- checkpoints ---------------------------------------------------------------------------
    def load_checkpoint(self, workdir: Path) -> None:
        path = Path(workdir) / PROMPT_FILE
        if self.options.prompt_path:
            raise IqaError(f"{self.name}: both a checkpoint ({workdir}) and prompt_path ({self.options.prompt_path}) "
                           f"were given; score with one of them")
        state, meta = read_prompt_file(path)
        saved = json.loads(meta.get("config", "{}"))
        want = {"type": self.options.vp_type, "size": self.options.vp_size if self.options.vp_type != "full" else 0}
        if saved and {k: saved.get(k) for k in want} != want:
            raise IqaError(f"{path}: holds a {saved.get('type')} prompt of {saved.get('size')} px, "
                           f"but the options ask for {want['type']} of {want['size']} px")
        if self.scorer is None:
            self._pending = (state, str(path))
        else:
            self._install(state, str(path))

    def _write_best(self, workdir: Path, prompt: VisualPrompt, record: dict[str, Any]) -> None:
        info = {"config": prompt.config.to_dict(), "epoch": record["epoch"], "val": {
            k: record[k] for k in ("val_srcc", "val_plcc", "val_selection")},
            "method": self.name, "options": self.options.model_dump(mode="json")}
        meta = {"config": json.dumps(info["config"]), "info": json.dumps(info)}
        save_prompt_file(workdir / PROMPT_FILE, prompt.state_dict(), meta)
        _write_json(workdir / PROMPT_JSON, info)

    # -- training ------------------------------------------------------------------------------
    @classmethod
    def default_batch_size(cls, options, dataset: str | None) -> int:
        """The seed's batch for the dataset (RECIPES): the training batch when --batch-size is unset."""
        return _recipe_for(dataset)[0][0]

    def recipe(self) -> tuple[int, int, str]:
        """(batch size, epochs, where the epochs came from): the training batch is --batch-size or
        the recipe's (resolved by the engine), the epochs -o epochs or the recipe's."""
        (_, epochs), origin = _recipe_for(self.dataset)
        return self.batch_size, self.options.epochs or epochs, origin

    def training_stages(self, train: SampleSource, workdir: Path, seed: int):
        if self.options.prompt_path:
            raise IqaError(f"{self.name}: prompt_path names a published prompt to score with; "
                           f"drop -o prompt_path to train a prompt of your own")
        self.setup(self.ctx)
        steps = _PromptSteps(self, train, seed)
        log.info("%s: training a %s prompt (%d params) for %d epochs, batch %d (%s)", self.name,
                 steps.config.type, steps.config.num_params(), steps.epochs, steps.batch, steps.origin)
        yield steps
        self.load_checkpoint(workdir)
        return {"batch_size": steps.batch, "recipe": steps.origin, "prompt_params": steps.config.num_params()}


def _recipe_for(dataset: str | None) -> tuple[tuple[int, int], str]:
    name = dataset or ""
    base = next((r for key, r in RECIPES.items() if name == key or name.startswith(key + "-")), None)
    return (base or DEFAULT_RECIPE), (f"recipe {name}" if base else "default recipe")


class _PromptSteps:
    """One visual prompt's training, run by iqabench.training: plain SGD at a constant lr (the
    second lr after `epochs` when stage2_epochs > 0), MSE to the targets, seeded random flips."""

    name = ""
    state_file = STATE_FILE
    criterion = "srcc_plcc"

    def __init__(self, method: VisualPromptMethod, train: SampleSource, seed: int):
        import torch

        o = method.options
        self.method, self.train, self.seed = method, train, seed
        self.batch, base_epochs, self.origin = method.recipe()
        self.base_epochs, self.epochs = base_epochs, base_epochs + o.stage2_epochs
        self.patience, self.val_batch_size = o.patience, self.batch
        self.config = method.prompt_config()
        self.prompt = VisualPrompt(self.config, seed=seed, device=method.device)
        self.optimizer = torch.optim.SGD(self.prompt.parameters(), lr=o.lr, momentum=0.0)
        self.scaler = torch.amp.GradScaler("cuda") if str(method.device).startswith("cuda") and o.amp == "fp16" else None
        self.lr, self.flip_gen = o.lr, None

    def compat(self) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote the state."""
        o = self.method.options
        return {"prompt": self.config.to_dict(), "question": o.prompt, "words": self.method.scorer.words,
                "normalization": o.normalization, "lr": o.lr, "stage2_lr": o.stage2_lr, "batch_size": self.batch,
                "seed": self.seed, "flip": o.flip, "backend_path": o.backend_path, "dtype": o.dtype, "resize": o.resize}

    def state(self) -> dict[str, Any]:
        return self.prompt.state_dict()

    def load_state(self, tensors: dict[str, Any], source: str) -> None:
        self.prompt.load_state_dict(tensors, source)

    @contextlib.contextmanager
    def epoch(self, epoch: int):
        import random

        import torch

        o = self.method.options
        self.lr = o.lr if epoch <= self.base_epochs else o.stage2_lr
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.flip_gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = list(self.train.ids)
        random.Random(self.seed * 1000 + epoch).shuffle(order)
        batches = [order[i:i + self.batch] for i in range(0, len(order), self.batch)]
        yield batches[: o.max_steps] if o.max_steps is not None else batches

    def epoch_info(self, epoch: int) -> dict[str, Any]:
        return {"lr": self.lr}

    def step(self, ids: list[str], at) -> tuple[float, int]:
        import torch

        from iqabench.training import targets_of

        m = self.method
        samples = [s for s in (self.train.load(i) for i in ids) if s is not None]
        if not samples:
            return 0.0, 0
        targets = torch.tensor(targets_of(samples, m.name), dtype=torch.float32, device=m.device)
        pixels = m.scorer.pixels([s.image for s in samples])
        if m.options.flip:
            flips = (torch.rand(len(samples), generator=self.flip_gen) < 0.5).to(pixels.device)
            pixels = torch.where(flips.view(-1, 1, 1, 1), pixels.flip(-1), pixels)
        loss = torch.nn.functional.mse_loss(m._prompted_scores(self.prompt, pixels), targets)
        if not torch.isfinite(loss):
            raise IqaError(f"{m.name}: non-finite training loss at epoch {at.epoch}, step {at.index + 1} (lr {self.lr})")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return float(loss.detach()) * len(samples), len(samples)

    def predictor(self):
        import torch

        m = self.method

        def predict(samples):
            with torch.no_grad():
                return m._prompted_scores(self.prompt, m.scorer.pixels([s.image for s in samples])).cpu().tolist()

        return predict

    def save_selected(self, workdir: Path, record: dict[str, Any]) -> None:
        self.method._write_best(workdir, self.prompt, record)


def import_prompt(source: str | Path, workdir: str | Path, vp_type: str, vp_size: int, image_size: int = 448,
                  method: str = "vp-owl2") -> Path:
    """Turn a published prompt file (e.g. the authors' visual_prompt.pth) into a checkpoint folder
    that `iqabench run --checkpoint DIR` and `load_checkpoint` read. Shapes are checked."""
    from iqabench.methods.visual_prompt import check_state

    state, _ = read_prompt_file(source)
    config = PromptConfig(vp_type, vp_size, image_size)
    check_state(state, config, str(source))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    info = {"config": config.to_dict(), "epoch": None, "val": None, "method": method, "imported_from": str(source)}
    save_prompt_file(workdir / PROMPT_FILE, {k: v.float().contiguous() for k, v in state.items()},
                     {"config": json.dumps(info["config"]), "info": json.dumps(info)})
    _write_json(workdir / PROMPT_JSON, info)
    return workdir


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _info(description: str, weights: str) -> MethodInfo:
    return mllm_info(description, weights, kind="trainable", fixed_grid=True)


class VpOwl2(VisualPromptMethod):
    name = "vp-owl2"
    aliases = ("pixelprompt", "vp-mplug-owl2")
    info = _info("visual prompt (pixel padding/patch/overlay) trained on frozen mPLUG-Owl2; softmax good+fine vs "
                 "poor+bad through softmax-owl2's pipeline; -o prompt_path=FILE scores a published prompt",
                 "MAGAer13/mplug-owl2-llama2-7b (~16 GB)")
    Options = VisualPromptOptions


class VpLlava(VisualPromptMethod):
    name = "vp-llava"
    info = _info("visual prompt trained on frozen LLaVA-1.5 (seed 000's method on another MLLM)",
                 "llava-hf/llava-1.5-7b-hf (~14 GB)")
    Options = LlavaVisualPromptOptions
