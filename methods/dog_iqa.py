"""`dog-iqa`: standard-guided zero-shot mix-grained IQA (seed 004).

SAM2 automatic masks -> Algorithm 1 (drop small masks, bounding-box crops of the original
pixels, one mask for the uncovered area) -> an MLLM judge answers 1..K against a word standard
for the whole image and every crop -> final = (s_global + s_local)/2 + c*K/c_max.

`prepare(source)` segments every image of the part first (masks cached on disk under
`cache_dir`, keyed by dataset, image id and segmenter fingerprint, so another judge reuses
them) and takes c_max, the dataset's largest mask count; `score` then judges global views and
crops, batched across images. Table 4's ablations are options (crop, weights, parts, use_s_seg,
standard), as is K (levels).

s_seg = c*K/c_max as printed is the default (`s_seg_formula=paper`). Added to a score in [1, K] it can
leave that range (the paper says s_seg is normalised to stay in the MLLM scores' range; on a part where
every image has c_max masks it is the constant K); `minmax` and `unit` are other readings. The run's
metrics say how many scores left [1, K] and why (`runtime.score_range`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pydantic

if TYPE_CHECKING:  # numpy is imported where arrays are made, not on import
    import numpy as np

from iqabench.api import Method, MethodInfo, Options, RunContext, Sample, SampleSource
from iqabench.errors import IqaError
from iqabench.methods import dog_iqa_aggregate as agg
from iqabench.models.scoring import BackendOptions, backend_unavailable
from iqabench.models.segmenter import SegmenterOptions

log = logging.getLogger("iqabench.methods.dog_iqa")

# spellings of the options before the judge took the backend options' shape
RENAMED = {"judge_worker_python": "judge.worker_python", "judge_worker_host": "judge.worker_host"}


class JudgeOptions(BackendOptions):
    """The MLLM judge, with every MLLM method's backend options: mPLUG-Owl3 in-process by default (the
    project's implementation, iqabench/models/owl3, loading the official checkpoint's weights); the
    official code in its own venv on request (-o 'judge={"backend": "owl3-worker", "worker_python":
    "/venv/bin/python", "revision": "<commit>", "trust_remote_code": true}'; see
    iqabench/models/owl3_worker/README.md); or any backend, e.g. {"backend": "llava", "backend_path": DIR}."""

    backend: str = "owl3"
    backend_path: str = "mPLUG/mPLUG-Owl3-7B-240728"


class DogIqaOptions(Options):
    judge: JudgeOptions = JudgeOptions()
    """The MLLM judge's backend options (backend, backend_path, dtype, revision, trust_remote_code, resize, worker_python, worker_host)."""
    judge_mode: Literal["generate", "logits"] = "generate"
    """generate: the paper's parsed answer; logits: the expected level (NOT in the paper)."""
    judge_batch_size: int | None = pydantic.Field(None, ge=1)
    """Views (crops, from many images) per judge call; none: the run's --batch-size."""
    max_new_tokens: int = pydantic.Field(8, ge=1)
    """Answer length; the answer is parsed for its first number."""
    levels: Literal[3, 5, 7, 9] = 7
    """K, the number of levels of the standard."""
    standard: Literal["word", "number", "sentence"] = "word"
    """How the levels are described to the judge."""
    segmenter: SegmenterOptions = SegmenterOptions()
    """SAM2 automatic mask generator settings (SAM2's defaults)."""
    min_area_fraction: float = pydantic.Field(0.01, ge=0.0, le=1.0)
    """t: masks smaller than this fraction of the image area are dropped (the unit is our choice)."""
    add_uncovered: bool = True
    """Add one mask for the area no kept mask covers."""
    crop: Literal["bbox", "mask"] = "bbox"
    """Score each mask's bounding-box crop of the original pixels, or the zero-filled mask."""
    weights: Literal["area", "mean"] = "area"
    """Local score: area-weighted or plain mean of the crop scores."""
    parts: Literal["global+local", "local", "global"] = "global+local"
    """Which scores the final one averages."""
    use_s_seg: bool = True
    """Add the segment-count term s_seg (see s_seg_formula)."""
    # left out of the run key at its default, so keys made before it existed hold
    s_seg_formula: agg.SegFormula = pydantic.Field("paper", exclude_if=lambda v: v == "paper")
    """paper: s_seg = c*K/c_max, as printed (Sec. 3.2); the final score then lies in [1, 2K], and it is K for
    every image when every image has c_max masks. minmax: K*(c - c_min)/(c_max - c_min) over the part (0 when
    the counts do not vary); unit: c/c_max. The run's metrics (runtime.score_range) say when scores leave [1, K]."""
    seg_count: Literal["scored", "kept", "raw"] = "scored"
    """Which masks count as c."""
    c_max: int | None = pydantic.Field(None, ge=1)
    """c_max of s_seg; none: the maximum over the part being scored."""

    @pydantic.model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        for old, new in RENAMED.items():
            if isinstance(data, dict) and old in data:
                raise ValueError(f"option {old} is now {new}: -o 'judge={{\"{new.split('.')[1]}\": ...}}'")
        return data

    def aggregation(self) -> agg.AggregationOptions:
        return agg.AggregationOptions(min_area_fraction=self.min_area_fraction, crop=self.crop, weights=self.weights,
                                      parts=self.parts, use_s_seg=self.use_s_seg, add_uncovered=self.add_uncovered,
                                      seg_count=self.seg_count)


