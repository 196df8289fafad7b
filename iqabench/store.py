"""One run's folder: what was asked, what was read, and one record per image, append-only.

    manifest.json          what was run (method, options, dataset, split + hash, versions, ...), written once;
                           every later attempt is a line of attempts.jsonl (command, seed, device, started)
    inputs.json            id, file and label of every image the run scores, and their hash: a resume that
                           would read other files or labels is refused, never mixed
    predictions.jsonl      one record per image, flushed and fsynced as produced
    predictions.rank{r}-of{n}.jsonl   the same, one file per rank in data-parallel runs
    runtime.rank{r}.jsonl  per-attempt method statistics
    predictions.csv        merged view; metrics.json: computed from the saved records only
A record is {"id", "score", "label", "error", ...method extras}; a failure is a record with
`error` set and `score` null, never a gap.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import filelock

from iqabench import io
from iqabench.errors import IqaError


# Files of a run folder written (atomically) by rank 0 only.
RANK0_FILES = ("manifest.json", "inputs.json", "predictions.csv", "metrics.json")
# What to do about a run folder whose own bookkeeping is unreadable.
RESTART_ADVICE = "restore it, or move this run folder away to score the run afresh"


class RecordProblems:
    """What reading the records found that is not a clean one-record-per-image log."""

    def __init__(self):
        self.conflicts: list[str] = []  # ids with two successful records that disagree
        self.outside: list[str] = []  # ids that are not among the run's images
        self.bad_lines: list[str] = []  # file:line of records that are not usable

    def as_dict(self) -> dict:
        return {"conflicting_records": self.conflicts, "records_outside_run": self.outside,
                "unreadable_records": self.bad_lines}

    def __bool__(self) -> bool:
        return bool(self.conflicts or self.outside or self.bad_lines)


class RunStore:
    def __init__(self, run_dir: Path, rank: int = 0, world_size: int = 1):
        self.dir = Path(run_dir)
        self.rank = rank
        self.world_size = world_size
        try:
            with io.machine_errors(self.dir):  # read-only or full disk: exit status 1, naming the folder
                self.dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise IqaError(f"{self.dir}: cannot create the run folder (a file is in the way)") from None
        name = "predictions.jsonl" if world_size == 1 else f"predictions.rank{rank}-of{world_size}.jsonl"
        self.own_file = self.dir / name
        self._log = io.JsonlLog(self.own_file)
        self._lock = filelock.FileLock(str(self.dir / f".lock.rank{rank}"), timeout=0)

    # -- locking: two processes never append to one file ----------------------------
    def __enter__(self) -> "RunStore":
        try:
            with io.machine_errors(self.dir):
                self._lock.acquire()
        except filelock.Timeout as exc:
            raise IqaError(f"{self.dir}: another iqabench process is writing this run (lock held); "
                           "wait for it or use another --results folder") from exc
        if self.rank == 0:  # only rank 0 writes these, under the lock it now holds: a temp file is a dead writer's
            for name in RANK0_FILES:
                for tmp in self.dir.glob(f".{name}.*.tmp"):
                    tmp.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        self._log.close()
        self._lock.release()

    # -- manifest and inputs ------------------------------------------------------------
    def check_or_write_manifest(self, manifest: dict, identity_keys: Iterable[str], attempt: dict) -> None:
        """Write the manifest of a new run, or check that this folder holds the same run; every
        attempt (first or resumed) is appended to attempts.jsonl."""
        path = self.dir / "manifest.json"
        if path.exists():
            old = io.read_json(path, "run manifest", advice=RESTART_ADVICE)
            diffs = [k for k in identity_keys if old.get(k) != manifest.get(k)]
            if diffs:
                raise IqaError(f"{path}: this run folder holds a run with different {', '.join(diffs)}; "
                               "use another --results folder")
        elif self.rank == 0:
            io.write_json_atomic(path, manifest)
        if self.rank == 0:
            io.append_jsonl(self.dir / "attempts.jsonl", attempt)

    def manifest(self) -> dict:
        return io.read_json(self.dir / "manifest.json", "run manifest", advice=RESTART_ADVICE)

    def check_or_write_inputs(self, inputs: list[dict], inputs_hash: str) -> None:
        """Refuse a resume whose images or labels differ from what the run started with."""
        path = self.dir / "inputs.json"
        if not path.exists():
            if self.rank == 0:
                io.write_json_atomic(path, {"hash": inputs_hash, "images": inputs})
            return
        old = io.read_json(path, "run inputs", advice=RESTART_ADVICE)
        if not isinstance(old, dict) or not isinstance(old.get("images"), list):
            raise IqaError(f"{path}: not a run inputs record (no list of images); {RESTART_ADVICE}")
        if old.get("hash") == inputs_hash:
            return
        before = {r["id"]: r for r in old.get("images", [])}
        now = {r["id"]: r for r in inputs}
        labels = [i for i in now if i in before and before[i]["label"] != now[i]["label"]]
        paths = [i for i in now if i in before and before[i]["path"] != now[i]["path"]]
        added, gone = sorted(set(now) - set(before)), sorted(set(before) - set(now))
        what = []
        if labels:
            what.append(f"{len(labels)} label(s) changed (first {labels[0]!r}: "
                        f"{before[labels[0]]['label']} -> {now[labels[0]]['label']})")
        if paths:
            what.append(f"{len(paths)} image file(s) changed (first {before[paths[0]]['path']!r} -> "
                        f"{now[paths[0]]['path']!r})")
        if added or gone:
            what.append(f"{len(added)} image(s) added, {len(gone)} removed")
        raise IqaError(f"{path}: the dataset changed since this run started: {'; '.join(what) or 'content differs'}; "
                       "its saved scores would be mixed with new ones. Restore the dataset, or start afresh "
                       "with another --results folder")

    def inputs(self) -> list[dict]:
        return io.read_json(self.dir / "inputs.json", "run inputs", advice=RESTART_ADVICE)["images"]

    # -- predictions ------------------------------------------------------------------
    def prediction_files(self) -> list[Path]:
        return sorted(self.dir.glob("predictions*.jsonl"))

    def read_records(self, run_ids: Iterable[str] | None = None,
                     problems: RecordProblems | None = None) -> dict[str, dict]:
        """Every saved record of every rank, one per image.

        A success is never retried, so it wins over a failure whatever the file order; a retried
        failure replaces the older failure. Two successes for one image that disagree (merged
        folders), records of images outside the run and unusable records are collected in
        `problems` (and left out) when it is given, else raise IqaError."""
        records: dict[str, dict] = {}
        wanted = set(run_ids) if run_ids is not None else None

        def trouble(kind: list, item: str, message: str) -> None:
            if problems is None:
                raise IqaError(message)
            kind.append(item)

        for path in self.prediction_files():
            log = io.JsonlLog(path)

            def bad(lineno: int, reason: str, path=path) -> None:
                trouble(problems.bad_lines if problems is not None else [], f"{path.name}:{lineno}",
                        f"{path}:{lineno}: corrupt prediction record: {reason}; delete that line "
                        "(its image is scored again) or restore the file")

            for lineno, rec in log.read_numbered(on_bad=bad):
                reason = _record_problem(rec)
                if reason:
                    bad(lineno, reason)
                    continue
                sid = rec["id"]
                if wanted is not None and sid not in wanted:
                    trouble(problems.outside if problems is not None else [], sid,
                            f"{path}: a record of image {sid!r}, which is not among this run's images "
                            "(copied from another run?); delete its line or score afresh in another --results folder")
                    continue
                old = records.get(sid)
                if old is not None and old.get("error") is None:
                    if rec.get("error") is None and old["score"] != rec["score"]:
                        trouble(problems.conflicts if problems is not None else [], sid,
                                f"{path}: two records of image {sid!r} with different scores "
                                f"({old['score']} and {rec['score']}; merged run folders?); keep one of "
                                "them or score afresh in another --results folder")
                    continue
                records[sid] = rec
        return records

    def append(self, record: dict) -> None:
        self._log.append(record)

    # -- failure flags: how a failing rank tells the others to stop ---------------------
    def flag_failure(self, message: str) -> None:
        io.write_json_atomic(self.dir / f".failed.rank{self.rank}", {"rank": self.rank, "error": message})

    def failed_ranks(self) -> dict[int, str]:
        """rank -> one-line error of every rank that flagged a failure in this attempt."""
        out = {}
        for path in self.dir.glob(".failed.rank*"):
            try:
                flag = io.read_json(path)
                out[int(flag["rank"])] = str(flag["error"])
            except (IqaError, ValueError, KeyError, TypeError):
                continue  # removed or being replaced right now
        return out

    def clear_failure_flags(self) -> None:
        for path in self.dir.glob(".failed.rank*"):
            path.unlink(missing_ok=True)

    # -- per-attempt method statistics -------------------------------------------------------
    def append_runtime(self, stats: dict) -> None:
        io.append_jsonl(self.dir / f"runtime.rank{self.rank}.jsonl", stats)

    def read_runtime(self) -> list[dict]:
        out = []
        for path in sorted(self.dir.glob("runtime.rank*.jsonl")):
            # a corrupt line loses that attempt's statistics, never its scores
            out.extend(io.JsonlLog(path).read(on_bad=lambda lineno, reason: None))
        return sorted(out, key=lambda r: str(r.get("finished")))

    def read_attempts(self) -> list[dict]:
        return io.JsonlLog(self.dir / "attempts.jsonl").read(on_bad=lambda lineno, reason: None)

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
        with io.atomic_path(out) as tmp:
            frame.to_csv(tmp, index=False)
        return out

    def write_metrics(self, metrics: dict) -> Path:
        path = self.dir / "metrics.json"
        io.write_json_atomic(path, metrics)
        return path


def _record_problem(rec: dict) -> str | None:
    """Why a saved record cannot be used, or None."""
    sid = rec.get("id")
    if not isinstance(sid, str) or not sid:
        return "no image id"
    if rec.get("error") is None:
        score = rec.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            return f"score {score!r} is not a number"
        if score != score or score in (float("inf"), float("-inf")):
            return f"score {score!r} is not finite"
    return None
