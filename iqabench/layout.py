"""The results layout: the only code that builds paths under a results folder.

    <results>/
      runs/<dataset>/<split>-<part>/<method>-<key>/   one scoring run (its files: see runs.py)
      accuracy/<question set>/<method>-<answer>-<key>/   one multiple-choice run (iqabench/tasks/ask.py)
      checkpoints/<dataset>/<split>/<method>-<key>/   one training (see train.py)
      splits/<dataset>/<split>.json                   every split used, with its membership hash
      cache/                                          method caches keyed by the methods
      report/                                         what `iqabench report` writes
      suites/<suite>.json                             what `iqabench suite run` ran with (options, dataset map)

`run_dirs` is the only finder of run folders: every reader (report, suite tables) sees the same runs,
including folders a user moved or copied elsewhere under the results folder.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_RESULTS = Path("results")
DEFAULT_DATA_ROOT = Path("data")
# Top-level rooms of a results folder that hold no scoring run folders (not walked when looking for runs).
NOT_RUNS = ("checkpoints", "cache", "splits", "report", "suites", "accuracy")


def slug(text: str) -> str:
    """A name safe as one path component (method names hold ':' and '/')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace(":", "-")).strip("_.") or "x"


class ResultsLayout:
    def __init__(self, root: Path):
        self.root = Path(root)

    def run_dir(self, dataset: str, split: str, part: str, method: str, key: str) -> Path:
        return self.root / "runs" / slug(dataset) / f"{slug(split)}-{slug(part)}" / f"{slug(method)}-{key}"

    def run_dirs(self) -> list[Path]:
        """Every run folder (one holding manifest.json) anywhere under the results folder, sorted;
        the rooms that hold no runs (checkpoints, cache, splits, report, suites) are not walked."""
        found = []
        for top, dirs, files in os.walk(self.root):
            if Path(top) == self.root:
                dirs[:] = [d for d in dirs if d not in NOT_RUNS]
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            if "manifest.json" in files:
                found.append(Path(top))
                dirs[:] = []  # a run folder holds no other run folder
        return sorted(found)

    def accuracy_dir(self, question_set: str, method: str, answer: str, key: str) -> Path:
        return self.root / "accuracy" / slug(question_set) / f"{slug(method)}-{answer}-{key}"

    def accuracy_dirs(self) -> list[Path]:
        """Every multiple-choice run folder (one holding manifest.json under accuracy/), sorted."""
        room = self.root / "accuracy"
        return sorted(p.parent for p in room.glob("*/*/manifest.json")) if room.is_dir() else []

    @staticmethod
    def sibling_run_dir(run_dir: Path, method: str, key: str) -> Path:
        """Another run of the same column beside `run_dir` (a re-scored run), wherever that folder is."""
        return Path(run_dir).parent / f"{slug(method)}-{key}"

    def checkpoint_dir(self, dataset: str, split: str, method: str, key: str) -> Path:
        return self.root / "checkpoints" / slug(dataset) / slug(split) / f"{slug(method)}-{key}"

    def splits_dir(self) -> Path:
        """Where every split used is recorded (`<dataset>/<split>.json` below it)."""
        return self.root / "splits"

    def cache_dir(self) -> Path:
        return self.root / "cache"

    def report_dir(self) -> Path:
        return self.root / "report"

    def suite_settings(self, suite: str) -> Path:
        """What `suite run` ran the suite with, so `report --suite` finds its runs with no flags."""
        return self.root / "suites" / f"{slug(suite)}.json"
