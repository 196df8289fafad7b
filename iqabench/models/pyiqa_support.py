"""Building pyiqa metrics safely: weights from disk only (checked to hold tensors only, since pyiqa
unpickles them), no download, stdout kept clean, and transformers' Llama classes left intact.

Shared by the pyiqa methods and by the engine's builder of the embedded dataset (FSIM labels).
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import threading
from pathlib import Path

from iqabench.errors import IqaError, NotAvailable

_guard_lock = threading.Lock()
verbose = False


def weights_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "pyiqa"


@contextlib.contextmanager
def _no_downloads():
    """While pyiqa builds a metric, answer its weight requests from disk only.

    pyiqa modules import `load_file_from_url` by name, so each module's reference is swapped
    for the duration of the creation, then restored."""
    from pyiqa.utils import download_util

    def local_only(url, model_dir=None, progress=True, file_name=None):
        folder = Path(model_dir) if model_dir else Path(download_util.DEFAULT_CACHE_DIR)
        name = file_name or os.path.basename(url.split("?")[0])
        path = folder / name
        if not path.is_file():
            raise NotAvailable(f"needs weight file {name}: put it in {folder} (published at {url})")
        _check_tensors_only(path)
        return str(path)

    with _guard_lock:
        patched = []
        for mod in list(sys.modules.values()):
            if getattr(mod, "__name__", "").startswith("pyiqa") and getattr(mod, "load_file_from_url", None) is download_util.load_file_from_url:
                patched.append(mod)
        original = download_util.load_file_from_url
        for mod in patched:
            mod.load_file_from_url = local_only
        try:
            yield
        finally:
            for mod in patched:
                mod.load_file_from_url = original


def _check_tensors_only(path: Path) -> None:
    if path.suffix.lower() in (".pth", ".pt", ".ckpt", ".bin"):
        from iqabench.models.safe_load import load_tensors_only

        try:
            load_tensors_only(path)
        except IqaError as exc:
            raise NotAvailable(str(exc)) from None


# pyiqa's Q-Align arch replaces transformers' Llama classes for the whole process when imported
# (and pyiqa imports every arch when a name lookup misses). iqabench undoes that after each metric
# creation and refuses the metrics that depend on it; qalign-owl2 is the project's own Q-Align.
_NEEDS_GLOBAL_LLAMA_PATCH = ("qalign", "qalign_4bit", "qalign_8bit")
_LLAMA_MODULES = ("transformers.models.llama.configuration_llama", "transformers.models.llama.modeling_llama")


@contextlib.contextmanager
def _keep_transformers_intact():
    """Snapshot the Llama modules' attributes (and their classes' forwards) and restore them after."""
    import importlib

    try:
        modules = [importlib.import_module(name) for name in _LLAMA_MODULES]
    except ImportError:  # no transformers: nothing to protect
        yield
        return
    saved = [(m, dict(vars(m))) for m in modules]
    forwards = {(m, k): v.forward for m, attrs in saved for k, v in attrs.items()
                if isinstance(v, type) and "forward" in vars(v)}
    try:
        yield
    finally:
        for module, attrs in saved:
            for key, value in attrs.items():
                if getattr(module, key, None) is not value:
                    setattr(module, key, value)
        for (module, key), forward in forwards.items():
            cls = vars(module)[key]
            if vars(cls).get("forward") is not forward:
                cls.forward = forward


@functools.lru_cache(maxsize=8)
def create_metric(metric: str, device: str, metric_options: tuple):
    import pyiqa

    if metric in _NEEDS_GLOBAL_LLAMA_PATCH:
        raise NotAvailable(f"pyiqa:{metric} works only by replacing transformers' Llama classes process-wide, "
                           "which iqabench does not allow; use qalign-owl2 (same model, the project's own code)")
    # pyiqa and torchvision print download notices on stdout; keep stdout for results
    with _keep_transformers_intact(), _no_downloads(), \
            contextlib.redirect_stdout(sys.stderr if verbose else io.StringIO()):
        try:
            return pyiqa.create_metric(metric, device=device, **dict(metric_options))
        except NotAvailable:
            raise
        except (OSError, RuntimeError, ValueError, ImportError, AssertionError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise NotAvailable(f"pyiqa:{metric} needs weights that are not on disk (fetching failed: {first[:120]})") from exc
