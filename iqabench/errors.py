"""Errors the user sees as one line: they name the file or the option and the problem.

Exit statuses of the CLI: 2 for an IqaError (bad input: fix the command, the options or the
data), 1 for an EnvironmentProblem (the machine: disk full, read-only folder, no permission).
"""
from __future__ import annotations

import errno
import os
import re
from pathlib import Path


class IqaError(Exception):
    """A problem with the user's input or environment, shown without a traceback."""


class NotAvailable(IqaError):
    """A method or dataset cannot run here (missing weights, package or files)."""


class Busy(IqaError):
    """Another process holds the lock of this run or checkpoint folder (it is computing it now)."""


class EnvironmentProblem(IqaError, OSError):
    """The machine refused: disk full, read-only folder, permission denied. Exit status 1;
    what was saved before is kept, and the same command resumes once the cause is fixed.
    Also an OSError (with the errno of its cause), so code that handles OSError still does."""


_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def one_line(error: BaseException | str, limit: int | None = None, *, typed: bool = False) -> str:
    """An error as one line, for the terminal, a log line or a table cell.

    The engine's own messages (an IqaError, or a str) are written to be read whole: their lines
    are joined. Another library's exception gives its gist on the first line and details after
    (torch's advice, pandas' context): only that line is kept, or the type's name when the message
    is empty; `typed` puts the type's name in front ("ValueError: ...") where nothing else says
    what failed. Terminal colour codes are dropped; `limit` cuts the line to that many characters.
    """
    lines = [line.strip() for line in _COLOUR.sub("", str(error)).splitlines() if line.strip()]
    if isinstance(error, (str, IqaError)):
        text = " ".join(lines)
    else:
        name = type(error).__name__
        text = (f"{name}: {lines[0]}" if typed else lines[0]) if lines else name
    return text[:limit] if limit is not None else text


# errno -> (what the user sees, what to do)
_ENVIRONMENT = {
    errno.ENOSPC: ("disk full", "free some space"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or raise the quota"),
    errno.EFBIG: ("file too large for this file system", "use another --results folder"),
    errno.EROFS: ("read-only file system", "use a writable --results folder"),
    errno.EACCES: ("permission denied", "fix the folder's permissions or use another --results folder"),
    errno.EPERM: ("operation not permitted", "fix the folder's permissions or use another --results folder"),
    errno.EIO: ("input/output error (failing disk or network share?)", "check the disk"),
    errno.EMFILE: ("too many open files", "raise `ulimit -n`"),
    errno.ENFILE: ("too many open files in the system", "close other programs"),
    errno.ENOMEM: ("out of memory", "free memory or use a smaller --batch-size"),
}


def is_environment_errno(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _ENVIRONMENT


def environment_problem(exc: OSError, path: str | os.PathLike | None = None) -> EnvironmentProblem | None:
    """The one-line EnvironmentProblem for an OSError the machine caused (disk full, read-only,
    permission, ...), naming `path` (else the file the OSError names); None for other OSErrors."""
    if not is_environment_errno(exc):
        return None
    if isinstance(exc, EnvironmentProblem):
        return exc  # already one line naming its file
    what, todo = _ENVIRONMENT[exc.errno]
    where = path if path is not None else exc.filename
    prefix = f"{Path(where)}: " if where else ""
    problem = EnvironmentProblem(f"{prefix}{what}; everything saved before is kept: {todo}, "
                                 "then rerun the same command to resume")
    problem.errno = exc.errno
    return problem


def environment_cause(exc: BaseException | None) -> BaseException | None:
    """The machine's refusal behind `exc`: itself, or one it was raised from or while handling (an
    EnvironmentProblem, or an OSError such as disk full), so an error that adds context or rewords
    it (`except OSError: raise IqaError(...)`) keeps exit status 1. None when there is none."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, EnvironmentProblem) or is_environment_errno(exc):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
