"""The contracts between the engine and the plugins.

A method sees samples (decoded images and their labels) and returns one float per image.
It never reads files, computes correlations or writes results: the runner does.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Sequence

import pydantic

Kind = Literal["zero-shot", "trainable", "classic"]


@dataclasses.dataclass
class Sample:
    """One image of a dataset, decoded by the engine.

    `image` is an RGB `PIL.Image.Image`; `label` is the dataset's raw score (MOS or DMOS, as
    published); `ref` names the pristine reference for synthetic-distortion sets.

    `target` is what a trainer fits: the label oriented so that higher is better and scaled to
    [0, 1] from the dataset card's range, computed by the engine (methods never read a card's
    direction or range). It is set on training and validation samples, None when scoring.
    `reference` is the decoded reference image, given only to methods whose info says
    `needs_reference` (full-reference metrics).
    """

    id: str
    image: Any
    label: float | None = None
    ref: str | None = None
    target: float | None = None
    reference: Any = None


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """What `iqabench list methods` shows and what the runner records."""

    kind: Kind
    description: str
    higher_better: bool = True
    score_range: tuple[float, float] | None = None
    needs_weights: str | None = None  # what must be on disk, if anything
    needs_gpu: bool = False  # True when CPU use is impractical, not impossible
    extra: str | None = None  # the pip extra that brings its dependencies
    needs_reference: bool = False  # full-reference: samples carry the decoded reference image
    fixed_grid: bool = False  # edits pixels or vision features: needs an MLLM backend with a fixed image grid


class Options(pydantic.BaseModel):
    """Base for method options: a typo in an option name fails loudly."""

    # A string literal under a field is its help text (`iqabench options METHOD` prints it, read by
    # iqabench.cli.options_cmd.field_help). Not pydantic's use_attribute_docstrings: that parses every
    # class's source when it is defined, a third of a second of every `iqabench list methods`.
    # defer_build: a class's validator is built when it first validates, not when its module is
    # imported (listing imports every method and validates few of their options).
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, defer_build=True)


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What the engine tells a method about the run it is set up for; passed to `setup(ctx)`.

    `batch_size` is the scoring batch (`--batch-size`) when scoring and the resolved training batch
    when training; None (a method built in Python without one) means the method's own default.
    `dataset` names the dataset scored or trained on (for per-dataset presets and cache keys), None
    for a folder of images; `cache_dir` is a folder for expensive intermediate results the method
    keys itself (e.g. segmentation masks). `progress` says whether the method may draw progress bars
    (never with `--no-progress`). `prompt_source` holds the labelled images a method conditions on,
    given only to a class whose `wants_prompt_source` is True: the train part of the split, never
    the part being scored (None when there is none, or for a folder of images).
    """

    device: str = "cpu"
    batch_size: int | None = None
    dataset: str | None = None
    cache_dir: Path | None = None
    progress: bool = False
    prompt_source: "SampleSource | None" = None


