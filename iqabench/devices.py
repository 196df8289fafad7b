"""Checking the device a user asks for, before anything is built or written."""
from __future__ import annotations

import re

from iqabench.errors import IqaError

_FORM = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def resolve_device(device: str) -> str:
    """`auto` -> cuda when available, else cpu; a device this machine lacks is a one-line error."""
    device = (device or "auto").strip().lower()
    if not _FORM.match(device):
        raise IqaError(f"--device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    if device == "cpu":
        return device
    if device == "auto" and not _may_have_cuda():
        return "cpu"  # without importing torch (1-2 s): a short CLI command stays quick
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise IqaError(f"--device {device}: CUDA is not available on this machine (torch "
                           f"{torch.__version__}, no usable GPU); use --device cpu or auto")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise IqaError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    mps = getattr(torch.backends, "mps", None)
    if not (mps and mps.is_available()):
        raise IqaError("--device mps: Apple's MPS backend is not available here; use --device cpu or auto")
    return device


def _may_have_cuda() -> bool:
    """False only when this is Linux and no GPU device node exists (NVIDIA's, or WSL2's /dev/dxg)."""
    import glob
    import sys

    if not sys.platform.startswith("linux"):
        return True
    return bool(glob.glob("/dev/nvidia*") or glob.glob("/dev/dxg"))
