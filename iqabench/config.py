"""What the user asked `run` and `train` for: names and raw option values, checked for
values that would silently do the wrong thing. `plan.py` turns them into frozen plans."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from iqabench.errors import IqaError


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What the user asked `run` for (names and raw option values): a dataset split, or a folder
    of the user's own images (`images`, scored without labels: no split, no correlations)."""

    method: str
    dataset: str | None = None
    split: str | None = None
    part: str = "test"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    data_root: Path = Path("data")
    results: Path = Path("results")
    limit: int | None = None
    batch_size: int = 1
    device: str = "auto"
    seed: int = 42
    checkpoint: Path | None = None  # a trained checkpoint folder to use instead of the one `train` made
    train_dataset: str | None = None  # cross-dataset: the checkpoint was trained on this dataset ...
    train_split: str | None = None  # ... and split (default: that dataset's own default split)
    retry_failed: bool = False
    progress: bool = True
    n_boot: int = 1000
    workers: int = 0  # threads decoding the next batches while one is scored (0: decode in turn)
    accept_out_of_range: bool = False
    images: Path | None = None  # score every image below this folder (or this one file) instead of a dataset
    ref: Path | None = None  # with images: their references (a folder, paired by file name, or one file)
    # data-parallel runs: minutes a rank waits for the others (None: $IQABENCH_DIST_TIMEOUT_MINUTES, else a day)
    dist_timeout_minutes: float | None = None

    def __post_init__(self):
        _check_counts(self)
        if self.n_boot < 0:
            raise IqaError(f"n_boot must be >= 0, got {self.n_boot}")
        if self.workers < 0:
            raise IqaError(f"--workers must be 0 or more, got {self.workers}")
        if self.dist_timeout_minutes is not None and not self.dist_timeout_minutes > 0:
            raise IqaError(f"dist_timeout_minutes must be above 0, got {self.dist_timeout_minutes}")
        if self.images is None and not self.dataset:
            raise IqaError("nothing to score: give --dataset NAME, or --images DIR to score your own images")
        if self.images is not None and self.dataset:
            raise IqaError("--dataset and --images both given: score a dataset or a folder of images, not both")
        if self.ref is not None and self.images is None:
            raise IqaError("-r/--ref names the references of --images; a dataset's card gives its own")
        if self.images is not None and self.split is not None:
            raise IqaError("--split applies to datasets; a folder of images (--images) has no split")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What the user asked `train` for."""

    method: str
    dataset: str
    split: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    data_root: Path = Path("data")
    results: Path = Path("results")
    batch_size: int | None = None  # the training batch; None: the method's recipe
    device: str = "auto"
    seed: int = 42
    limit: int | None = None  # cap on train and val sizes, for quick trials (part of the checkpoint's identity)
    accept_out_of_range: bool = False
    progress: bool = True

    def __post_init__(self):
        _check_counts(self)


def _check_counts(cfg) -> None:
    """Values that would silently do the wrong thing (`--limit -1` scores all but one image)."""
    if cfg.limit is not None and cfg.limit < 1:
        raise IqaError(f"--limit must be at least 1, got {cfg.limit}")
    if cfg.batch_size is not None and cfg.batch_size < 1:
        raise IqaError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    if cfg.seed < 0:
        raise IqaError(f"--seed must be 0 or more, got {cfg.seed}")
    if Path(cfg.results).exists() and not Path(cfg.results).is_dir():
        raise IqaError(f"--results {cfg.results}: is a file, not a folder")
