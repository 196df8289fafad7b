"""Group commit: the run store fsyncs records per batch (at most every COMMIT_SECONDS), not per image,
and a SIGKILL between a batch's scores and its commit still loses nothing and scores nothing twice."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from iqabench import io, store
from iqabench.run import RunConfig, run

PLUGINS = Path(__file__).parent / "plugins"
N = 36  # images of the tiny dataset


def _cfg(root: Path, results: Path, log: Path, batch_size: int = 4) -> RunConfig:
    return RunConfig(method="slow-sharpness", dataset="tiny", split="all", data_root=root, results=results,
                     options={"log": str(log)}, batch_size=batch_size, progress=False, n_boot=50)


def _count_prediction_fsyncs(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = os.fsync

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.endswith("predictions.jsonl"):
            calls.append(path)
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_one_fsync_per_batch_when_every_batch_commits(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setattr(store, "COMMIT_SECONDS", 0.0)
    calls = _count_prediction_fsyncs(monkeypatch)
    result = run(_cfg(tiny_root, tmp_path / "r", tmp_path / "log"), on_log=lambda m: None)
    assert result.scored_now == N
    assert len(calls) == N // 4  # one per batch of 4, none per image


def test_a_fast_run_syncs_once_within_the_time_window(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setattr(store, "COMMIT_SECONDS", 3600.0)
    calls = _count_prediction_fsyncs(monkeypatch)
    result = run(_cfg(tiny_root, tmp_path / "r", tmp_path / "log", batch_size=1), on_log=lambda m: None)
    assert result.scored_now == N and len(calls) == 1  # the forced commit at the end of the loop
    assert len(io.JsonlLog(result.run_dir / "predictions.jsonl").read()) == N


def test_a_failed_group_fsync_keeps_only_what_was_synced(tmp_path, monkeypatch):
    log = io.JsonlLog(tmp_path / "p.jsonl")
    log.append({"id": "a"}, sync=False)
    log.sync()
    log.append({"id": "b"}, sync=False)
    log.append({"id": "c"}, sync=False)

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    try:
        log.sync()
    except Exception as exc:  # noqa: BLE001 - the machine's error, named
        assert "disk full" in str(exc)
    else:
        raise AssertionError("a failed fsync must raise")
    monkeypatch.undo()
    assert [r["id"] for r in io.JsonlLog(tmp_path / "p.jsonl").read()] == ["a"]


# The child patches RunStore.commit: at its K-th call (a batch scored and written, not yet fsynced) it
# says so in a marker file and waits there to be killed.
CHILD = """
import sys, time
from pathlib import Path
from iqabench import store
real = store.RunStore.commit
calls = [0]
def commit(self, force=False):
    calls[0] += 1
    if calls[0] == {k}:
        tmp = Path({marker!r} + ".tmp")  # written whole, then renamed: the marker exists only complete
        tmp.write_text(str(sum(1 for _ in open(self.own_file))))
        tmp.rename({marker!r})
        time.sleep(60)
    return real(self, force)
store.RunStore.commit = commit
from iqabench.cli.main import main
sys.argv = ["iqabench"] + {args!r}
sys.exit(main())
"""


def test_kill_between_a_batchs_scores_and_its_commit(tiny_root, tmp_path):
    log = tmp_path / "scored.log"
    reference = run(_cfg(tiny_root, tmp_path / "reference", log), on_log=lambda m: None)
    ref_records = {r["id"]: r for r in io.JsonlLog(reference.run_dir / "predictions.jsonl").read()}
    for k in (1, 4, 9):  # the first batch, one in the middle, the last (the forced commit follows it)
        results, marker = tmp_path / f"k{k}", tmp_path / f"marker{k}"
        args = ["--plugin", str(PLUGINS / "tiny_dataset_plugin.py"), "--plugin", str(PLUGINS / "slow_method.py"),
                "run", "--method", "slow-sharpness", "--dataset", "tiny", "--split", "all", "--data-root",
                str(tiny_root), "--results", str(results), "--batch-size", "4", "--no-progress", "-o", f"log={log}"]
        code = CHILD.format(k=k, marker=str(marker), args=args)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "timed out"
        proc.kill()
        proc.wait()
        proc.stderr.close()
        (pred,) = list(results.glob("runs/*/*/*/predictions.jsonl"))
        at_kill = pred.read_bytes().split(b"\n")[:-1]
        assert len(at_kill) == int(marker.read_text()) == 4 * k  # the whole batch was written before its commit
        saved = [json.loads(line)["id"] for line in at_kill]
        scored_before = len(log.read_text().splitlines())

        resumed = run(_cfg(tiny_root, results, log), on_log=lambda m: None)
        rescored = log.read_text().splitlines()[scored_before:]
        assert not set(rescored) & set(saved), "saved images were scored again"
        assert resumed.scored_now == N - len(saved)
        final = pred.read_bytes().split(b"\n")[:-1]
        assert final[: len(at_kill)] == at_kill  # nothing saved is lost or rewritten
        records = io.JsonlLog(pred).read()
        assert len(records) == len({r["id"] for r in records}) == N
        assert {r["id"]: r["score"] for r in records} == {i: r["score"] for i, r in ref_records.items()}


def test_an_interrupt_during_the_fsync_keeps_the_whole_records(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM landing inside the fsync is no disk failure: the whole lines stay and close() syncs
    them (a reader that saw them saved must not find them gone); a failing fsync still cuts them."""
    import os

    from iqabench import io as iqa_io

    real = os.fsync
    calls = []

    def interrupted_once(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(fd)

    log = iqa_io.JsonlLog(tmp_path / "p.jsonl")
    monkeypatch.setattr(iqa_io.os, "fsync", interrupted_once)
    try:
        log.append_many([{"id": "a"}, {"id": "b"}])
    except KeyboardInterrupt:
        pass
    log.close()
    assert [r["id"] for r in iqa_io.JsonlLog(tmp_path / "p.jsonl").read()] == ["a", "b"] and len(calls) == 2

    def failing(fd):
        raise OSError(5, "Input/output error")

    log = iqa_io.JsonlLog(tmp_path / "q.jsonl")
    monkeypatch.setattr(iqa_io.os, "fsync", failing)
    try:
        log.append_many([{"id": "c"}])
    except Exception:  # noqa: BLE001 - the engine's own error for a failing disk
        pass
    monkeypatch.setattr(iqa_io.os, "fsync", real)
    assert iqa_io.JsonlLog(tmp_path / "q.jsonl").read() == []
