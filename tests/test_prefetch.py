"""Decoding ahead of the model (iqabench/prefetch.py) and the runner's --workers."""
from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

from iqabench.prefetch import batches_ahead, decoded_batches
from iqabench.run import RunConfig, run


def _ids(n: int) -> list[str]:
    return [f"img{i:03d}" for i in range(n)]


@pytest.mark.parametrize("workers", [0, 1, 2, 4])
def test_order_and_batches_are_kept(workers):
    ids = _ids(23)

    def load(sid):  # later images finish first: the output order must not follow completion
        time.sleep(0.002 * (23 - int(sid[3:])) / 23)
        return sid.upper()

    got = list(decoded_batches(ids, 4, load, workers=workers))
    assert [b for b, _ in got] == [ids[i:i + 4] for i in range(0, 23, 4)]
    assert [e for _, entries in got for e in entries] == [s.upper() for s in ids]


@pytest.mark.parametrize("workers", [0, 2])
def test_each_failure_is_an_entry_in_its_place(workers):
    ids = _ids(10)

    def load(sid):
        if sid in ("img003", "img007"):
            raise OSError(f"{sid}: truncated file")
        return sid

    entries = [e for _, batch in decoded_batches(ids, 3, load, workers=workers) for e in batch]
    assert len(entries) == 10
    for sid, entry in zip(ids, entries):
        if sid in ("img003", "img007"):
            assert isinstance(entry, OSError) and str(entry) == f"{sid}: truncated file"
        else:
            assert entry == sid


def test_decoding_runs_at_most_a_bounded_window_ahead():
    ids = _ids(40)
    started: list[str] = []
    lock = threading.Lock()

    def load(sid):
        with lock:
            started.append(sid)
        return sid

    batches = decoded_batches(ids, 2, load, workers=2)
    consumed = 0
    for _batch, _entries in batches:
        consumed += 1
        time.sleep(0.02)  # a slow model: the pool would run far ahead if unbounded
        with lock:
            ahead = len(started) - consumed * 2
        # the batch being scored aside, at most batches_ahead(2) - 1 further batches are decoded
        assert ahead <= (batches_ahead(2) - 1) * 2, (consumed, len(started))
    assert consumed == 20


def test_stopping_early_cancels_the_rest():
    calls: list[str] = []
    gen = decoded_batches(_ids(100), 1, lambda s: calls.append(s) or s, workers=2)
    next(gen)
    gen.close()
    assert len(calls) <= 1 + batches_ahead(2)


def test_run_with_workers_equals_serial_run(tiny_root, tmp_path):
    """Same records, same order per rank file, same metrics; a decode failure is still a record."""
    root = tmp_path / "data"  # a copy: the session's tiny set stays intact for other tests
    shutil.copytree(tiny_root, root)
    bad = sorted((root / "tiny").rglob("*.png"))[5]
    bad.write_bytes(b"not a png")
    outs = {}
    for workers in (0, 2):
        cfg = RunConfig(method="slow-sharpness", dataset="tiny", split="all", data_root=root,
                        results=tmp_path / f"w{workers}", batch_size=3, progress=False, n_boot=50, workers=workers)
        result = run(cfg, on_log=lambda m: None)
        lines = [json.loads(x) for p in sorted(result.run_dir.glob("predictions*.jsonl"))
                 for x in p.read_text().splitlines()]
        outs[workers] = ([(r["id"], r["score"], r["error"]) for r in lines], result.metrics["srcc"])
    assert outs[0] == outs[2]
    errors = [e for _, _, e in outs[2][0] if e]
    assert len(errors) == 1 and errors[0].startswith("decode: ") and bad.name in errors[0]


def test_negative_workers_is_refused(tiny_root, tmp_path):
    from iqabench.errors import IqaError

    with pytest.raises(IqaError, match="--workers must be 0 or more"):
        RunConfig(method="slow-sharpness", dataset="tiny", data_root=tiny_root, results=tmp_path, workers=-1)
