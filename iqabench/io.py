"""Crash-safe files: atomic writes and the append-only JSONL log. Public: plugins use them too.

Atomic write: the content goes to a temp file in the same folder, is fsynced, then renamed over
the target, so a reader sees the old file or the new one, never a half-written one. A failed
write (disk full, read-only folder) removes its temp file and raises.

JSONL log: one JSON object per line, written unbuffered (so a killed process loses nothing it appended) and
fsynced as appended, or, with `append(..., sync=False)`, at the next `sync()` (group commit: what a power
loss can take is only the unsynced tail, which a resume scores again). The one rule for a kill in
the middle of a write: a final line without its newline is torn. Readers ignore it (even when it
happens to parse) and the next append cuts it off first, so a record counts only once whole.
A line in the middle that does not parse is corruption, reported with the file and line number.
An append that fails (disk full) cuts its partial line off again before it raises.

A write the machine refuses (disk full, read-only folder, no permission) raises EnvironmentProblem
naming the file, which the CLI shows as one line with exit status 1.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from iqabench.errors import IqaError, environment_problem


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: os.umask is process-wide and briefly changes it


def _json_default(obj: Any) -> Any:
    """numpy scalars and arrays as plain JSON; anything else as its text."""
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "ndim", 1) == 0:
        return item()
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    return str(obj)


def dumps(obj: Any, **kwargs) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=False, **kwargs)


@contextlib.contextmanager
def machine_errors(path: Path) -> Iterator[None]:
    """Turn an OSError the machine caused (disk full, read-only, permission) into one
    EnvironmentProblem line naming `path`; other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        problem = environment_problem(exc, path)
        if problem is None or problem is exc:
            raise
        raise problem from exc


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path`, on any error it is removed.

    For writers that need a file name (matplotlib, pandas, PIL)."""
    path = Path(path)
    with machine_errors(path):
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # unique per writer
        os.close(fd)
        tmp = Path(name)
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared like any other file
            yield tmp
            if tmp.exists():
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    # NaN/inf are not JSON: a non-finite number reaching a results file is a bug upstream
    write_text_atomic(path, dumps(obj, indent=1) + "\n")


def read_json(path: Path, what: str = "file", advice: str | None = None) -> Any:
    """A JSON file, or a one-line IqaError naming it when it is missing or not valid JSON
    (ending with `advice`, what the user can do about it, when given)."""
    path = Path(path)
    try:
        with machine_errors(path):
            text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IqaError(f"{path}: {what} not found") from None
    except UnicodeDecodeError:
        raise IqaError(f"{path}: {what} is not UTF-8 text (corrupt?){'; ' + advice if advice else ''}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise IqaError(f"{path}: {what} is not valid JSON (line {exc.lineno}: {exc.msg}); "
                       f"it was cut or edited by hand{'; ' + advice if advice else ''}") from None


def named_by(file: Path, name: str, what: str) -> Path:
    """The file that `file` (a CSV of examples, a prompt list, a suite) names as `name`: relative to
    `file`'s own folder, and inside it once symlinks are resolved; else one line naming both."""
    folder = Path(file).expanduser().parent
    target = Path(name).expanduser()
    target = target if target.is_absolute() else folder / target
    try:
        target.resolve().relative_to(folder.resolve())
    except ValueError:
        raise IqaError(f"{file}: {what} {name!r} must stay inside {folder} (a path relative to the file's "
                       "folder; symbolic links leaving it are not followed)") from None
    except (OSError, RuntimeError):  # a symlink loop
        raise IqaError(f"{file}: {what} {name!r}: cannot resolve the path (a symbolic link loop?)") from None
    return target


def read_text(path: Path, what: str = "file") -> str:
    """A text file decoded as UTF-8, or one line naming the file and the first byte that is not."""
    path = Path(path)
    with machine_errors(path):
        data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IqaError(f"{path}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                       "save it as UTF-8") from None


def read_csv_rows(path: Path, what: str = "CSV file") -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a small CSV file (UTF-8), or one line naming the file and the problem (not
    UTF-8, a field over the csv module's limit, a broken quote)."""
    import csv

    text = read_text(path, what)
    reader = csv.DictReader(text.splitlines(keepends=True))
    try:
        rows = list(reader)
    except csv.Error as exc:
        limit = "field larger than field limit" in str(exc)
        why = f"a field is longer than {csv.field_size_limit()} characters" if limit else str(exc)
        raise IqaError(f"{path}: {what} cannot be read as CSV (line {reader.line_num}: {why})") from None
    return list(reader.fieldnames or ()), rows


def sha256_file(path: Path, length: int = 16) -> str:
    """The sha256 of a file's content (hex, first `length` digits), read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def drop_torn_tail(path: Path) -> None:
    """Cut a partial last line (a kill in the middle of a write) from an append-only log."""
    with machine_errors(path):
        data = Path(path).read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)
                fh.flush()
                os.fsync(fh.fileno())


class JsonlLog:
    """An append-only log of JSON objects, one per line, safe against kills (see module doc)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh = None
        self._unsynced = False  # records written with sync=False since the last fsync
        self._synced_size = 0  # the file's size at the last fsync

    def append(self, record: dict, sync: bool = True) -> None:
        """Write one record; fsync now, or (sync=False) leave that to the next `sync()`."""
        self.append_many([record], sync)

    def append_many(self, records: list[dict], sync: bool = True) -> None:
        """Append records in one write (and, unless sync=False, one fsync); after a kill its whole lines
        count, a torn one is cut."""
        if not records:
            return
        line = "".join(dumps(record) + "\n" for record in records).encode("utf-8")
        with machine_errors(self.path):
            if self._fh is None:
                if self.path.exists():
                    drop_torn_tail(self.path)
                # unbuffered: a failed write leaves nothing in a buffer for a later flush to add
                self._fh = open(self.path, "ab", buffering=0)
                self._synced_size = os.fstat(self._fh.fileno()).st_size
            start = os.fstat(self._fh.fileno()).st_size
            try:
                view = memoryview(line)
                while view:
                    view = view[self._fh.write(view):]
            except BaseException:
                self._cut_back(start)  # a partial write: the records are absent, never partial
                raise
            # whole lines are on file now; an interrupt (Ctrl-C, SIGTERM) during the fsync keeps them, and
            # close() makes them durable: only a failing fsync cuts them
            self._unsynced = True
            if sync:
                try:
                    os.fsync(self._fh.fileno())
                except OSError:
                    self._cut_back(start)
                    raise
                self._synced_size = start + len(line)
                self._unsynced = False

    def sync(self) -> None:
        """Make every record written so far durable (one fsync for all of them)."""
        if self._fh is not None and self._unsynced:
            with machine_errors(self.path):
                try:
                    os.fsync(self._fh.fileno())
                except OSError:
                    # the group may not be on disk: cut it, so what stays is what was synced before
                    # (an interrupt during the fsync is not a failure: close() syncs the whole lines)
                    self._unsynced = False
                    self._cut_back(self._synced_size)
                    raise
            self._unsynced = False
            self._synced_size = os.fstat(self._fh.fileno()).st_size

    def _cut_back(self, size: int) -> None:
        """After a failed append: cut what it wrote, so the record is absent, never partial."""
        try:
            os.ftruncate(self._fh.fileno(), size)
        except OSError:
            pass  # a partial line without its newline is torn: readers ignore it, the next append cuts it
        self.close()

    def close(self) -> None:
        if self._fh is not None:
            if self._unsynced:
                try:
                    os.fsync(self._fh.fileno())  # records appended with sync=False are durable here at the latest
                except OSError:
                    pass  # a disk that refuses it: the records are written; the next attempt's reader sees them
                self._unsynced = False
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "JsonlLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, on_bad: Callable[[int, str], None] | None = None) -> list[dict]:
        """Every whole record. A corrupt line in the middle raises IqaError naming file and line,
        unless `on_bad(lineno, reason)` is given to collect it instead."""
        return [rec for _, rec in self.read_numbered(on_bad)]

    def read_numbered(self, on_bad: Callable[[int, str], None] | None = None) -> list[tuple[int, dict]]:
        """Like `read`, with each record's line number."""
        if not self.path.exists():
            return []
        with machine_errors(self.path):
            data = self.path.read_bytes()
        lines = data.split(b"\n")
        out = []
        for lineno, line in enumerate(lines, 1):
            if lineno == len(lines):
                break  # after the last newline: empty, or a torn line from a kill
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError(f"a JSON {type(rec).__name__}, not an object")
            except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
                reason = f"not a JSON object ({exc})"
                if on_bad is None:
                    raise IqaError(f"{self.path}:{lineno}: corrupt record: {reason}") from None
                on_bad(lineno, reason)
                continue
            out.append((lineno, rec))
        return out


def append_jsonl(path: Path, record: dict) -> None:
    """Append one record to a JSONL log (open, append, fsync, close)."""
    with JsonlLog(path) as log:
        log.append(record)
