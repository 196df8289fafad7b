"""q-adapt (seed 002): progressive instruction tuning of an MLLM as a quality scorer.

Stage 1 attaches LoRA to the vision encoder and the language model (and tunes the connector) with
the language-model loss on instruction conversations in the Q-Instruct format
(`-o instructions=FILE`). Stage 2 freezes the adapters and trains the instruction-adaptive visual
prompt (V-T generator, T-V prompter, gated fusion; prompt_module.py) and the connector on the
engine's targets, selecting the epoch on the val split. Scores are the softmax of the quality
words on the answer's first token (Q-Bench: good vs poor after "Rate the quality of the image."),
with the prompt rewriting the vision features the connector reads (a forward pre-hook on the
connector, so the backend's own scoring path runs unchanged).

Files in the training workdir:
- adapters.safetensors / adapters.json: the LoRA tensors and the stage-1 connector, with the
  LoRA configuration (json: a readable copy of the metadata inside the safetensors file);
- prompt.safetensors / prompt.json: the selected stage-2 prompt module and connector, its sizes,
  epoch and val scores;
- stage1_state.safetensors, stage2_state.safetensors: the last saved training state of each
  stage (tensors, AdamW moments; position and history are iqabench.training's), rewritten
  atomically; the engine's epoch trainer resumes from them.

Where this differs from the paper, and why:
- the LMM is mPLUG-Owl2 (default) or LLaVA through the project's backends, not Bunny-3B (the
  paper's Table 9 also runs progressive tuning on mPLUG-Owl2);
- LoRA rank 128, alpha 256, dropout 0.05 on every linear layer of the vision encoder and the LLM,
  and lr 2e-4 (connector 2e-5), come from the public training scripts: the paper gives no LoRA
  sizes and its appendix says lr 2e-5;
- stage 2 fits the benchmark's targets (MSE of the softmax score, selection on val) instead of
  the LM loss on the whole Q-Instruct set: this is an IQA benchmark, and the score is read the
  way the paper evaluates IQA;
- the Q-Former starts random and reads the instruction with the backend's tokenizer, unless
  `-o qformer_path=` names an InstructBLIP checkpoint (the paper's start, with its BERT tokenizer);
- the Q-Former attends to every vision token (the public code drops the first, a CLS token for
  EVA-CLIP but an image patch for SigLIP);
- stage 1 runs one conversation per forward pass (no padding), accumulating gradients over the
  step, and does not truncate conversations to 2048 tokens.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from iqabench import io
from iqabench.api import RunContext, Sample, SampleSource
from iqabench.errors import IqaError
from iqabench.models.scoring import SoftmaxScorer, backend_unavailable, mllm_info
from iqabench.training import EpochTrainable

from .options import QAdaptOptions

ADAPTERS, ADAPTERS_JSON = "adapters.safetensors", "adapters.json"
PROMPT, PROMPT_JSON = "prompt.safetensors", "prompt.json"
MAX_INSTRUCTION_TOKENS = 256  # the public code truncates the Q-Former's instruction (from the left) to 256


class QAdapt(EpochTrainable):
    name = "q-adapt"
    info = mllm_info("Q-Adapt (seed 002): stage 1 LoRA on the vision encoder and LLM from Q-Instruct-format "
                     "conversations (-o instructions=FILE), stage 2 an instruction-adaptive visual prompt "
                     "(Q-Former V-T generator, T-V cross-attention, gated fusion) fit on the targets; softmax of "
                     "good vs poor", "MAGAer13/mplug-owl2-llama2-7b (~16 GB), or -o backend=llava", kind="trainable",
                     fixed_grid=True)
    Options: ClassVar[type[QAdaptOptions]] = QAdaptOptions
    schedule_options = ("patience",)

    def __init__(self, options: QAdaptOptions | None = None):
        super().__init__(options)
        self.scorer: SoftmaxScorer | None = None
        self.parts = None
        self.lora: dict[str, Any] | None = None  # LoRA parameters by name, once injected
        self.prompt = None  # the InstructionAdaptivePrompt module, once built
        self.instruction_ids = None
        self._model_dtype = None  # set when the trained connector runs in float32 inside a half-precision model

    # -- availability and setup ------------------------------------------------------------------
    @classmethod
    def check_available(cls, options: QAdaptOptions | None = None) -> str | None:
        import importlib.util

        if importlib.util.find_spec("peft") is None:
            return "needs peft for LoRA (pip install 'iqabench[mllm]')"
        return backend_unavailable(options if options is not None else cls.Options())

    @classmethod
    def checkpoint_files(cls) -> tuple[str, ...]:
        return (ADAPTERS, ADAPTERS_JSON, PROMPT, PROMPT_JSON)

    @classmethod
    def contract_options(cls, workdir) -> dict:
        """A tiny Owl2, a tiny prompt module, LoRA of rank 2, a four-conversation instruction file."""
        from iqabench.models.tiny import tiny_model_path

        from .tiny import tiny_instruction_file, tiny_options

        return {"backend_path": tiny_model_path(cls.Options().backend, workdir),
                "instructions": str(tiny_instruction_file(Path(workdir) / "q-adapt-instructions")), **tiny_options()}

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        from iqabench.models.backend import load_backend

        from .anatomy import find_parts

        if self.scorer is None:
            self.scorer = SoftmaxScorer(load_backend(self.options.backend_spec(), self.device), self.options)
            self.parts = find_parts(self.scorer.backend)
            self._hook_connector()

    def _hook_connector(self) -> None:
        """The connector's input gets the visual prompt (once built); a connector that is trained
        runs in float32 (AdamW steps of 2e-5 mostly vanish in bfloat16 weights), its input and
        output cast from and to the model's dtype."""
        import torch

        connector = self.parts.connector
        dtype = next(connector.parameters()).dtype
        if self.options.train_connector and dtype in (torch.float16, torch.bfloat16):
            connector.float()
            self._model_dtype = dtype
        connector.register_forward_pre_hook(self._connector_input)
        connector.register_forward_hook(self._connector_output)

    # -- model pieces ----------------------------------------------------------------------------
    def _ensure_lora(self, seed: int) -> None:
        from .lora import inject, lora_parameters

        if self.lora is None:
            o = self.options
            inject(self.parts, o.lora_r, o.lora_alpha, o.lora_dropout, seed)
            self.lora = lora_parameters(self.parts.model)
            for p in self.lora.values():
                p.requires_grad_(False)

    def connector_params(self) -> dict[str, Any]:
        return dict(self.parts.connector.named_parameters())

    def instruction_tokenizer(self):
        """InstructBLIP's BERT tokenizer with -o qformer_path, else the backend's own."""
        if self.options.qformer_path:
            from .qformer_init import load_tokenizer

            return load_tokenizer(self.options.qformer_path, self.options.qformer_revision)
        return self.scorer.backend.tokenizer

    def prompt_sizes(self, vocab_size: int, max_positions: int = 512):
        from .prompt_module import PromptSizes

        o = self.options
        return PromptSizes(feature_dim=self.parts.feature_dim, vocab_size=vocab_size, qformer_max_positions=max_positions,
                           qformer_layers=o.qformer_layers, qformer_hidden=o.qformer_hidden,
                           qformer_heads=o.qformer_heads, qformer_intermediate=o.qformer_intermediate,
                           qformer_cross_every=o.qformer_cross_every, qformer_width=o.qformer_width,
                           queries=o.queries, gate_hidden=o.gate_hidden, dropout=o.prompt_dropout,
                           scale=o.prompt_scale)

    def new_prompt_inputs(self):
        """(sizes, instruction ids) for a prompt module trained from scratch or from InstructBLIP."""
        o = self.options
        tokenizer = self.instruction_tokenizer()
        vocab, positions = len(tokenizer), 512
        if o.qformer_path:
            from .qformer_init import read_config, sizes_of

            config = read_config(o.qformer_path, o.qformer_revision)
            fixed = sizes_of(config)
            diff = {k: (getattr(o, k), v) for k, v in fixed.items() if getattr(o, k) != v}
            if diff:
                raise IqaError(f"qformer_path {o.qformer_path}: its Q-Former has "
                               f"{', '.join(f'{k}={v}' for k, (_, v) in diff.items())}; the options say "
                               f"{', '.join(f'{k}={mine}' for k, (mine, _) in diff.items())}")
            vocab = int(config["qformer_config"].get("vocab_size", vocab))
            positions = int(config["qformer_config"].get("max_position_embeddings", positions))
        ids = list(tokenizer(o.instruction_text()).input_ids)[-min(MAX_INSTRUCTION_TOKENS, positions):]
        if not ids:
            raise IqaError("q-adapt: the instruction for the Q-Former is empty (set -o instruction=TEXT)")
        if max(ids) >= vocab:
            raise IqaError(f"q-adapt: the instruction's token {max(ids)} is outside the Q-Former's {vocab} words")
        return self.prompt_sizes(vocab, positions), ids

    def _build_prompt(self, sizes, ids: list[int], seed: int) -> None:
        """The prompt module (initialised from `seed`), hooked in front of the connector."""
        import torch

        from .prompt_module import InstructionAdaptivePrompt

        if self.prompt is not None:
            raise IqaError(f"{self.name}: the prompt module is already built")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.prompt = InstructionAdaptivePrompt(sizes).to(self.device).eval()
        self.prompt.requires_grad_(False)
        self.instruction_ids = torch.tensor(ids, dtype=torch.long, device=self.device)

    def _connector_input(self, module, args):
        """The features the connector reads become F_v + scale * F_tv once the prompt exists."""
        features = args[0]
        if self.prompt is not None:
            features = self.prompt(features, self.instruction_ids)
        if self._model_dtype is not None:
            features = features.float()
        return (features, *args[1:])

    def _connector_output(self, module, args, output):
        return output.to(self._model_dtype) if self._model_dtype is not None else output

    # -- scoring ---------------------------------------------------------------------------------
    def score(self, samples: Sequence[Sample]) -> list[float]:
        import torch

        self.setup(self.ctx)
        if self.prompt is None:
            raise IqaError(f"{self.name}: no trained prompt loaded; train first (iqabench train)")
        pixels = self.scorer.pixels([s.image for s in samples])
        with torch.no_grad():
            scores = self.scorer.score_pixels(pixels)
        return [float(v) for v in scores.float().cpu()]

    def fingerprint(self) -> dict[str, Any]:
        out = super().fingerprint()
        if self.scorer is not None:
            out.update(self.scorer.fingerprint())
        return out

    # -- checkpoints -----------------------------------------------------------------------------
    def _lora_config(self) -> dict[str, Any]:
        o = self.options
        return {"r": o.lora_r, "alpha": o.lora_alpha, "dropout": o.lora_dropout,
                "targets": len(self.parts.lora_targets()), "connector": o.train_connector}

    def write_adapters(self, workdir: Path, record: dict[str, Any] | None) -> None:
        """The LoRA tensors (and connector) after stage 1; `record` is its last epoch (None: untrained)."""
        from . import state as state_io

        groups = {"lora": self.lora}
        if self.options.train_connector:
            groups["connector"] = self.connector_params()
        info = {"method": self.name, "lora": self._lora_config(), "stage1": record,
                "backend": self.scorer.backend.fingerprint()}
        state_io.save(Path(workdir) / ADAPTERS, groups, info)
        io.write_json_atomic(Path(workdir) / ADAPTERS_JSON, info)

    def write_prompt(self, workdir: Path, record: dict[str, Any]) -> None:
        from . import state as state_io

        groups = {"prompt": dict(self.prompt.named_parameters())}
        if self.options.train_connector:
            groups["connector"] = self.connector_params()
        info = {"method": self.name, "sizes": self.prompt.sizes.to_dict(), "instruction": self.options.instruction_text(),
                "instruction_ids": self.instruction_ids.tolist(), "qformer_path": self.options.qformer_path,
                "epoch": record["epoch"], "val": {k: record.get(k) for k in ("val_srcc", "val_plcc", "val_selection")}}
        info["val"] = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in info["val"].items()}
        state_io.save(Path(workdir) / PROMPT, groups, info)
        io.write_json_atomic(Path(workdir) / PROMPT_JSON, info)

    def load_checkpoint(self, workdir: Path) -> None:
        from . import state as state_io
        from .lora import load_tensors

        self.setup(self.ctx)
        workdir = Path(workdir)
        adapters, a_meta = state_io.load(workdir / ADAPTERS)
        prompt, p_meta = state_io.load(workdir / PROMPT)
        if a_meta.get("lora") != self._lora_config():
            raise IqaError(f"{workdir / ADAPTERS}: holds LoRA {a_meta.get('lora')}, the options ask for {self._lora_config()}")
        self._ensure_lora(0)
        load_tensors(self.lora, adapters.get("lora", {}), str(workdir / ADAPTERS), "LoRA tensors")
        saved = p_meta.get("sizes") or {}
        sizes = self.prompt_sizes(int(saved.get("vocab_size", 0)), int(saved.get("qformer_max_positions", 512)))
        if saved != sizes.to_dict():
            diff = sorted(k for k, v in sizes.to_dict().items() if saved.get(k) != v)
            raise IqaError(f"{workdir / PROMPT}: holds a prompt module with other {', '.join(diff)} than these options give")
        if p_meta.get("instruction") != self.options.instruction_text():
            raise IqaError(f"{workdir / PROMPT}: was trained with the instruction {p_meta.get('instruction')!r}")
        if self.prompt is None:
            self._build_prompt(sizes, p_meta["instruction_ids"], 0)
        load_tensors(dict(self.prompt.named_parameters()), prompt.get("prompt", {}), str(workdir / PROMPT), "prompt tensors")
        if self.options.train_connector:
            load_tensors(self.connector_params(), prompt.get("connector", {}), str(workdir / PROMPT), "connector tensors")

    # -- training --------------------------------------------------------------------------------
    def _read_instruction_image(self, conv):
        from PIL import Image

        try:
            with Image.open(conv.image) as img:
                return img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise IqaError(f"{self.options.instructions}: entry {conv.id}: cannot read image {conv.image} ({exc})") from None

    def _compat(self, seed: int, stage: int, extra: dict[str, Any]) -> dict[str, Any]:
        o = self.options
        common = {"seed": seed, "backend_path": o.backend_path, "dtype": o.dtype, "resize": o.resize,
                  "batch_size": self.batch_size, "grad_accum": o.grad_accum, "warmup_ratio": o.warmup_ratio,
                  "weight_decay": o.weight_decay, "max_steps": o.max_steps, "train_connector": o.train_connector,
                  "connector_lr": o.connector_lr, "lora": self._lora_config()}
        if stage == 1:
            return {**common, "stage1_lr": o.stage1_lr, "stage1_epochs": o.stage1_epochs, **extra}
        return {**common, "stage2_lr": o.stage2_lr, "stage2_epochs": o.stage2_epochs, "prompt": o.prompt,
                "instruction": o.instruction_text(), "words": self.scorer.words, "normalization": o.normalization,
                "sizes": self.prompt.sizes.to_dict(), "qformer_path": o.qformer_path, **extra}

    @classmethod
    def default_batch_size(cls, options, dataset: str | None) -> int:
        """8 images per micro-batch, x grad_accum 8 = the appendix's 64 per step."""
        return 8

    def training_stages(self, train: SampleSource, workdir: Path, seed: int):
        from iqabench.io import sha256_file

        from .instructions import load_instructions
        from .training import stages

        o = self.options
        conversations, digest = [], None
        if o.stage1_epochs > 0:
            if not o.instructions:
                raise IqaError(f"{self.name}: stage 1 needs instruction data: -o instructions=FILE (Q-Instruct-format "
                               f"JSON), or -o stage1_epochs=0 to skip it")
            conversations = load_instructions(o.instructions, o.image_folder)
            digest = sha256_file(Path(o.instructions).expanduser())
        self.setup(self.ctx)
        if self.lora is not None or self.prompt is not None:
            raise IqaError(f"{self.name}: fit() needs a fresh method object (this one already holds adapters)")
        sizes, ids = self.new_prompt_inputs()  # checks qformer_path before any training
        self._ensure_lora(seed)

        def build_prompt() -> dict[str, Any]:
            self._build_prompt(sizes, ids, seed)
            if o.qformer_path:
                from .qformer_init import install, read_tensors

                install(self.prompt.generator, read_tensors(o.qformer_path, o.qformer_revision), o.qformer_path)
            return self._compat(seed, 2, {})

        yield from stages(self, conversations, self._read_instruction_image, train, workdir, seed,
                          self._compat(seed, 1, {"instructions_sha256": digest, "conversations": len(conversations)}),
                          build_prompt)
        self.load_checkpoint(workdir)
        return {"lora_params": sum(p.numel() for p in self.lora.values()),
                "prompt_params": sum(p.numel() for p in self.prompt.parameters()),
                "n_conversations": len(conversations)}
