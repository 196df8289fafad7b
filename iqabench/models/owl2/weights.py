"""Load official mPLUG-Owl2 checkpoints (`MAGAer13/mplug-owl2-llama2-7b`, `q-future/one-align`).

A folder (or a hub snapshot of one) holds `config.json`, the weights as safetensors shards or,
failing that, `pytorch_model*.bin` shards (read with `weights_only=True`), and the LLaMA
tokenizer. Official key names are renamed by prefix onto `Owl2Model` (iqabench/models/checkpoint.py
does the loading and its checks; this module is the family's Layout).
"""
from __future__ import annotations

import re
from pathlib import Path

from iqabench.models import checkpoint

from .config import Owl2Config


def _model(config):
    from .modeling import Owl2Model  # torch: imported when a model is built, not with this module

    return Owl2Model(config)


LAYOUT = checkpoint.Layout(
    what="owl2 weights",
    hub_files=("*.json", "*.model", "*.safetensors", "tokenizer*", "*.txt"),
    config=Owl2Config.from_official,
    model=_model,
    # official prefix -> Owl2Model prefix
    prefixes=(
        ("model.vision_model.", "vision."),
        ("model.visual_abstractor.", "abstractor."),
        ("model.embed_tokens.", "decoder.embed_tokens."),
        ("model.layers.", "decoder.layers."),
        ("model.norm.", "decoder.norm."),
        ("lm_head.", "lm_head."),
    ),
    derived=re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$"),
    # fixed sin-cos codes: loaded when the checkpoint has them, recomputed otherwise
    optional=re.compile(r"^abstractor\.encoder\.layers\.\d+\.crossattention\.attention\.(q|k)_pos_embed$"),
    fill_optional=lambda model: model.abstractor.reset_position_codes(model.config.abstractor),
    pickles=True,
)
to_model_key, to_official_key = LAYOUT.to_model_key, LAYOUT.to_official_key


def resolve_folder(path: str, revision: str | None = None) -> Path:
    return checkpoint.resolve_folder(LAYOUT, path, revision)


def load_owl2(path: str, revision: str | None = None, dtype=None, device: str = "cpu"):
    """-> (Owl2Model in eval mode with frozen parameters, tokenizer, resolved folder)."""
    return checkpoint.load_model(LAYOUT, path, revision, dtype, device)
