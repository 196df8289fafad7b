"""Load official mPLUG-Owl2 checkpoints (`MAGAer13/mplug-owl2-llama2-7b`, `q-future/one-align`).

A folder (or a hub snapshot of one) holds `config.json`, the weights as safetensors shards or,
failing that, `pytorch_model*.bin` shards (read with `weights_only=True`), and the LLaMA
tokenizer. Official key names are renamed by prefix onto `Owl2Model`; a key that maps to
nothing, or a parameter the checkpoint does not provide, is an error naming the keys.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from iqabench import hub, io
from iqabench.errors import IqaError, NotAvailable

# official prefix -> Owl2Model prefix; below each prefix the names are the official ones
PREFIXES: tuple[tuple[str, str], ...] = (
    ("model.vision_model.", "vision."),
    ("model.visual_abstractor.", "abstractor."),
    ("model.embed_tokens.", "decoder.embed_tokens."),
    ("model.layers.", "decoder.layers."),
    ("model.norm.", "decoder.norm."),
    ("lm_head.", "lm_head."),
)
# keys some official exports carry that are recomputed here, not loaded
DERIVED = re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$")
# fixed sin-cos codes: loaded when the checkpoint has them, recomputed otherwise
OPTIONAL = re.compile(r"^abstractor\.encoder\.layers\.\d+\.crossattention\.attention\.(q|k)_pos_embed$")

HUB_FILES = ["*.json", "*.model", "*.safetensors", "tokenizer*", "*.txt"]


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


def resolve_folder(path: str, revision: str | None = None) -> Path:
    """A local folder as is; otherwise a hub snapshot (local cache only when `iqabench.hub.offline()`)."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    if local.exists() or path.startswith((".", "/", "~")):
        raise IqaError(f"owl2 weights: {path} is not a folder")
    from huggingface_hub import snapshot_download

    offline = hub.offline()
    try:
        folder = Path(snapshot_download(path, revision=revision, allow_patterns=HUB_FILES, local_files_only=offline))
        if not list(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(path, revision=revision, allow_patterns=HUB_FILES + ["*.bin"],
                                            local_files_only=offline))
    except Exception as err:  # the hub raises many types (offline, missing repo, network)
        raise NotAvailable(missing_weights_message(path, revision, offline, err)) from err
    return folder


def missing_weights_message(path: str, revision: str | None, offline: bool, err: BaseException) -> str:
    """One line that names the option to set, instead of the hub's advice to check the connection."""
    where = f"not in the Hugging Face cache and {hub.OFFLINE_NOTE}" if offline else \
        "not on disk and the Hugging Face hub cannot provide them"
    first = " ".join(str(err).split())
    cause = f"{type(err).__name__}: {first[:120]}{'...' if len(first) > 120 else ''}"
    at = f" at revision {revision}" if revision else ""
    return f"owl2 weights {path}{at}: {where} ({cause}); {hub.download_hint(path, revision)}"


def read_config(folder: Path):
    from .config import Owl2Config

    file = folder / "config.json"
    if not file.is_file():
        raise IqaError(f"owl2 weights: {file} is missing")
    return Owl2Config.from_official(io.read_json(file, "owl2 model config"), source=str(file))


def checkpoint_files(folder: Path) -> list[Path]:
    safetensors = sorted(folder.glob("*.safetensors"))
    if safetensors:
        return safetensors
    bins = sorted(p for p in folder.glob("*.bin") if p.name.startswith("pytorch_model"))
    if bins:
        return bins
    raise IqaError(f"owl2 weights: no *.safetensors or pytorch_model*.bin in {folder}")


def read_tensors(file: Path) -> dict[str, Any]:
    from iqabench.models.safe_load import load_tensors_only, read_safetensors

    if file.suffix == ".safetensors":
        return read_safetensors(file, "pt")[0]  # a pickle renamed .safetensors is one line, never unpickled
    return load_tensors_only(file, mmap=True)


def load_weights(model, folder: Path, dtype) -> None:
    """Copy the checkpoint in `folder` into `model` (built on the meta device), cast to `dtype`."""
    import torch

    expected = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for file in checkpoint_files(folder):
        for key, tensor in read_tensors(file).items():
            if DERIVED.match(key):
                continue
            ours = to_model_key(key)
            if ours is None or ours not in expected:
                unmapped.append(key)
                continue
            if tuple(tensor.shape) != tuple(expected[ours].shape):
                raise IqaError(f"owl2 weights: {key} in {file.name} has shape {tuple(tensor.shape)}, "
                               f"config.json implies {tuple(expected[ours].shape)}")
            loaded[ours] = tensor.to(dtype)
    if unmapped:
        raise IqaError(f"owl2 weights: {len(unmapped)} checkpoint keys in {folder} map to nothing: "
                       + ", ".join(sorted(unmapped)[:8]) + (" ..." if len(unmapped) > 8 else ""))
    missing = sorted(k for k in expected if k not in loaded and not OPTIONAL.match(k))
    if missing:
        raise IqaError(f"owl2 weights: {len(missing)} parameters missing from {folder}: "
                       + ", ".join(to_official_key(k) for k in missing[:8]) + (" ..." if len(missing) > 8 else ""))
    model.load_state_dict(loaded, strict=False, assign=True)
    if any(OPTIONAL.match(k) and k not in loaded for k in expected):
        model.abstractor.reset_position_codes(model.config.abstractor)


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    # AutoTokenizer reads config.json and warns that it does not know "mplug_owl2": noise here
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # its config parsing warns about rope_scaling
            return AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:  # transformers raises OSError/ValueError/ImportError here
        raise IqaError(f"owl2 weights: cannot load the tokenizer in {folder}: {type(err).__name__}: {err}") from err
    finally:
        hf_logging.set_verbosity(level)


def load_owl2(path: str, revision: str | None = None, dtype=None, device: str = "cpu"):
    """-> (Owl2Model in eval mode with frozen parameters, tokenizer, resolved folder)."""
    import torch

    from .modeling import Owl2Model

    dtype = dtype or torch.float32
    folder = resolve_folder(path, revision)
    config = read_config(folder)
    with torch.device("meta"):
        model = Owl2Model(config)
    load_weights(model, folder, dtype)
    model = model.to(device).eval().requires_grad_(False)
    return model, load_tokenizer(folder), folder
