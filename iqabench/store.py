"""One run's folder: what was asked, what was read, and one record per image, append-only.

    manifest.json          what was run (method, options, dataset, split + hash, versions, ...), written once;
                           every later attempt is a line of attempts.jsonl (command, seed, device, started)
    inputs.json            id, file and label of every image the run scores, and their hash: a resume that
                           would read other files or labels is refused, never mixed
    predictions.jsonl      one record per image, written as produced, fsynced per group (see `RunStore.commit`)
    predictions.rank{r}-of{n}.jsonl   the same, one file per rank in data-parallel runs
    runtime.rank{r}.jsonl  per-attempt method statistics
    predictions.csv        merged view; metrics.json: computed from the saved records only
A record is {"id", "score", "label", "error", ...method extras}; a failure is a record with
`error` set and `score` null, never a gap. The schema of these files, and every read of them,
is `iqabench.runs`; this module is the writer (and reads through runs.py where it reads).
"""
from __future__ import annotations

import time
from io import StringIO
from pathlib import Path
from typing import Iterable

import filelock

from iqabench import io, runs
from iqabench.errors import Busy, IqaError
from iqabench.runs import RESTART_ADVICE, RecordProblems

# Group commit: records are written (to the OS) as produced, so a killed process loses none of them; they are
# fsynced at the end of a batch once this long has passed since the last fsync, and when the store closes.
# A power loss can take only that unsynced tail, which the resume scores again (it was never reported saved).
COMMIT_SECONDS = 0.5

# Files of a run folder written (atomically) by rank 0 only.
RANK0_FILES = ("manifest.json", "inputs.json", "predictions.csv", "metrics.json")


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
        self._last_commit = time.monotonic()

    # -- locking: two processes never append to one file ----------------------------
    def __enter__(self) -> "RunStore":
        try:
            with io.machine_errors(self.dir):
                self._lock.acquire()
        except filelock.Timeout as exc:
            raise Busy(f"{self.dir}: another iqabench process is writing this run (lock held); "
                           "wait for it or use another --results folder") from exc
        if self.rank == 0:  # only rank 0 writes these, under the lock it now holds: a temp file is a dead writer's
            for name in RANK0_FILES:
                for tmp in self.dir.glob(f".{name}.*.tmp"):
                    tmp.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        self._log.close()  # fsyncs the unsynced tail
        self._lock.release()

    # -- manifest and inputs ------------------------------------------------------------
    def check_or_write_manifest(self, manifest: dict, identity_keys: Iterable[str], attempt: dict) -> None:
        """Write the manifest of a new run, or check that this folder holds the same run; every
        attempt (first or resumed) is appended to attempts.jsonl."""
        path = self.dir / "manifest.json"
        if path.exists():
            old = runs.read_manifest(self.dir)
            diffs = [k for k in identity_keys if old.get(k) != manifest.get(k)]
            if diffs:
                raise IqaError(f"{path}: this run folder holds a run with different {', '.join(diffs)}; "
                               "use another --results folder")
        elif self.rank == 0:
            stamped = runs.with_schema({k: v for k, v in manifest.items() if k != "seal"})  # a copied one is stale
            io.write_json_atomic(path, {**stamped, "seal": runs.manifest_seal(stamped)})
        if self.rank == 0:
            io.append_jsonl(self.dir / "attempts.jsonl", attempt)

    def manifest(self) -> dict:
        """manifest.json, with runs.DEFAULTS filled in."""
        return runs.read_manifest(self.dir)

    def check_or_write_inputs(self, inputs: list[dict], inputs_hash: str) -> None:
        """Refuse a resume whose images or labels differ from what the run started with."""
        path = self.dir / "inputs.json"
        if not path.exists():
            if self.rank == 0:
                io.write_json_atomic(path, runs.with_schema({"hash": inputs_hash, "images": inputs}))
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
        """inputs.json's images, checked against their hash and the manifest's."""
        return runs.read_inputs(self.dir, self.manifest())

    # -- predictions ------------------------------------------------------------------
    def prediction_files(self) -> list[Path]:
        return runs.prediction_files(self.dir)

    def read_records(self, run_ids: Iterable[str] | None = None,
                     problems: RecordProblems | None = None) -> dict[str, dict]:
        """Every saved record of every rank, one per image (see runs.read_records)."""
        return runs.read_records(self.dir, run_ids, problems)

    def append(self, record: dict) -> None:
        """Write one record; it is durable after the next `commit` that syncs (or when the store closes)."""
        self._log.append(record, sync=False)

    def commit(self, force: bool = False) -> bool:
        """End of a batch: fsync the records written since the last fsync, if `force` or at least
        COMMIT_SECONDS have passed (one fsync per group, not per image). True when it synced."""
        now = time.monotonic()
        if not force and now - self._last_commit < COMMIT_SECONDS:
            return False
        self._log.sync()
        self._last_commit = now
        return True

    def append_many(self, records: list[dict]) -> None:
        """Several records at once, one fsync (records that exist already, e.g. imported ones)."""
        self._log.append_many(records)

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
        return runs.read_runtime(self.dir)

    def read_attempts(self) -> list[dict]:
        return runs.read_attempts(self.dir)

    # -- outputs ------------------------------------------------------------------------
    def write_merged_csv(self, ids_in_order: list[str], records: dict[str, dict]) -> Path:
        from iqabench.table_csv import write_records_csv

        rows = [records[i] for i in ids_in_order if i in records]
        out = self.dir / "predictions.csv"
        # a lone "\r" in a field (a file name) is quoted only when it is part of the line ending:
        # such a file ends its lines with CRLF, every other file stays as it always was
        has_cr = any(isinstance(v, str) and "\r" in v for row in rows for v in row.values())
        text = StringIO()
        write_records_csv(text, rows, ("id", "score", "label", "error"), "\r\n" if has_cr else "\n")
        io.write_bytes_atomic(out, text.getvalue().encode("utf-8"))
        return out

    def write_metrics(self, metrics: dict) -> Path:
        path = self.dir / "metrics.json"
        io.write_json_atomic(path, runs.with_schema(metrics))
        return path