class Method:
    """A scorer of images. Subclasses set `name`, `info` and `Options`, and implement `score`.

    Lifecycle, driven by the engine: `cls(options)`, then `setup(ctx)` once (only when something is
    left to score), `prepare`/`score` (or `fit`), then `teardown()` once. A subclass overriding
    `setup` calls `super().setup(ctx)` first; `self.ctx` is the context it was set up with (before
    that, `RunContext()`'s defaults), and `device`, `batch_size`, `dataset` and `cache_dir` read it.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    info: ClassVar[MethodInfo]
    Options: ClassVar[type[Options]] = Options
    # A method that conditions on labelled images (PromptIQA's image-score prompt) sets this: the
    # engine then gives it `ctx.prompt_source` (a SampleSource over the split's train part).
    wants_prompt_source: ClassVar[bool] = False

    def __init__(self, options: Options | None = None):
        self.options = options if options is not None else self.Options()
        self.ctx = RunContext()

    @property
    def device(self) -> str:
        return self.ctx.device

    @property
    def batch_size(self) -> int:
        return self.ctx.batch_size or 1

    @property
    def dataset(self) -> str | None:
        return self.ctx.dataset

    @property
    def cache_dir(self) -> Path | None:
        return Path(self.ctx.cache_dir) if self.ctx.cache_dir is not None else None

    @classmethod
    def check_available(cls, options: Options | None = None) -> str | None:
        """Return why the method cannot run here, or None when it can. Must be cheap."""
        return None

    def setup(self, ctx: RunContext | None = None) -> None:
        """Build models. Called once, only when there is something left to score (or to train).
        Overrides call `super().setup(ctx)` first: it keeps `ctx` as `self.ctx`. (None keeps the
        context held: a plugin's `setup(self)` written before RunContext may call `super().setup()`.)"""
        if ctx is not None:
            self.ctx = ctx

    def prepare(self, source: "SampleSource") -> None:
        """Optional pass over every image of the part being scored, before any `score` call
        (e.g. a dataset-wide statistic). Must be resumable through `cache_dir`."""

    def score(self, samples: Sequence[Sample]) -> Sequence[float]:
        raise NotImplementedError

    def teardown(self) -> None:
        """Release what setup() started (worker processes, GPU memory). Always called."""

    def figure(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Named PIL images showing what the method does on these samples (its paper's figure, e.g. a
        trained prompt applied to them), for `iqabench figures method`; called after setup (and after
        prepare over the part). Helpers: iqabench.report.figures. {}: the method draws no figure."""
        return {}

    @classmethod
    def recipe_split(cls, dataset: str) -> tuple[str, str] | None:
        """(split name, where it comes from) when the method's own recipe (its paper) evaluates on a
        published split of `dataset` (its card's name): `run` and `train` use it when --split is not
        given, say so and record it. None: the card's default split."""
        return None

    @classmethod
    def option_files(cls, options: Options) -> dict[str, Path]:
        """Files the options name whose CONTENT changes the scores (e.g. in-context examples, a prompt
        CSV): option name -> path (a nested option dotted: `metric_options.x_path`), read from the options
        alone. The engine hashes them into the run's identity, so an edited file starts a new run instead
        of resuming one with mixed inputs; a suite file's values are taken relative to its folder."""
        return {}

    @classmethod
    def named_files(cls, options: Options) -> dict[str, Path]:
        """The files that the `option_files` name in turn (the images of an examples CSV): a name -> path,
        hashed into the run's identity with them. Resolve them with `iqabench.io.named_by`, which keeps
        them inside the naming file's folder."""
        return {}

    @classmethod
    def contract_options(cls, workdir: Path) -> dict[str, Any] | None:
        """Options that make this method run offline for the contract test (e.g. pointing at a
        tiny random model it builds in `workdir`), or None when it cannot run offline at all."""
        return {}

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the scores. Asked twice: before setup (on a freshly built object),
        where whatever it adds to the name and options (e.g. a hash of a file the method reads) is
        hashed into the run's key, so that file changed makes a new run folder; and after setup, where
        it also names the loaded model (resolved snapshot, answer token ids) and is recorded with each
        scoring attempt (metrics.json flags `model_identity_changed` when attempts differ). Keep the
        name and options under "method" and "options"; anything added before setup must be cheap."""
        return {"method": self.name, "options": self.options.model_dump(mode="json")}

    def runtime_stats(self) -> dict[str, Any]:
        """Method-specific counters to record with the metrics (e.g. judge calls)."""
        return {}

    def sample_extras(self, sample_id: str) -> dict[str, Any]:
        """Per-image details to store beside the score (e.g. mask count). Popped once read."""
        return {}


Progress = Callable[[str, float | None], None]


class TrainableMethod(Method):
    """A method with a training stage: fit on train, select on val, save, load."""

    # Options that only say how long to train: changing them resumes the same checkpoint folder
    # (e.g. more epochs) instead of starting a new one.
    schedule_options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def checkpoint_files(cls) -> tuple[str, ...]:
        return ("checkpoint.safetensors", "checkpoint.json")

    @classmethod
    def external_weights(cls, options: Options) -> Path | None:
        """A published weights file the options name (e.g. `-o prompt_path=FILE`): scored with it,
        no `iqabench train` checkpoint needed. The method reads that file itself in `setup()`; the
        engine records the file's hash in the run's identity and does not call `load_checkpoint`."""
        return None

    @classmethod
    def missing_checkpoint_help(cls, options: Options, train_command: str) -> str | None:
        """The message for a run that finds no trained checkpoint, when the method can say more than
        "train it first" (e.g. its base weights are not on this machine either, and a published file
        could be scored instead); `train_command` is the `iqabench train` line the run would need.
        None: the engine's message."""
        return None

    def fit(self, train: "SampleSource", val: "SampleSource", workdir: Path, seed: int) -> dict[str, Any]:
        """Train, resuming from `workdir` when it holds a partial state; leave the selected
        checkpoint in `workdir`. Returns a summary (e.g. best val SRCC, epochs run)."""
        raise NotImplementedError

    def load_checkpoint(self, workdir: Path) -> None:
        raise NotImplementedError


class SampleSource:
    """A sized, re-iterable collection of samples, decoded lazily by the engine.

    `batches(size, shuffle_seed)` yields lists of samples; undecodable images are reported to
    `on_failure(id, reason)` and left out of the batch, so a trainer never sees them.
    `groups` is set when the source is a training mix (iqabench.data.union): each member dataset's
    ids, for a trainer that draws from one dataset at a time; None for one dataset.
    """

    def __init__(self, ids: Sequence[str], load: Callable[[str], Sample], on_failure: Callable[[str, str], None] | None = None,
                 groups: dict[str, list[str]] | None = None):
        self.ids = list(ids)
        self._load = load
        self._on_failure = on_failure
        self.groups = groups

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, sample_id: str) -> Sample | None:
        try:
            return self._load(sample_id)
        except Exception as exc:  # noqa: BLE001 - recorded, never silent
            if self._on_failure is None:
                raise
            self._on_failure(sample_id, f"{type(exc).__name__}: {exc}")
            return None

    def report_failure(self, sample_id: str, reason: str) -> None:
        """A method found an image unusable after decoding (e.g. too small): record it, or raise."""
        if self._on_failure is None:
            raise ValueError(f"{sample_id}: {reason}")
        self._on_failure(sample_id, reason)

    def batches(self, size: int, shuffle_seed: int | None = None):
        import random

        order = list(self.ids)
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(order)
        batch: list[Sample] = []
        for sid in order:
            sample = self.load(sid)
            if sample is None:
                continue
            batch.append(sample)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


def stable_hash(obj: Any, length: int = 12) -> str:
    """A short hash of a JSON-able object, independent of key order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
