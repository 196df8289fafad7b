"""The results layout: one folder per run, append-only predictions, atomic metadata.

    <results>/<dataset>/<split>-<part>/<method-slug>-<key>/
        manifest.json          what was run (method, options, dataset, split+hash, versions, ...)
        predictions.jsonl      one record per image, flushed and fsynced as produced
        predictions.rank{r}-of{n}.jsonl   the same, one file per rank in data-parallel runs
        predictions.csv        merged view, written when the run completes
        metrics.json           computed from the saved predictions only
A record is {"id", "score", "label", "error", ...method extras}; a failure is a record with
`error` set and `score` null, never a gap.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

import filelock

from iqabench.errors import IqaError


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def drop_torn_tail(path: Path) -> None:
    """Cut a partial last line (a kill in the middle of a write) from an append-only log."""
    data = Path(path).read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def write_json_atomic(path: Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=False, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


class RunStore:
    def __init__(self, run_dir: Path, rank: int = 0, world_size: int = 1):
        self.dir = Path(run_dir)
        self.rank = rank
        self.world_size = world_size
        self.dir.mkdir(parents=True, exist_ok=True)
        name = "predictions.jsonl" if world_size == 1 else f"predictions.rank{rank}-of{world_size}.jsonl"
        self.own_file = self.dir / name
        self._lock = filelock.FileLock(str(self.dir / f".lock.rank{rank}"), timeout=0)
        self._fh = None

    # -- locking: two processes never append to one file ----------------------------
    def __enter__(self) -> "RunStore":
        try:
            self._lock.acquire()
        except filelock.Timeout as exc:
            raise IqaError(f"{self.dir}: another iqabench process is writing this run (lock held); "
                           "wait for it or use another --results folder") from exc
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._lock.release()

    # -- manifest -------------------------------------------------------------------
    def check_or_write_manifest(self, manifest: dict, identity_keys: Iterable[str]) -> None:
        path = self.dir / "manifest.json"
        if path.exists():
            old = json.loads(path.read_text())
            diffs = [k for k in identity_keys if old.get(k) != manifest.get(k)]
            if diffs:
                raise IqaError(f"{path}: this run folder holds a run with different {', '.join(diffs)}; "
                               "use another --results folder")
            if self.rank == 0:
                old.setdefault("resumed", []).append({k: manifest.get(k) for k in ("started", "world_size", "git_commit")})
                write_json_atomic(path, old)
        elif self.rank == 0:
            write_json_atomic(path, manifest)

    # -- predictions ------------------------------------------------------------------
    def prediction_files(self) -> list[Path]:
        return sorted(self.dir.glob("predictions*.jsonl"))

    def read_records(self) -> dict[str, dict]:
        """Every saved record of every rank. A torn last line (a kill mid-write) is ignored."""
        records: dict[str, dict] = {}
        for path in self.prediction_files():
            with open(path, "rb") as fh:
                data = fh.read()
            lines = data.split(b"\n")
            for lineno, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                if lineno == len(lines):
                    # a final line without its newline is torn (a kill mid-write), even when it parses:
                    # the next append drops it, so counting it as saved would lose the image
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise IqaError(f"{path}:{lineno}: corrupt prediction record ({exc})") from exc
                old = records.get(rec["id"])
                if old is not None and old.get("error") is None and rec.get("error") is not None:
                    continue  # a success is never retried, so it wins whatever the file order
                records[rec["id"]] = rec  # a retried failure replaces the older record
        return records

    # -- failure flags: how a failing rank tells the others to stop ---------------------
    def flag_failure(self, message: str) -> None:
        write_json_atomic(self.dir / f".failed.rank{self.rank}", {"rank": self.rank, "error": message})

    def failed_ranks(self) -> dict[int, str]:
        """rank -> one-line error of every rank that flagged a failure in this attempt."""
        out = {}
        for path in self.dir.glob(".failed.rank*"):
            try:
                flag = json.loads(path.read_text())
                out[int(flag["rank"])] = str(flag["error"])
            except (OSError, ValueError, KeyError):
                continue  # removed or being replaced right now
        return out

    def clear_failure_flags(self) -> None:
        for path in self.dir.glob(".failed.rank*"):
            path.unlink(missing_ok=True)

    def _open(self):
        if self._fh is None:
            if self.own_file.exists():
                drop_torn_tail(self.own_file)
            self._fh = open(self.own_file, "a", encoding="utf-8")
        return self._fh

    def append(self, record: dict) -> None:
        fh = self._open()
        fh.write(json.dumps(record, default=_json_default) + "\n")
        fh.flush()
        os.fsync(fh.fileno())

    # -- per-attempt method statistics -------------------------------------------------------
    def append_runtime(self, stats: dict) -> None:
        path = self.dir / f"runtime.rank{self.rank}.jsonl"
        if path.exists():
            drop_torn_tail(path)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(stats, default=_json_default) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_runtime(self) -> list[dict]:
        out = []
        for path in sorted(self.dir.glob("runtime.rank*.jsonl")):
            for line in path.read_text().splitlines():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a torn last line from a kill: that attempt's stats are lost, not its scores
        return sorted(out, key=lambda r: str(r.get("finished")))

    # -- outputs ------------------------------------------------------------------------
    def write_merged_csv(self, ids_in_order: list[str], records: dict[str, dict]) -> Path:
        import pandas as pd

        rows = [records[i] for i in ids_in_order if i in records]
        frame = pd.DataFrame(rows)
        for col in ("id", "score", "label", "error"):
            if col not in frame.columns:
                frame[col] = None
        frame = frame[["id", "score", "label", "error"] + [c for c in frame.columns if c not in ("id", "score", "label", "error")]]
        out = self.dir / "predictions.csv"
        tmp = self.dir / ".predictions.csv.tmp"
        frame.to_csv(tmp, index=False)
        tmp.replace(out)
        return out

    def write_metrics(self, metrics: dict) -> Path:
        path = self.dir / "metrics.json"
        write_json_atomic(path, metrics)
        return path


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:
        pass
    return str(obj)
