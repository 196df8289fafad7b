"""Load official mPLUG-Owl3 checkpoints (`mPLUG/mPLUG-Owl3-7B-240728` and its key names).

A folder (or a hub snapshot of one) holds `config.json`, safetensors shards (no pickle files are
read) and the Qwen2 tokenizer. Official key names are renamed by prefix onto `Owl3Model`; the
vision tower's parts the model never runs (its last encoder layer, `post_layernorm`, the pooling
`head`) are named here, checked for shape and dropped (iqabench/models/checkpoint.py does the
loading and its checks; this module is the family's Layout).
"""
from __future__ import annotations

import re

from iqabench.models import checkpoint

from .config import Owl3Config


def _model(config):
    from .modeling import Owl3Model  # torch: imported when a model is built, not with this module

    return Owl3Model(config)


def unused_vision_shapes(config) -> dict[str, tuple[int, ...]]:
    """Official keys of the vision parts mPLUG-Owl3 never runs, with their shapes."""
    v = config.vision
    d, m = v.hidden_size, v.intermediate_size
    last = f"vision_model.encoder.layers.{v.num_hidden_layers - 1}."
    shapes: dict[str, tuple[int, ...]] = {}
    for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"):
        shapes[last + name + ".weight"], shapes[last + name + ".bias"] = (d, d), (d,)
    for name in ("layer_norm1", "layer_norm2"):
        shapes[last + name + ".weight"], shapes[last + name + ".bias"] = (d,), (d,)
    shapes.update({last + "mlp.fc1.weight": (m, d), last + "mlp.fc1.bias": (m,),
                   last + "mlp.fc2.weight": (d, m), last + "mlp.fc2.bias": (d,),
                   "vision_model.post_layernorm.weight": (d,), "vision_model.post_layernorm.bias": (d,),
                   "vision_model.head.probe": (1, 1, d),
                   "vision_model.head.attention.in_proj_weight": (3 * d, d),
                   "vision_model.head.attention.in_proj_bias": (3 * d,),
                   "vision_model.head.attention.out_proj.weight": (d, d),
                   "vision_model.head.attention.out_proj.bias": (d,),
                   "vision_model.head.layernorm.weight": (d,), "vision_model.head.layernorm.bias": (d,),
                   "vision_model.head.mlp.fc1.weight": (m, d), "vision_model.head.mlp.fc1.bias": (m,),
                   "vision_model.head.mlp.fc2.weight": (d, m), "vision_model.head.mlp.fc2.bias": (d,)})
    return shapes


LAYOUT = checkpoint.Layout(
    what="owl3 weights",
    hub_files=("*.json", "*.safetensors", "*.txt", "tokenizer*", "vocab*", "merges*"),
    config=Owl3Config.from_official,
    model=_model,
    # official prefix -> Owl3Model prefix
    prefixes=(
        ("language_model.model.", "decoder."),
        ("language_model.lm_head.", "lm_head."),
        ("vision_model.embeddings.", "vision.embeddings."),
        ("vision_model.encoder.", "vision.encoder."),
        ("vision2text_model.", "projector."),
    ),
    # buffers some exports carry that are recomputed here
    derived=re.compile(r"(rotary_emb(_core)?\.inv_freq|\.position_ids)$"),
    unused=unused_vision_shapes,
)
to_model_key, to_official_key = LAYOUT.to_model_key, LAYOUT.to_official_key


def load_owl3(path: str, revision: str | None = None, dtype=None, device: str = "cpu"):
    """-> (Owl3Model in eval mode with frozen parameters, tokenizer, resolved folder)."""
    return checkpoint.load_model(LAYOUT, path, revision, dtype, device)
