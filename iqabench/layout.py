"""The results layout: the only code that builds paths under a results folder.

    <results>/
      runs/<dataset>/<split>-<part>/<method>-<key>/   one scoring run (see store.py)
      checkpoints/<dataset>/<split>/<method>-<key>/   one training (see train.py)
      splits/<dataset>/<split>.json                   every split used, with its membership hash
      cache/                                          method caches keyed by the methods
      report/                                         what `iqabench report` writes
"""
from __future__ import annotations

import re
from pathlib import Path

DEFAULT_RESULTS = Path("results")
DEFAULT_DATA_ROOT = Path("data")


def slug(text: str) -> str:
    """A name safe as one path component (method names hold ':' and '/')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace(":", "-")).strip("_.") or "x"


class ResultsLayout:
    def __init__(self, root: Path):
        self.root = Path(root)

    def run_dir(self, dataset: str, split: str, part: str, method: str, key: str) -> Path:
        return self.root / "runs" / slug(dataset) / f"{slug(split)}-{slug(part)}" / f"{slug(method)}-{key}"

    def run_dirs(self) -> list[Path]:
        """Every run folder (one holding a manifest), sorted."""
        return sorted(p.parent for p in (self.root / "runs").glob("*/*/*/manifest.json"))

    def checkpoint_dir(self, dataset: str, split: str, method: str, key: str) -> Path:
        return self.root / "checkpoints" / slug(dataset) / slug(split) / f"{slug(method)}-{key}"

    def splits_dir(self) -> Path:
        """Where every split used is recorded (`<dataset>/<split>.json` below it)."""
        return self.root / "splits"

    def cache_dir(self) -> Path:
        return self.root / "cache"

    def report_dir(self) -> Path:
        return self.root / "report"
