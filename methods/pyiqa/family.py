"""Every pyiqa image-quality metric as a method: `pyiqa:<name>`, with short aliases.

No-reference metrics score an image; full-reference ones (psnr, ssim, fsim, lpips, ...) score it
against its reference, which the engine decodes for them (`MethodInfo.needs_reference`).
Direction and score range come from pyiqa's presets, read from pyiqa's source as data: importing
pyiqa takes seconds. Which files a metric needs comes from a table derived once from pyiqa itself
(weights.py, made by derive.py), so `check_available` only looks at files on disk: it
builds nothing and opens no connection. Building (setup) goes through
iqabench.models.pyiqa_support: no download, weight files read as tensors only.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import pydantic

from iqabench.api import Method, MethodInfo, Options, RunContext, Sample
from iqabench.errors import IqaError, one_line
from iqabench.models.pyiqa_support import check_metric_options, create_metric, is_path_option, missing, refusal

# Distribution, text-alignment or aesthetic-only scores are not image-quality scorers.
_NOT_IQA = {"fid", "fid_dinov2", "sfid", "inception_score", "clipscore"}
_NR_ALIASES = ("piqe", "entropy", "niqe", "brisque", "ilniqe", "musiq", "topiq_nr", "clipiqa", "maniqa", "dbcnn",
               "hyperiqa", "nima", "paq2piq", "liqe")
_FR_ALIASES = ("psnr", "ssim", "ms_ssim", "fsim", "vif", "gmsd", "vsi", "nlpd", "cw_ssim", "mad", "lpips", "dists")
ALIASES = {n: n for n in _NR_ALIASES + _FR_ALIASES}
_INSTALL = "pyiqa is not installed (pip install 'iqabench[classic]')"


# Metrics whose float32 score goes through a model fitted to summed features (BRISQUE's SVM, NIQE's fitted
# Gaussian): the order of torch's parallel sums, which the thread count sets, moves their scores (BRISQUE's
# features by ~1e-6 relative between 1 and 2 threads here; up to 0.04 in score on a LIVE Challenge image).
# They score on one thread, so a score does not depend on the machine that computed it.
ONE_THREAD = frozenset({"brisque", "niqe", "ilniqe", "nrqm", "pi"})


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """torch's intra-op thread count set to `n` for the block (None: left as it is), then restored."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n is not None:
            torch.set_num_threads(before)


class PyiqaOptions(Options):
    metric_options: dict[str, Any] = pydantic.Field(default_factory=dict)
    """pyiqa's own metric options, e.g. {"test_y_channel": false}; options ending in _path name files,
    which must exist and hold tensors only (or be MATLAB files)."""
    resize_short_side: int | None = pydantic.Field(default=None, gt=0)
    """Resize the shorter side to this many pixels before scoring (none: keep the size); a
    full-reference metric resizes the reference the same way."""


@functools.lru_cache(maxsize=None)
def _pyiqa_installed() -> bool:
    return "pyiqa" in sys.modules or importlib.util.find_spec("pyiqa") is not None


@functools.lru_cache(maxsize=None)
def _presets() -> dict[str, dict]:
    """pyiqa's image-quality presets (no- and full-reference), without importing pyiqa."""
    if not _pyiqa_installed():
        raise ImportError(_INSTALL)
    module = sys.modules.get("pyiqa.default_model_configs")
    configs = module.DEFAULT_CONFIGS if module is not None else _read_presets()
    return {k: v for k, v in configs.items() if v.get("metric_mode") in ("NR", "FR") and k not in _NOT_IQA}


def _read_presets() -> dict[str, dict]:
    """DEFAULT_CONFIGS of pyiqa's default_model_configs.py, parsed as a literal (it is pure data)."""
    spec = importlib.util.find_spec("pyiqa")  # finds the package folder without running it
    path = Path(list(spec.submodule_search_locations)[0]) / "default_model_configs.py"
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DEFAULT_CONFIGS" for t in node.targets):
            value = node.value.args[0] if isinstance(node.value, ast.Call) and node.value.args else node.value
            try:
                return dict(ast.literal_eval(value))
            except ValueError:
                break
    from pyiqa.default_model_configs import DEFAULT_CONFIGS  # a layout we do not know: the slow way

    return dict(DEFAULT_CONFIGS)


@functools.lru_cache(maxsize=None)
def _weights() -> dict[str, tuple]:
    """The derived table, when it was made for the installed pyiqa (else every need is unknown)."""
    import importlib.metadata

    from iqabench.methods.pyiqa.weights import PYIQA_VERSION, WEIGHTS

    try:
        installed = importlib.metadata.version("pyiqa")
    except importlib.metadata.PackageNotFoundError:
        return {}
    return WEIGHTS if installed == PYIQA_VERSION else {}