class ScoreRange:
    """How the final scores sit against [1, K], the range of the judge's answers (the paper normalises
    s_seg to "remain in the same range as the MLLM scores"). The printed formula adds s_seg to a score
    already in [1, K], so it can leave that range; the summary says when and why, in the run's metrics."""

    def __init__(self, levels: int):
        self.levels = levels
        self.n = self.outside = self.saturated = 0
        self.low = self.high = None
        self.seg_total = 0.0

    def add(self, final: float, s_seg: float | None, at_c_max: bool) -> None:
        self.n += 1
        self.low = final if self.low is None else min(self.low, final)
        self.high = final if self.high is None else max(self.high, final)
        self.outside += not 1.0 <= final <= self.levels
        if s_seg is not None:
            self.seg_total += s_seg
            self.saturated += at_c_max

    def summary(self, formula: str | None) -> dict[str, Any] | None:
        if not self.n:
            return None
        out: dict[str, Any] = {"judge_range": [1, self.levels], "min": round(self.low, 6), "max": round(self.high, 6),
                               "outside_judge_range": self.outside}
        if formula:
            out["s_seg_mean"] = round(self.seg_total / self.n, 6)
            out["at_c_max"] = self.saturated
        if self.outside:
            out["note"] = (f"{self.outside} of {self.n} scores lie outside [1, {self.levels}], the judge's range the paper "
                           f"keeps s_seg in: s_seg_formula={formula} adds up to {self.levels if formula != 'unit' else 1}"
                           + (f"; {self.saturated} images have c_max masks, so their s_seg is the constant "
                              f"{self.levels}" if formula == "paper" and self.saturated else "")
                           + " (other readings: -o s_seg_formula=minmax or unit)")
        return out


