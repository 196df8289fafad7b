"""Whether the Hugging Face hub may be asked for files.

A command that must not download (listing, describing a method, `suite run` without --download)
says so with `with no_downloads():`; every hub call the engine and its methods make reads
`offline()` at call time and passes `local_files_only` itself. Nothing is written into
os.environ, so the choice ends with the command and never reaches other code in the process.
The user's own HF_HUB_OFFLINE is honoured too.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

_NO_DOWNLOADS: contextvars.ContextVar[bool] = contextvars.ContextVar("iqabench_no_downloads", default=False)
_TRUE = ("1", "true", "yes", "on")
# What error messages say about why nothing was fetched.
OFFLINE_NOTE = "downloads are off (HF_HUB_OFFLINE=1, or a command that uses only what is on disk)"


def offline() -> bool:
    """True when nothing may be fetched: the running command said so, or HF_HUB_OFFLINE is set."""
    return _NO_DOWNLOADS.get() or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


@contextlib.contextmanager
def no_downloads(active: bool = True) -> Iterator[None]:
    """Within the block, `offline()` is True (when `active`); the caller's setting is restored after."""
    token = _NO_DOWNLOADS.set(_NO_DOWNLOADS.get() or active)
    try:
        yield
    finally:
        _NO_DOWNLOADS.reset(token)


def child_environment(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child process (a worker in its own venv), offline there when it is here."""
    return {**env, "HF_HUB_OFFLINE": "1"} if offline() else dict(env)


def download_command(repo_id: str, revision: str | None = None) -> list[str]:
    """The command that puts a model's files into the Hugging Face cache (the installed
    huggingface_hub ships `hf`; `huggingface-cli` is gone)."""
    return ["hf", "download", repo_id, *(["--revision", revision] if revision else [])]


def download_hint(repo_id: str, revision: str | None = None) -> str:
    """How to get missing weights: a local copy, or a download with offline mode unset first (under
    HF_HUB_OFFLINE=1 no download can work)."""
    import shlex

    return (f"set -o backend_path=DIR to a local copy, or download them: unset HF_HUB_OFFLINE, then "
            f"`{shlex.join(download_command(repo_id, revision))}`")
