"""Reading external .pt/.pth/.bin files as tensors only: a pickled object is refused, never run."""
from __future__ import annotations

import pickle
from pathlib import Path

from iqabench.errors import IqaError


def load_tensors_only(path: Path, mmap: bool = False):
    """torch.load with weights_only=True; any failure is one IqaError line naming the file."""
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as exc:
        # torch's message is several lines and suggests weights_only=False, which we never do
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IqaError(f"{path}: refused, not a plain tensor file ({first[:160]})") from None
