"""Options of q-adapt: the backend and softmax reading (softmax-owl2-qbench's defaults), LoRA
and stage-1 data, the stage-2 schedule and the prompt module's sizes (the paper's by default)."""
from __future__ import annotations

import pydantic

from iqabench.models.scoring import QBENCH_PROMPT, Normalization, SoftmaxOptions
from iqabench.training import refuse_batch_option


class QAdaptOptions(SoftmaxOptions):
    # scoring: Q-Bench's question and the softmax of good vs poor on the answer's first token
    prompt: str = QBENCH_PROMPT
    positive: tuple[str, ...] | None = ("good",)
    negative: tuple[str, ...] | None = ("poor",)
    normalization: Normalization = "model"
    instruction: str | None = None  # the text the Q-Former reads; default: the prompt without <|image|>

    # stage 1: LoRA (public scripts: r 128, alpha 256, dropout 0.05) trained with the LM loss
    instructions: str | None = None  # Q-Instruct-format JSON; needed when stage1_epochs > 0
    image_folder: str | None = None  # where its image paths start; default: the JSON's folder
    lora_r: int = pydantic.Field(128, ge=1)
    lora_alpha: float = pydantic.Field(256.0, gt=0)
    lora_dropout: float = pydantic.Field(0.05, ge=0, lt=1)
    stage1_epochs: int = pydantic.Field(1, ge=0)  # appendix: 1
    stage1_lr: float = pydantic.Field(2e-4, gt=0)  # public stage-1 script (the appendix says 2e-5)

    # stage 2: the prompt module (and the connector) fit Sample.target by MSE; selection on val
    stage2_epochs: int = pydantic.Field(1, ge=1)  # appendix: 1
    stage2_lr: float = pydantic.Field(2e-4, gt=0)  # public stage-2 script
    connector_lr: float = pydantic.Field(2e-5, gt=0)  # public scripts' mm_projector_lr
    train_connector: bool = True  # the paper tunes the connector in both stages (Tables 8 and 10)
    patience: int = pydantic.Field(3, ge=1)

    # both stages: AdamW, no weight decay, cosine decay after a 3 % warm-up; the micro-batch is
    # `iqabench train --batch-size` (8 when unset): 8 x 8 = the appendix's 64
    grad_accum: int = pydantic.Field(8, ge=1)
    warmup_ratio: float = pydantic.Field(0.03, ge=0, lt=1)
    weight_decay: float = pydantic.Field(0.0, ge=0)
    max_steps: int | None = pydantic.Field(None, ge=1)  # optimizer steps per epoch at most (short runs)
    save_every: int = pydantic.Field(50, ge=1)  # optimizer steps between saved training states

    # the prompt module (seed 002 section 4.1: InstructBLIP's Q-Former, 32 queries, one-head T-V attention)
    qformer_path: str | None = None  # InstructBLIP checkpoint (folder or hub id) to start the Q-Former from
    qformer_revision: str | None = None
    qformer_layers: int = pydantic.Field(12, ge=1)
    qformer_hidden: int = pydantic.Field(768, ge=1)
    qformer_heads: int = pydantic.Field(12, ge=1)
    qformer_intermediate: int = pydantic.Field(3072, ge=1)
    qformer_cross_every: int = pydantic.Field(2, ge=1)
    qformer_width: int = pydantic.Field(1408, ge=1)
    queries: int = pydantic.Field(32, ge=1)
    gate_hidden: int = pydantic.Field(2048, ge=1)
    prompt_dropout: float = pydantic.Field(0.1, ge=0, lt=1)
    prompt_scale: float = pydantic.Field(0.1, gt=0)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _no_batch_option(cls, values):
        return refuse_batch_option(values, "q-adapt")

    @pydantic.model_validator(mode="after")
    def _heads_divide(self):
        if self.qformer_hidden % self.qformer_heads:
            raise ValueError(f"qformer_hidden {self.qformer_hidden} is not a multiple of qformer_heads {self.qformer_heads}")
        return self

    def instruction_text(self) -> str:
        if self.instruction is not None:
            return self.instruction
        return " ".join(self.prompt.replace("<|image|>", " ").split())
