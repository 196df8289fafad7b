"""A method plugin for runner tests: a real (if simple) scorer, slowed down, that logs what it scores.

Score = mean gradient magnitude of the grey image (a sharpness measure). Options let a test make it
slow (to kill it mid-run), fail on chosen images, or return NaN, to exercise the runner's bookkeeping.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from iqabench.api import Method, MethodInfo, Options
from iqabench.registry import register_method


class SlowOptions(Options):
    delay: float = 0.0
    log: str | None = None  # file that gets one line per scored image id
    fail_on: tuple[str, ...] = ()
    nan_on: tuple[str, ...] = ()
    prepare_log: str | None = None  # with it, a dataset-wide pass caches per image and logs what it computed
    # a known point for a test that kills the run: once this process has scored `pause_after` images, each
    # further batch waits while the file `pause_file` exists (a test deletes it before resuming)
    pause_after: int | None = None
    pause_file: str | None = None


@register_method
class SlowSharpness(Method):
    name = "slow-sharpness"
    info = MethodInfo(kind="classic", description="mean gradient magnitude (test plugin)")
    Options = SlowOptions

    def prepare(self, source):
        """A cached dataset-wide pass, like Dog-IQA's segmentation: computes what the cache lacks."""
        if not self.options.prepare_log:
            return
        cache = self.cache_dir / "slow-prepare"
        cache.mkdir(parents=True, exist_ok=True)
        for sid in source.ids:
            marker = cache / sid
            if not marker.exists():
                time.sleep(self.options.delay)
                with open(self.options.prepare_log, "a") as fh:
                    fh.write(sid + "\n")
                marker.write_text("done")

    def score(self, samples):
        scored = getattr(self, "_scored", 0)
        if self.options.pause_after is not None and scored >= self.options.pause_after:
            while self.options.pause_file and Path(self.options.pause_file).exists():
                time.sleep(0.01)  # every batch before this one is on file: the test's known point
        self._scored = scored + len(samples)
        out = []
        for s in samples:
            if s.id in self.options.fail_on:
                raise ValueError(f"refusing {s.id} on purpose")
            grey = np.asarray(s.image.convert("L"), dtype=np.float64)
            value = float(np.mean(np.abs(np.diff(grey, axis=0))) + np.mean(np.abs(np.diff(grey, axis=1))))
            out.append(float("nan") if s.id in self.options.nan_on else value)
            if self.options.log:
                with open(self.options.log, "a") as fh:
                    fh.write(s.id + "\n")
            time.sleep(self.options.delay)
        return out
