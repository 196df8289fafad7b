"""mPLUG-Owl3 sizes, read from (and written to) the official `config.json` layout.

The official file is a Qwen2 config plus `hyper_layers` (1-based indices of the decoder layers
that also cross-attend to the image features) and a nested SigLIP `vision_config`. Only the
fields that change the computation are kept; everything else in the file is ignored.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from iqabench.errors import IqaError
from iqabench.models.llm_config import head_problems, pick, refuse_problems, refuse_rope_scaling, text_sizes


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """SigLIP so400m as mPLUG-Owl3-7B-240728 uses it (the defaults are that checkpoint's)."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 27
    num_attention_heads: int = 16
    image_size: int = 384
    patch_size: int = 14
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu_pytorch_tanh"
    num_channels: int = 3

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def used_layers(self) -> int:
        """The model reads the second-to-last hidden state: the last encoder layer never runs."""
        return self.num_hidden_layers - 1


@dataclasses.dataclass(frozen=True)
class TextConfig:
    vocab_size: int = 151851
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    max_position_embeddings: int = 32768
    hidden_act: str = "silu"
    hyper_layers: tuple[int, ...] = (1, 9, 17, 25)
    tie_word_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def is_hyper(self, index: int) -> bool:
        """Whether decoder layer `index` (0-based) has hyper attention (config counts from 1)."""
        return index + 1 in self.hyper_layers


@dataclasses.dataclass(frozen=True)
class Owl3Config:
    text: TextConfig
    vision: VisionConfig

    @classmethod
    def from_official(cls, raw: dict[str, Any], source: str = "config.json") -> Owl3Config:
        if raw.get("model_type") != "mplugowl3" or not isinstance(raw.get("vision_config"), dict):
            raise IqaError(f"{source}: not an mPLUG-Owl3 config (model_type {raw.get('model_type')!r}, "
                           "expected 'mplugowl3' with a vision_config)")
        refuse_rope_scaling(raw, source, "owl3")
        if raw.get("use_sliding_window"):
            raise IqaError(f"{source}: use_sliding_window=true is not supported by the owl3 backend")
        text = text_sizes(TextConfig, raw)
        text = dataclasses.replace(text, hyper_layers=tuple(int(i) for i in raw.get("hyper_layers", text.hyper_layers)))
        config = cls(text=text, vision=pick(VisionConfig, raw["vision_config"]))
        config.validate(source)
        return config

    def validate(self, source: str = "config") -> None:
        v, t = self.vision, self.text
        problems = []
        if v.hidden_act not in ("gelu_pytorch_tanh", "gelu"):
            problems.append(f"vision hidden_act {v.hidden_act!r} (only gelu_pytorch_tanh, gelu)")
        if t.hidden_act != "silu":
            problems.append(f"text hidden_act {t.hidden_act!r} (only silu)")
        problems += head_problems((("vision", v.hidden_size, v.num_attention_heads),
                                   ("text", t.hidden_size, t.num_attention_heads)))
        if t.num_attention_heads % t.num_key_value_heads:
            problems.append(f"{t.num_attention_heads} attention heads not a multiple of {t.num_key_value_heads} K/V heads")
        if any(not 1 <= i <= t.num_hidden_layers for i in t.hyper_layers):
            problems.append(f"hyper_layers {list(t.hyper_layers)} outside 1..{t.num_hidden_layers}")
        if v.num_hidden_layers < 2:
            problems.append("the vision tower needs at least 2 layers (its second-to-last output is used)")
        if t.tie_word_embeddings:
            problems.append("tie_word_embeddings=true (mPLUG-Owl3 has its own LM head)")
        refuse_problems(source, "mPLUG-Owl3", problems)

    def to_official(self) -> dict[str, Any]:
        """The official `config.json` content (used by the tiny-model builder)."""
        text = dataclasses.asdict(self.text)
        text["hyper_layers"] = list(self.text.hyper_layers)
        return {
            "architectures": ["mPLUGOwl3Model"],
            "model_type": "mplugowl3",
            "attention_dropout": 0.0,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "initializer_range": 0.02,
            "max_window_layers": self.text.num_hidden_layers,
            "sliding_window": 131072,
            "use_sliding_window": False,
            "use_cache": True,
            "torch_dtype": "float32",
            **text,
            "vision_config": {**dataclasses.asdict(self.vision), "model_type": "siglip_vision_model"},
        }

