"""Decoding ahead of the model: a small thread pool opens the next batches while the method
scores the current one.

Batches come out in the order of the ids; inside a batch each entry is the decoded sample or
the exception that decoding raised, so every undecodable image still becomes a record with its
reason. At most `ahead` batches are decoded or being decoded at once (bounded memory). Threads,
not processes: image decoding (Pillow, numpy) releases the GIL, and the loader needs no pickling.
Nothing here writes a record: a kill loses only decoded images, which a resume decodes again.
"""
from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["decoded_batches", "batches_ahead"]


def batches_ahead(workers: int) -> int:
    """How many batches may be decoded ahead of the one being scored: enough to keep every worker busy."""
    return max(1, workers) + 1


def decoded_batches(ids: Sequence[str], batch_size: int, load: Callable[[str], Any],
                    workers: int = 0, ahead: int | None = None) -> Iterator[tuple[list[str], list[Any]]]:
    """Yield (batch_ids, entries) in order; an entry is load(id) or the Exception it raised.

    workers=0 decodes each batch in the caller's thread when it is asked for (no look-ahead)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    starts = range(0, len(ids), batch_size)
    if workers <= 0:
        for start in starts:
            batch = list(ids[start:start + batch_size])
            yield batch, [_load_one(load, sid) for sid in batch]
        return
    limit = ahead if ahead is not None else batches_ahead(workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="iqabench-decode")
    pending: collections.deque[tuple[list[str], list[Future]]] = collections.deque()
    todo = iter(starts)
    try:
        while True:
            while len(pending) < limit:  # keep the window full, never more than `limit` batches
                start = next(todo, None)
                if start is None:
                    break
                batch = list(ids[start:start + batch_size])
                pending.append((batch, [pool.submit(_load_one, load, sid) for sid in batch]))
            if not pending:
                return
            batch, futures = pending.popleft()
            yield batch, [f.result() for f in futures]
    finally:  # the consumer stopped (done, error, peer failure): drop what was not started
        pool.shutdown(wait=True, cancel_futures=True)


def _load_one(load: Callable[[str], Any], sample_id: str) -> Any:
    try:
        return load(sample_id)
    except Exception as exc:  # noqa: BLE001 - handed back: the runner records it as that image's failure
        return exc