class DogIqa(Method):
    name: ClassVar[str] = "dog-iqa"
    info: ClassVar[MethodInfo] = MethodInfo(
        kind="zero-shot",
        description="Dog-IQA: SAM2 masks + MLLM judge on a 7-word standard, area-weighted mix-grained aggregation",
        higher_better=True,
        needs_weights="SAM2 (facebook/sam2-hiera-large-hf) and mPLUG-Owl3-7B (mPLUG/mPLUG-Owl3-7B-240728)",
        needs_gpu=True,
        extra="mllm",
    )
    Options: ClassVar[type[Options]] = DogIqaOptions

    def __init__(self, options: DogIqaOptions | None = None):
        super().__init__(options)
        self._judge = None
        self._segmenter = None
        self._cache = None
        self._memory_masks: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}
        self._c_max: int | None = self.options.c_max
        self._c_min: int = 0  # the part's smallest mask count, for s_seg_formula=minmax
        self._extras: dict[str, dict[str, Any]] = {}
        self._range = ScoreRange(self.options.levels)
        self._details: dict[str, tuple[list[agg.LocalRegion], list[float]]] | None = None  # kept for figure()
        self._stats = {"segmentations": 0, "mask_cache_hits": 0, "images_scored": 0,
                       "segment_seconds": 0.0, "judge_seconds": 0.0, "score_seconds": 0.0, "prepare_seconds": 0.0}

    @classmethod
    def check_available(cls, options: DogIqaOptions | None = None) -> str | None:
        why = backend_unavailable((options or DogIqaOptions()).judge)
        return f"judge: {why}" if why else None

    # -- what is needed -------------------------------------------------------------
    def _needs_masks(self) -> bool:
        o = self.options
        return o.parts != "global" or o.use_s_seg

    def setup(self, ctx: RunContext) -> None:
        super().setup(ctx)
        self._ensure_judge()

    def _ensure_judge(self):
        if self._judge is None:
            from iqabench.methods.dog_iqa_judge import JudgeSettings, StandardJudge
            from iqabench.models.backend import load_backend

            o = self.options
            backend = load_backend(o.judge.backend_spec(), self.device)
            self._judge = StandardJudge(backend, JudgeSettings(levels=o.levels, standard=o.standard, mode=o.judge_mode,
                                                               batch_size=o.judge_batch_size or self.batch_size,
                                                               max_new_tokens=o.max_new_tokens))
        return self._judge

    def _ensure_segmenter(self):
        if self._segmenter is None:
            from iqabench.models.mask_cache import MaskCache
            from iqabench.models.segmenter import Segmenter

            self._segmenter = Segmenter(self.options.segmenter, self.device)
            if self.cache_dir is not None:
                if not self.dataset:
                    raise IqaError(f"{self.name}: a mask cache folder was given without the dataset's name to key it")
                self._cache = MaskCache(Path(self.cache_dir), self.dataset, self._segmenter.fingerprint())
        return self._segmenter

    # -- masks ----------------------------------------------------------------------
    def _masks(self, sample: Sample) -> np.ndarray:
        """The image's masks: from the cache when present, else segmented and cached."""
        segmenter = self._ensure_segmenter()
        if self._cache is not None:
            masks = self._cache.load(sample.id, sample.image.size)
        else:
            masks = self._memory_masks.get(sample.id)
        if masks is not None:
            self._stats["mask_cache_hits"] += 1
            return masks
        start = time.perf_counter()
        masks = segmenter.segment(sample.image)
        self._stats["segment_seconds"] += time.perf_counter() - start
        self._stats["segmentations"] += 1
        if self._cache is not None:
            self._cache.save(sample.id, masks)
        else:
            self._memory_masks[sample.id] = masks
        return masks

    def _count(self, masks: np.ndarray, regions: list[agg.LocalRegion]) -> int:
        return agg.mask_count(len(masks), regions, self.options.seg_count)

    def prepare(self, source: SampleSource) -> None:
        """Segment every image of the part (cached) and take c_max over it."""
        if not self._needs_masks():
            return
        opts = self.options.aggregation()
        start = time.perf_counter()
        for batch in source.batches(1):
            for sample in batch:
                masks = self._masks(sample)
                self._counts[sample.id] = self._count(masks, agg.select_regions(masks, opts))
        if self.options.c_max is None:
            self._c_max = max(self._counts.values(), default=0)
        self._c_min = min(self._counts.values(), default=0)
        self._stats["prepare_seconds"] += time.perf_counter() - start

    # -- scoring --------------------------------------------------------------------
    def score(self, samples: Sequence[Sample]) -> list[float]:
        import numpy as np

        o = self.options
        opts = o.aggregation()
        judge = self._ensure_judge()
        if o.use_s_seg and self._c_max is None:
            raise IqaError("dog-iqa: c_max is unknown: prepare() was not run over the part and the c_max option is not set")
        if o.use_s_seg and o.s_seg_formula == "minmax" and not self._counts:
            raise IqaError("dog-iqa: s_seg_formula=minmax needs the part's mask counts: prepare() was not run over the part")
        start = time.perf_counter()
        views: list[Any] = []
        plans = []
        for sample in samples:
            image = sample.image.convert("RGB")
            pixels = np.asarray(image)
            regions: list[agg.LocalRegion] = []
            raw = 0
            if self._needs_masks():
                masks = self._masks(sample)
                raw = len(masks)
                regions = agg.select_regions(masks, opts)
            first = len(views)
            if o.parts in ("global+local", "global"):
                views.append(image)
            local = o.parts in ("global+local", "local")
            if local:
                from PIL import Image

                views.extend(Image.fromarray(agg.crop_region(pixels, r, o.crop)) for r in regions)
            plans.append((sample, regions, raw, first, len(views)))
        judge_start = time.perf_counter()
        verdicts = judge.score(views)
        self._stats["judge_seconds"] += time.perf_counter() - judge_start
        scores = []
        for sample, regions, raw, first, end in plans:
            mine = verdicts[first:end]
            has_global = o.parts in ("global+local", "global")
            s_global = mine[0].score if has_global else None
            local_verdicts = mine[1:] if has_global else mine
            s_local = None
            if o.parts != "global":
                s_local = agg.local_score([v.score for v in local_verdicts], [r.area for r in regions], o.weights)
            count = agg.mask_count(raw, regions, o.seg_count)
            s_seg = agg.seg_score(count, o.levels, self._c_max, o.s_seg_formula, self._c_min) if o.use_s_seg else None
            final = agg.final_score(s_global, s_local, s_seg, o.parts)
            scores.append(final)
            self._range.add(final, s_seg, count == self._c_max)
            if self._details is not None:
                self._details[sample.id] = (regions, [v.score for v in local_verdicts] if s_local is not None else [])
            self._extras[sample.id] = {
                "masks": raw, "regions": len(regions), "judge_views": len(mine),
                "parse_failures": sum(not v.parsed for v in mine),
                "s_global": s_global, "s_local": s_local, "s_seg": s_seg,
                "answers": [v.answer for v in mine] if o.judge_mode == "generate" else None,
            }
        self._stats["images_scored"] += len(samples)
        self._stats["score_seconds"] += time.perf_counter() - start
        return scores

    def figure(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Seed 004's Fig. 5: each image with its score, its segments with their count, and three of its
        crops (best, middle and worst scored) with their scores and area weights."""
        from iqabench.methods.dog_iqa_figure import segments_figure

        self._details = {}
        try:
            scores = self.score(samples)
            rows = [(sample, score, *self._details[sample.id]) for sample, score in zip(samples, scores)]
        finally:
            self._details = None
            for sample in samples:
                self._extras.pop(sample.id, None)
        title = f"{self.name}: judge {self.options.judge.backend} {self.options.judge.backend_path}, K = {self.options.levels}"
        return {"segments": segments_figure(rows, title, self.options.crop)}

    # -- records --------------------------------------------------------------------
    @classmethod
    def contract_options(cls, workdir) -> dict:
        """Tiny random SAM2 and a tiny Llava judge; a sparse point grid so tiny images get masks."""
        from iqabench.models.tiny import tiny_model_path

        return {"judge": {"backend": "llava", "backend_path": tiny_model_path("llava", workdir)},
                "segmenter": {"model": tiny_model_path("sam2", workdir), "points_per_side": 4,
                              "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}}

    def teardown(self) -> None:
        summary = self._range.summary(self.options.s_seg_formula if self.options.use_s_seg else None)
        if summary and "note" in summary:  # also in metrics.json (runtime.score_range)
            log.warning("%s: %s", self.name, summary["note"])
        backend = getattr(self._judge, "backend", None)
        if hasattr(backend, "close"):
            backend.close()  # the mPLUG-Owl3 worker process

    def runtime_stats(self) -> dict[str, Any]:
        s = self._stats
        judge = self._judge
        n = max(s["images_scored"], 1)
        return {
            "judge_calls": judge.calls if judge else 0,
            "judge_views": judge.views if judge else 0,
            "parse_failures": judge.failures if judge else 0,
            "segmentations": s["segmentations"],
            "mask_cache_hits": s["mask_cache_hits"],
            "images_scored": s["images_scored"],
            # wall time of prepare (segmentation) and score together, per image scored
            "seconds_per_image": round((s["prepare_seconds"] + s["score_seconds"]) / n, 4) if s["images_scored"] else None,
            "segment_seconds": round(s["segment_seconds"], 3),
            "judge_seconds": round(s["judge_seconds"], 3),
            "c_max": self._c_max,
            "c_max_source": "option" if self.options.c_max is not None else "dataset",
            "mask_cache_key": self._cache.key if self._cache is not None else None,
            "judge_backend": judge.backend.fingerprint() if judge else None,
            "s_seg_formula": self.options.s_seg_formula if self.options.use_s_seg else None,
            "score_range": self._range.summary(self.options.s_seg_formula if self.options.use_s_seg else None),
        }

    def sample_extras(self, sample_id: str) -> dict[str, Any]:
        return self._extras.pop(sample_id, {})
