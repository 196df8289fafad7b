"""Every pyiqa no-reference metric as a method: `pyiqa:<name>`, with short aliases.

Direction and score range come from pyiqa's own metric presets. Metrics whose weights are
not on disk fail at creation with one line naming the file and the folder it belongs in:
downloads are never attempted, and weight files are checked to hold tensors only before
pyiqa (which unpickles them) reads them.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

import pydantic

from iqabench.api import Method, MethodInfo, Options, Sample
from iqabench.errors import IqaError, NotAvailable

# Distribution, text-alignment or aesthetic-only scores are not image-quality scorers.
_NOT_IQA = {"fid", "fid_dinov2", "sfid", "inception_score", "clipscore"}
ALIASES = {n: n for n in ("piqe", "entropy", "niqe", "brisque", "ilniqe", "musiq", "topiq_nr",
                          "clipiqa", "maniqa", "dbcnn", "hyperiqa", "nima", "paq2piq", "liqe")}
_guard_lock = threading.Lock()
_verbose = False


class PyiqaOptions(Options):
    # pyiqa's own metric options (e.g. {"test_y_channel": false}), passed to create_metric
    metric_options: dict[str, Any] = pydantic.Field(default_factory=dict)
    # resize the shorter side to this many pixels before scoring (None keeps the image size)
    resize_short_side: int | None = None


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


@functools.lru_cache(maxsize=None)
def _presets() -> dict[str, dict]:
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    return {k: v for k, v in DEFAULT_CONFIGS.items() if v.get("metric_mode") == "NR" and k not in _NOT_IQA}


def _parse_range(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        lo, hi = (float(p.strip().lstrip("~")) for p in str(text).split(","))
    except ValueError:
        return None
    return (lo, hi)


def make_method(metric: str) -> type[Method]:
    presets = _presets()
    preset = presets[metric]
    info = MethodInfo(
        kind="classic",
        description=f"pyiqa {metric} ({preset['metric_opts'].get('type', '?')})",
        higher_better=not preset.get("lower_better", False),
        score_range=_parse_range(preset.get("score_range")),
        needs_weights=f"pyiqa weights for {metric} in $TORCH_HOME/hub/pyiqa unless weight-free",
        extra="classic",
    )
    return type(f"Pyiqa_{metric}", (PyiqaMethod,), {"name": f"pyiqa:{metric}", "metric": metric, "info": info})


class PyiqaMethod(Method):
    metric: str = ""
    Options = PyiqaOptions

    @classmethod
    def check_available(cls, options=None) -> str | None:
        try:
            import pyiqa  # noqa: F401
        except ImportError:
            return "pyiqa is not installed (pip install 'iqabench[classic]')"
        try:
            _create(cls.metric, "cpu", tuple(sorted((options or cls.Options()).metric_options.items())))
        except NotAvailable as exc:
            return str(exc)
        return None

    @classmethod
    def contract_options(cls, workdir):
        # pyiqa's weights cannot be built here: only weight-free metrics (or ones whose weights are
        # on disk) can run; the others must be refused at once
        return {} if cls.check_available() is None else None

    def setup(self) -> None:
        self.model = _create(self.metric, self.device, tuple(sorted(self.options.metric_options.items())))

    def score(self, samples: Sequence[Sample]) -> list[float]:
        import numpy as np
        import torch

        scores = []
        for sample in samples:  # images differ in size; pyiqa metrics take one at a time
            img = sample.image
            short = self.options.resize_short_side
            if short:
                w, h = img.size
                scale = short / min(w, h)
                img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample=3)
            x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
            with torch.no_grad():
                scores.append(float(self.model(x.to(self.device)).flatten()[0]))
        return scores


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
def _create(metric: str, device: str, metric_options: tuple):
    import pyiqa

    if metric in _NEEDS_GLOBAL_LLAMA_PATCH:
        raise NotAvailable(f"pyiqa:{metric} works only by replacing transformers' Llama classes process-wide, "
                           "which iqabench does not allow; use qalign-owl2 (same model, the project's own code)")
    # pyiqa and torchvision print download notices on stdout; keep stdout for results
    with _keep_transformers_intact(), _no_downloads(), \
            contextlib.redirect_stdout(sys.stderr if _verbose else io.StringIO()):
        try:
            return pyiqa.create_metric(metric, device=device, **dict(metric_options))
        except NotAvailable:
            raise
        except (OSError, RuntimeError, ValueError, ImportError, AssertionError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise NotAvailable(f"pyiqa:{metric} needs weights that are not on disk (fetching failed: {first[:120]})") from exc


class PyiqaFamily:
    """Resolves `pyiqa:<name>` to a Method class built from pyiqa's preset."""

    aliases = ALIASES

    def __init__(self):
        self._classes: dict[str, type[Method]] = {}

    def names(self) -> list[str]:
        try:
            return sorted(_presets())
        except ImportError:
            return sorted(ALIASES)

    def resolve(self, metric: str) -> type[Method]:
        try:
            presets = _presets()
        except ImportError as exc:
            raise IqaError("pyiqa is not installed (pip install 'iqabench[classic]')") from exc
        if metric not in presets:
            import difflib

            close = difflib.get_close_matches(metric, presets, n=3)
            raise IqaError(f"unknown pyiqa no-reference metric {metric!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
        if metric not in self._classes:
            self._classes[metric] = make_method(metric)
        return self._classes[metric]


FAMILY = PyiqaFamily()
