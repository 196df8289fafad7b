"""Start the V-T generator from InstructBLIP's trained Q-Former, as the paper does (section 4.1).

`-o qformer_path=...` names an InstructBLIP checkpoint in transformers' layout (a local folder or
a hub id such as Salesforce/instructblip-vicuna-7b). From it come: the Q-Former (`qformer.*`),
its 32 query tokens (`query_tokens`), the LayerNorm InstructBLIP applies to image features before
the Q-Former (`vision_model.post_layernorm.*`, its `ln_vision`), and the BERT tokenizer the
Q-Former reads instructions with (`qformer_tokenizer/`). Only those tensors are read, from
safetensors files only (no pickle), and only the shards holding them are fetched.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from iqabench import hub, io
from iqabench.errors import IqaError, one_line

NORM = "vision_model.post_layernorm."


def _file(source: str, name: str, revision: str | None) -> Path:
    local = Path(source).expanduser()
    if local.is_dir():
        path = local / name
        if not path.is_file():
            raise IqaError(f"qformer_path {source}: no {name} (not an InstructBLIP checkpoint in transformers' layout)")
        return path
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(source, name, revision=revision, local_files_only=hub.offline()))
    except Exception as exc:  # noqa: BLE001 - network, missing file, offline mode: one line for the user
        raise IqaError(f"qformer_path {source}: cannot get {name} ({one_line(exc, 160)})") from None


def read_config(source: str, revision: str | None = None) -> dict[str, Any]:
    path = _file(source, "config.json", revision)
    config = io.read_json(path, "InstructBLIP config")
    if config.get("model_type") != "instructblip" or "qformer_config" not in config:
        raise IqaError(f"qformer_path {source}: {path.name} is not an InstructBLIP config (model_type "
                       f"{config.get('model_type')!r})")
    return config


def sizes_of(config: dict[str, Any]) -> dict[str, int]:
    """The Q-Adapt options a checkpoint's Q-Former fixes."""
    q = config["qformer_config"]
    return {"qformer_layers": q.get("num_hidden_layers", 12), "qformer_hidden": q.get("hidden_size", 768),
            "qformer_heads": q.get("num_attention_heads", 12), "qformer_intermediate": q.get("intermediate_size", 3072),
            "qformer_cross_every": q.get("cross_attention_frequency", 2),
            "qformer_width": q.get("encoder_hidden_size", 1408), "queries": config.get("num_query_tokens", 32)}


def load_tokenizer(source: str, revision: str | None = None):
    from transformers import AutoTokenizer

    local = Path(source).expanduser()
    try:
        if local.is_dir():
            return AutoTokenizer.from_pretrained(str(local / "qformer_tokenizer"))
        return AutoTokenizer.from_pretrained(source, subfolder="qformer_tokenizer", revision=revision,
                                             local_files_only=hub.offline())
    except (OSError, ValueError) as exc:
        raise IqaError(f"qformer_path {source}: cannot load its qformer_tokenizer ({one_line(exc, 160)})") from None


def read_tensors(source: str, revision: str | None = None) -> dict[str, Any]:
    """The Q-Former, query-token and ln_vision tensors of the checkpoint."""
    from .state import read_safetensors

    wanted = lambda key: key.startswith(("qformer.", NORM)) or key == "query_tokens"
    local = Path(source).expanduser()
    index_name = "model.safetensors.index.json"
    if (local / index_name).is_file() or (not local.is_dir() and _has_index(source, revision)):
        index = io.read_json(_file(source, index_name, revision), "safetensors index")
        shards = sorted({shard for key, shard in index.get("weight_map", {}).items() if wanted(key)})
    else:
        shards = ["model.safetensors"]
    out: dict[str, Any] = {}
    for shard in shards:
        out.update(read_safetensors(_file(source, shard, revision), wanted)[0])
    if "query_tokens" not in out or not any(k.startswith("qformer.") for k in out):
        raise IqaError(f"qformer_path {source}: no qformer.* / query_tokens tensors in {', '.join(shards)}")
    return out


def _has_index(source: str, revision: str | None) -> bool:
    try:
        _file(source, "model.safetensors.index.json", revision)
        return True
    except IqaError:
        return False


def install(generator, tensors: dict[str, Any], source: str) -> None:
    """Copy the checkpoint's tensors into a VTGenerator, every Q-Former tensor accounted for."""
    import torch

    from .lora import load_tensors

    qformer = {k[len("qformer."):]: v for k, v in tensors.items() if k.startswith("qformer.")}
    params = dict(generator.qformer.named_parameters())
    missing = sorted(set(params) - set(qformer))
    if missing:
        raise IqaError(f"qformer_path {source}: the checkpoint lacks Q-Former tensors {missing[:3]}")
    load_tensors(params, {k: qformer[k] for k in params}, f"qformer_path {source}", "Q-Former tensors")
    norm = {k[len(NORM):]: v for k, v in tensors.items() if k.startswith(NORM)}
    load_tensors(dict(generator.vision_norm.named_parameters()), norm, f"qformer_path {source}", "ln_vision tensors")
    query = tensors["query_tokens"]
    if tuple(query.shape) != tuple(generator.query_tokens.shape):
        raise IqaError(f"qformer_path {source}: query_tokens of shape {tuple(query.shape)}, "
                       f"the options ask for {tuple(generator.query_tokens.shape)}")
    with torch.no_grad():
        generator.query_tokens.copy_(query.to(generator.query_tokens.dtype))
