"""Reading and writing PromptIQA tensors: never a pickle.

- `load_backbone`: a timm-format ViT weights file (e.g. the `model.safetensors` of the hub repo
  `timm/vit_base_patch8_224.augreg_in21k_ft_in1k`, or a .pth read as plain tensors) into `net.vit`;
  the classifier (`head.*`) and the final norm (`norm.*`, `fc_norm.*`) are not used by MoNet.
- `load_full`: a whole trained model: our `checkpoint.safetensors`, or the authors' released
  `best_model.pth.tar` ({"state_dict": ..., "prompt_num": ...}, keys prefixed `module.`).
- `save_tensors` / `read_tensors_with_meta`: safetensors written atomically, with a JSON string in
  the metadata (the one authority for what the file holds: it is renamed in with the tensors).
"""
from __future__ import annotations

import json
from pathlib import Path

from iqabench.errors import IqaError, one_line
from iqabench.io import sha256_file as file_sha256  # one implementation, kept under this module's name

IGNORED_BACKBONE_KEYS = ("head.", "norm.", "fc_norm.", "head_drop.")


def read_tensor_file(path: str | Path) -> dict:
    """name -> tensor from .safetensors, or from a torch file read tensors-only (a pickle is refused)."""
    import torch

    from iqabench.models.safe_load import load_tensors_only

    path = Path(path).expanduser()
    if not path.is_file():
        raise IqaError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:  # noqa: BLE001 - a corrupt file is one line
            raise IqaError(f"{path}: not a readable safetensors file ({one_line(exc, 120)})") from None
    data = load_tensors_only(path)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise IqaError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    out = {}
    for key, value in data.items():
        if isinstance(value, torch.Tensor):
            out[key.removeprefix("module.")] = value
    if not out:
        raise IqaError(f"{path}: holds no tensors")
    return out


def load_into(module, tensors: dict, path: Path, what: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in tensors]
    extra = [k for k in tensors if k not in own]
    if missing or extra:
        detail = (f"missing {', '.join(missing[:3])}" if missing else "") + \
                 ("; " if missing and extra else "") + (f"unexpected {', '.join(extra[:3])}" if extra else "")
        raise IqaError(f"{path}: not {what} ({detail}{' ...' if len(missing) > 3 or len(extra) > 3 else ''})")
    for key, value in own.items():
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise IqaError(f"{path}: {key} has shape {tuple(tensors[key].shape)}, this network needs "
                           f"{tuple(value.shape)} (wrong backbone option?)")
    module.load_state_dict({k: tensors[k].to(own[k].dtype) for k in own})


def load_backbone(net, path: str | Path) -> dict:
    """Initialise `net.vit` from a timm-format ViT file; returns what was read (for the fingerprint)."""
    path = Path(path).expanduser()
    tensors = read_tensor_file(path)
    if any(k.startswith("vit.") for k in tensors):  # a whole PromptIQA model: take its ViT
        tensors = {k[4:]: v for k, v in tensors.items() if k.startswith("vit.")}
    kept = {k: v for k, v in tensors.items() if not k.startswith(IGNORED_BACKBONE_KEYS)}
    load_into(net.vit, kept, path, "a timm ViT weights file matching this backbone")
    return {"file": str(path), "sha256": file_sha256(path), "ignored": sorted(set(tensors) - set(kept))}


def load_full(net, path: str | Path) -> dict:
    path = Path(path).expanduser()
    tensors = read_tensor_file(path)
    load_into(net, tensors, path, "a PromptIQA model for this backbone")
    return {"file": str(path), "sha256": file_sha256(path)}


def save_tensors(path: Path, tensors: dict, meta: dict) -> None:
    from safetensors.torch import save_file

    from iqabench.io import atomic_path

    with atomic_path(Path(path)) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"json": json.dumps(meta)})


def read_tensors_with_meta(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("json", "null"))
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - a handle, not a dict
    except Exception as exc:  # noqa: BLE001 - a cut or foreign file is one line
        raise IqaError(f"{path}: not a readable PromptIQA file ({one_line(exc, 120)})") from None
    if not isinstance(meta, dict):
        raise IqaError(f"{path}: no PromptIQA metadata in this safetensors file")
    return tensors, meta