def _parse_range(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    # pyiqa marks a typical end with "~" (PSNR "~0, ~40" passes 40 on mild distortions): only an exact
    # end bounds the declared range, a typical one leaves that side open
    try:
        lo, hi = (p.strip() for p in str(text).split(","))
        lo = -math.inf if lo.startswith("~") else float(lo)
        hi = math.inf if hi.startswith("~") else float(hi)
    except ValueError:
        return None
    if math.isinf(lo) and math.isinf(hi):
        return None
    return (lo, hi)


def _describe_needs(metric: str) -> str | None:
    if refusal(metric):
        return "not offered (patches transformers process-wide; see qalign-owl2)"
    entry = _weights().get(metric)
    if entry is None:
        return f"unknown (no table for this pyiqa version); pyiqa weights for {metric} unless weight-free"
    complete, needs, _ = entry
    if not needs:
        return None if complete else "unknown: pyiqa could not be built offline to find out"
    files = ", ".join(f"{Path(rel).name} ({'Hugging Face' if root == 'hf' else root})" for root, rel, _ in needs)
    return files + ("" if complete else ", maybe more")


def _cuda_only(metric: str) -> bool:
    # pyiqa code that moves tensors to CUDA whatever the device (the derivation stopped there on CPU)
    stopped = (_weights().get(metric) or (True, (), None))[2] or ""
    return "NVIDIA driver" in stopped


def make_method(metric: str) -> type[Method]:
    preset = _presets()[metric]
    full_ref = preset["metric_mode"] == "FR"
    info = MethodInfo(
        kind="classic",
        description=f"pyiqa {metric} ({preset['metric_opts'].get('type', '?')}, "
                    f"{'full-reference' if full_ref else 'no-reference'})",
        higher_better=not preset.get("lower_better", False),
        score_range=_parse_range(preset.get("score_range")),
        needs_weights=_describe_needs(metric),
        needs_gpu=_cuda_only(metric),
        extra="classic",
        needs_reference=full_ref,
    )
    return type(f"Pyiqa_{metric}", (PyiqaMethod,), {"name": f"pyiqa:{metric}", "metric": metric, "info": info})


class PyiqaMethod(Method):
    metric: str = ""
    Options = PyiqaOptions

    @classmethod
    def check_available(cls, options=None) -> str | None:
        """From the table and the files on disk only: nothing is built, imported or fetched."""
        if not _pyiqa_installed():
            return _INSTALL
        reason = refusal(cls.metric)
        if reason:
            return reason
        metric_options = (options or cls.Options()).metric_options
        try:
            check_metric_options(cls.metric, metric_options, read_files=False)
        except IqaError as exc:
            return str(exc)
        entry = _weights().get(cls.metric)
        if entry is None:  # unknown needs: setup() says what is missing, in one line
            return None
        complete, known, stopped = entry
        if not complete and not known:  # the derivation stopped before any file was asked for
            return f"pyiqa:{cls.metric} cannot be built offline ({stopped})"
        needs = known
        if any(is_path_option(k) for k in metric_options):
            # the user's file stands in for pyiqa's own weights; backbones are still needed
            needs = [n for n in known if n[0] != "pyiqa"]
        return missing(needs)

    @classmethod
    def option_files(cls, options) -> dict[str, Path]:
        """The files `metric_options` names (a NIQE or BRISQUE parameter file, weights): their content
        is in the run key, so an edited file starts a new run."""
        return {f"metric_options.{k}": Path(v).expanduser() for k, v in options.metric_options.items()
                if is_path_option(k) and isinstance(v, str) and v and "://" not in v}

    @classmethod
    def contract_options(cls, workdir):
        # only weight-free metrics (or ones whose weights are on disk) can run here; the others
        # must be refused at once. The contract's images are small (64 px): a metric that
        # cannot take them (multi-scale ones) is tried on upscaled copies.
        if cls.check_available() is not None:
            return None
        return {} if cls._accepts(64) else {"resize_short_side": 192}

    @classmethod
    def _accepts(cls, side: int) -> bool:
        from PIL import Image

        image = Image.effect_noise((side, side), 64).convert("RGB")
        method = cls(cls.Options())
        method.setup(RunContext())
        try:
            method.score([Sample(id="probe", image=image, reference=image)])
        except ValueError:
            return False
        return True

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        self.model = create_metric(self.metric, self.device, self.options.metric_options)

    def fingerprint(self) -> dict[str, Any]:
        told = super().fingerprint()
        return {**told, "torch_threads": 1} if self.metric in ONE_THREAD else told

    def _tensor(self, image):
        import numpy as np
        import torch

        short = self.options.resize_short_side
        if short:
            w, h = image.size
            scale = short / min(w, h)
            image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample=3)
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1)[None].to(self.device)

    def _inputs(self, sample: Sample) -> tuple:
        if not self.info.needs_reference:
            return (self._tensor(sample.image),)
        ref = sample.reference
        if ref is None:  # a per-image error (the runner records it), never a no-reference fallback
            raise ValueError(f"no reference image ({self.name} is full-reference)")
        if ref.size != sample.image.size:
            raise ValueError("image is {}x{} but its reference is {}x{}: full-reference metrics compare "
                             "images of one size".format(*sample.image.size, *ref.size))
        return (self._tensor(sample.image), self._tensor(ref))

    def score(self, samples: Sequence[Sample]) -> list[float]:
        import torch

        scores = []
        for sample in samples:  # images differ in size; pyiqa metrics take one at a time
            inputs = self._inputs(sample)
            try:
                with torch.no_grad(), _torch_threads(1 if self.metric in ONE_THREAD else None):
                    scores.append(float(self.model(*inputs).flatten()[0]))
            except RuntimeError as exc:
                if "greater than actual input size" not in str(exc):
                    raise
                w, h = inputs[0].shape[-1], inputs[0].shape[-2]
                raise ValueError(f"a {w}x{h} image is too small for {self.name} (try -o resize_short_side=...); "
                                 f"pyiqa: {one_line(exc, 120)}") from None
        return scores


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
            raise IqaError(_INSTALL) from exc
        if metric not in presets:
            import difflib

            close = difflib.get_close_matches(metric, presets, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise IqaError(f"unknown pyiqa metric {metric!r}{hint}")
        if metric not in self._classes:
            self._classes[metric] = make_method(metric)
        return self._classes[metric]


FAMILY = PyiqaFamily()
