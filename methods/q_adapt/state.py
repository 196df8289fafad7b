"""Checkpoint and training-state files: named tensor groups + JSON metadata in one safetensors
file, written atomically (temp file, fsync, rename through iqabench.io), so a kill leaves the
previous file or the new one. The metadata inside the file is the authority; a .json beside a
checkpoint is a readable copy.

AdamW moments are stored per parameter name ("adam.exp_avg/<name>"), so a resumed run continues
with the same optimizer state.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from iqabench import io
from iqabench.errors import IqaError, one_line


def save(path: Path, groups: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors = {f"{group}/{name}": t.detach().to("cpu").contiguous()
               for group, named in groups.items() for name, t in named.items()}
    with io.atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={"meta": io.dumps(meta)})


def read_safetensors(path: Path, wanted=lambda key: True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (those `wanted`) and metadata of a safetensors file; anything else (a pickle
    renamed .safetensors, a cut file) is one line naming the file. Nothing is ever unpickled."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise IqaError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys() if wanted(key)}, dict(f.metadata() or {})  # noqa: SIM118
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # SafetensorError is no RuntimeError
        raise IqaError(f"{path}: not a readable safetensors file ({one_line(exc, 160)})") from None


def load(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    raw_meta = metadata.get("meta")
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        group, _, name = key.partition("/")
        groups.setdefault(group, {})[name] = value
    if raw_meta is None:
        raise IqaError(f"{path}: no q-adapt metadata inside; it was not written by q-adapt")
    try:
        return groups, json.loads(raw_meta)
    except json.JSONDecodeError:
        raise IqaError(f"{path}: its q-adapt metadata is not valid JSON") from None


def optimizer_tensors(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """AdamW state as tensors keyed by parameter name, plus each parameter's step count."""
    tensors, steps = {}, {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state:
                continue
            name = names[id(p)]
            tensors[f"exp_avg/{name}"] = state["exp_avg"]
            tensors[f"exp_avg_sq/{name}"] = state["exp_avg_sq"]
            steps[name] = float(state["step"])
    return tensors, steps


def restore_optimizer(optimizer: torch.optim.Optimizer, named: dict[str, torch.nn.Parameter],
                      tensors: dict[str, torch.Tensor], steps: dict[str, float], source: str) -> None:
    for name, step in steps.items():
        if name not in named or f"exp_avg/{name}" not in tensors:
            raise IqaError(f"{source}: optimizer state for {name} does not match this model; delete the file to start over")
        p = named[name]
        optimizer.state[p] = {"step": torch.tensor(step, dtype=torch.float32),
                              "exp_avg": tensors[f"exp_avg/{name}"].to(device=p.device, dtype=p.dtype),
                              "exp_avg_sq": tensors[f"exp_avg_sq/{name}"].to(device=p.device, dtype=p.dtype)}
