"""Every pyiqa no-reference metric as a method: `pyiqa:<name>`, with short aliases.

Direction and score range come from pyiqa's own metric presets. Metrics whose weights are
not on disk fail at creation with one line naming the file and the folder it belongs in:
downloads are never attempted, and weight files are checked to hold tensors only before
pyiqa (which unpickles them) reads them.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import pydantic

from iqabench.api import Method, MethodInfo, Options, Sample
from iqabench.errors import IqaError, NotAvailable
from iqabench.models.pyiqa_support import create_metric

# Distribution, text-alignment or aesthetic-only scores are not image-quality scorers.
_NOT_IQA = {"fid", "fid_dinov2", "sfid", "inception_score", "clipscore"}
ALIASES = {n: n for n in ("piqe", "entropy", "niqe", "brisque", "ilniqe", "musiq", "topiq_nr",
                          "clipiqa", "maniqa", "dbcnn", "hyperiqa", "nima", "paq2piq", "liqe")}


class PyiqaOptions(Options):
    # pyiqa's own metric options (e.g. {"test_y_channel": false}), passed to create_metric
    metric_options: dict[str, Any] = pydantic.Field(default_factory=dict)
    # resize the shorter side to this many pixels before scoring (None keeps the image size)
    resize_short_side: int | None = None


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
            create_metric(cls.metric, "cpu", tuple(sorted((options or cls.Options()).metric_options.items())))
        except NotAvailable as exc:
            return str(exc)
        return None

    @classmethod
    def contract_options(cls, workdir):
        # pyiqa's weights cannot be built here: only weight-free metrics (or ones whose weights are
        # on disk) can run; the others must be refused at once
        return {} if cls.check_available() is None else None

    def setup(self) -> None:
        self.model = create_metric(self.metric, self.device, tuple(sorted(self.options.metric_options.items())))

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
