"""mPLUG-Owl2 sizes, read from (and written to) the official `config.json` layout.

The official file is a LLaMA config with a nested `visual_config` holding `visual_model`
(the CLIP-style ViT) and `visual_abstractor` (the 64-query cross-attention resampler).
Only the fields that change the computation are kept; everything else in the file is ignored.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from iqabench.errors import IqaError
from iqabench.models.llm_config import head_problems, pick, refuse_problems, refuse_rope_scaling, text_sizes


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    image_size: int = 448
    patch_size: int = 14
    layer_norm_eps: float = 1e-6
    hidden_act: str = "quick_gelu"

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class AbstractorConfig:
    hidden_size: int = 1024
    num_hidden_layers: int = 6
    num_attention_heads: int = 16
    intermediate_size: int = 2816
    num_learnable_queries: int = 64
    layer_norm_eps: float = 1e-6
    encoder_hidden_size: int = 1024
    grid_size: int = 32


@dataclasses.dataclass(frozen=True)
class TextConfig:
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    hidden_act: str = "silu"
    attention_bias: bool = False
    bos_token_id: int = 1
    eos_token_id: int = 2


@dataclasses.dataclass(frozen=True)
class Owl2Config:
    text: TextConfig
    vision: VisionConfig
    abstractor: AbstractorConfig

    @property
    def num_visual_tokens(self) -> int:
        """Tokens one image becomes in the LLM: the learnable queries plus the `vit_eos` token."""
        return self.abstractor.num_learnable_queries + 1

    @classmethod
    def from_official(cls, raw: dict[str, Any], source: str = "config.json") -> Owl2Config:
        visual = raw.get("visual_config")
        if not isinstance(visual, dict) or "visual_model" not in visual or "visual_abstractor" not in visual:
            raise IqaError(f"{source}: not an mPLUG-Owl2 config (no visual_config.visual_model/visual_abstractor)")
        refuse_rope_scaling(raw, source, "owl2")
        text = text_sizes(TextConfig, raw)
        if isinstance(text.eos_token_id, list):
            text = dataclasses.replace(text, eos_token_id=text.eos_token_id[0])
        vision = pick(VisionConfig, visual["visual_model"])
        abstractor = pick(AbstractorConfig, visual["visual_abstractor"])
        if "grid_size" not in visual["visual_abstractor"] or not visual["visual_abstractor"]["grid_size"]:
            abstractor = dataclasses.replace(abstractor, grid_size=32)
        config = cls(text=text, vision=vision, abstractor=abstractor)
        config.validate(source)
        return config

    def validate(self, source: str = "config") -> None:
        v, a, t = self.vision, self.abstractor, self.text
        problems = []
        if v.hidden_act != "quick_gelu":
            problems.append(f"vision hidden_act {v.hidden_act!r} (only quick_gelu)")
        if t.hidden_act != "silu":
            problems.append(f"text hidden_act {t.hidden_act!r} (only silu)")
        if a.grid_size != v.grid:
            problems.append(f"abstractor grid_size {a.grid_size} != image_size/patch_size {v.grid}")
        if a.encoder_hidden_size != v.hidden_size or a.hidden_size != v.hidden_size:
            problems.append("abstractor hidden_size/encoder_hidden_size must equal the vision hidden_size")
        problems += head_problems((("vision", v.hidden_size, v.num_attention_heads),
                                   ("abstractor", a.hidden_size, a.num_attention_heads),
                                   ("text", t.hidden_size, t.num_attention_heads)))
        if t.num_key_value_heads != t.num_attention_heads:
            # the official multiway K/V code cannot hold grouped heads, so no such checkpoint exists
            problems.append("num_key_value_heads != num_attention_heads (mPLUG-Owl2 has no grouped K/V)")
        refuse_problems(source, "mPLUG-Owl2", problems)

    def to_official(self) -> dict[str, Any]:
        """The official `config.json` content (used by the tiny-model builder)."""
        out: dict[str, Any] = {
            "architectures": ["MPLUGOwl2LlamaForCausalLM"],
            "model_type": "mplug_owl2",
            **dataclasses.asdict(self.text),
            "max_position_embeddings": 4096,
            "pretraining_tp": 1,
            "rope_scaling": None,
            "tie_word_embeddings": False,
            "torch_dtype": "float32",
            "use_cache": True,
            "visual_config": {
                "visual_model": {**dataclasses.asdict(self.vision), "num_channels": 3,
                                 "attention_dropout": 0.0, "initializer_range": 0.02},
                "visual_abstractor": {**dataclasses.asdict(self.abstractor),
                                      "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02},
            },
        }
        return out

