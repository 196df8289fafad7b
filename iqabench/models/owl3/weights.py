"""Load official mPLUG-Owl3 checkpoints (`mPLUG/mPLUG-Owl3-7B-240728` and its key names).

A folder (or a hub snapshot of one) holds `config.json`, safetensors shards (no pickle files are
read) and the Qwen2 tokenizer. Official key names are renamed by prefix onto `Owl3Model`; the
vision tower's parts the model never runs (its last encoder layer, `post_layernorm`, the pooling
`head`) are named here, checked for shape and dropped. Any other key that maps to nothing, or a
parameter the checkpoint does not provide, is an error naming the keys.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from iqabench import hub, io
from iqabench.errors import IqaError, NotAvailable, one_line

# official prefix -> Owl3Model prefix; below each prefix the names are the official ones
PREFIXES: tuple[tuple[str, str], ...] = (
    ("language_model.model.", "decoder."),
    ("language_model.lm_head.", "lm_head."),
    ("vision_model.embeddings.", "vision.embeddings."),
    ("vision_model.encoder.", "vision.encoder."),
    ("vision2text_model.", "projector."),
)
# buffers some exports carry that are recomputed here
DERIVED = re.compile(r"(rotary_emb(_core)?\.inv_freq|\.position_ids)$")
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "tokenizer*", "vocab*", "merges*"]


def to_model_key(key: str) -> str | None:
    for official, ours in PREFIXES:
        if key.startswith(official):
            return ours + key[len(official):]
    return None


def to_official_key(key: str) -> str:
    for official, ours in PREFIXES:
        if key.startswith(ours):
            return official + key[len(ours):]
    raise KeyError(key)


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


def resolve_folder(path: str, revision: str | None = None) -> Path:
    """A local folder as is; otherwise a hub snapshot (local cache only when `iqabench.hub.offline()`)."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    if local.exists() or path.startswith((".", "/", "~")):
        raise IqaError(f"owl3 weights: {path} is not a folder")
    from huggingface_hub import snapshot_download

    offline = hub.offline()
    try:
        return Path(snapshot_download(path, revision=revision, allow_patterns=HUB_FILES, local_files_only=offline))
    except Exception as err:  # the hub raises many types (offline, missing repo, network)
        where = f"not in the Hugging Face cache and {hub.OFFLINE_NOTE}" if offline else "not on disk and not downloadable"
        raise NotAvailable(f"owl3 weights {path}: {where} ({one_line(err, 160, typed=True)}); set -o backend_path=DIR "
                           f"to a local copy, or download them first (huggingface-cli download {path})") from err


def read_config(folder: Path):
    from .config import Owl3Config

    file = folder / "config.json"
    if not file.is_file():
        raise IqaError(f"owl3 weights: {file} is missing")
    return Owl3Config.from_official(io.read_json(file, "owl3 model config"), source=str(file))


def checkpoint_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        found = ", ".join(sorted(p.name for p in folder.glob("*.bin"))[:3])
        raise IqaError(f"owl3 weights: no *.safetensors in {folder}" + (f" (found {found}: pickle files are not read)" if found else ""))
    return files


def load_weights(model, folder: Path, dtype) -> None:
    """Copy the checkpoint in `folder` into `model` (built on the meta device), cast to `dtype`."""
    from iqabench.models.safe_load import read_safetensors

    expected = model.state_dict()
    unused = unused_vision_shapes(model.config)
    loaded: dict[str, Any] = {}
    unmapped: list[str] = []
    for file in checkpoint_files(folder):
        for key, tensor in read_safetensors(file, "pt")[0].items():
            if DERIVED.search(key):
                continue
            if key in unused:
                want = unused[key]
            else:
                ours = to_model_key(key)
                if ours is None or ours not in expected:
                    unmapped.append(key)
                    continue
                want = tuple(expected[ours].shape)
            if tuple(tensor.shape) != want:
                raise IqaError(f"owl3 weights: {key} in {file.name} has shape {tuple(tensor.shape)}, "
                               f"config.json implies {want}")
            if key not in unused:
                loaded[ours] = tensor.to(dtype)
    if unmapped:
        raise IqaError(f"owl3 weights: {len(unmapped)} checkpoint keys in {folder} map to nothing: "
                       + ", ".join(sorted(unmapped)[:8]) + (" ..." if len(unmapped) > 8 else ""))
    missing = sorted(k for k in expected if k not in loaded)
    if missing:
        raise IqaError(f"owl3 weights: {len(missing)} parameters missing from {folder}: "
                       + ", ".join(to_official_key(k) for k in missing[:8]) + (" ..." if len(missing) > 8 else ""))
    model.load_state_dict(loaded, strict=True, assign=True)


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # it does not know model_type "mplugowl3": noise here
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:  # transformers raises OSError/ValueError/ImportError here
        raise IqaError(f"owl3 weights: cannot load the tokenizer in {folder}: {one_line(err, typed=True)}") from err
    finally:
        hf_logging.set_verbosity(level)


def load_owl3(path: str, revision: str | None = None, dtype=None, device: str = "cpu"):
    """-> (Owl3Model in eval mode with frozen parameters, tokenizer, resolved folder)."""
    import torch

    from .modeling import Owl3Model

    dtype = dtype or torch.float32
    folder = resolve_folder(path, revision)
    config = read_config(folder)
    with torch.device("meta"):
        model = Owl3Model(config)
    load_weights(model, folder, dtype)
    model = model.to(device).eval().requires_grad_(False)
    return model, load_tokenizer(folder), folder
