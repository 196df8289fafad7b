"""Reading external .pt/.pth/.bin files as tensors only: a pickled object is refused, never run."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

from iqabench.errors import IqaError, one_line


def load_tensors_only(path: Path, mmap: bool = False):
    """torch.load with weights_only=True; any failure is one IqaError line naming the file."""
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as exc:
        raise IqaError(f"{path}: refused, not a plain tensor file ({why_refused(exc)})") from None


def why_refused(exc: BaseException) -> str:
    """A short reason for a failed tensors-only load. torch's own message is several lines and
    suggests weights_only=False, which is never done here."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds pickled code or objects ({found[1]}), which are never loaded"
    return one_line(exc, 160)


def read_safetensors(path: Path, framework: str = "pt") -> tuple[dict, dict[str, str]]:
    """(tensors, metadata) of a .safetensors file; a file that is not one (a pickle renamed, a
    cut download) is one IqaError line naming it. `framework` is "pt" or "numpy"."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework=framework) as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
    except FileNotFoundError:
        raise IqaError(f"{path}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError (not an OSError)
        raise IqaError(f"{path}: {not_safetensors(path, exc)}") from None


def not_safetensors(path: Path, exc: BaseException) -> str:
    """Why a file is not a readable safetensors file, and what it probably is."""
    first = one_line(exc, 160)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        head = b""
    guess = ""
    if head[:2] == b"PK" or head[:1] == b"\x80":  # a zip archive (torch.save) or a raw pickle
        guess = "; it looks like a torch pickle (.pt/.bin) renamed: pickles are never loaded, give a real .safetensors file"
    return f"not a safetensors file ({first}){guess}"
