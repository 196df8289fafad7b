"""A small HTTP client for OpenAI-compatible servers: JSON over urllib, bounded concurrency,
retries with backoff. Operational settings (they change no score, so they are not options and
not part of a run's identity) come from the environment the user sets:
- IQABENCH_SERVED_API_KEY: sent as `Authorization: Bearer ...`; never written to results;
- IQABENCH_SERVED_CONCURRENCY (default 4): requests in flight at once;
- IQABENCH_SERVED_TIMEOUT (seconds, default 120) and IQABENCH_SERVED_RETRIES (default 4).
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from iqabench.errors import IqaError

RETRY_STATUS = (408, 409, 425, 429, 500, 502, 503, 504)


class RequestFailed(RuntimeError):
    """A request that still failed after its retries. Not an IqaError: the engine records it
    against the image whose request it was (and stops on a long streak, e.g. a dead server)."""


def _env_number(name: str, default: float, kind: Callable[[str], float]) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise IqaError(f"{name}={raw!r}: not a number") from None
    if value <= 0:
        raise IqaError(f"{name}={raw!r}: must be positive")
    return value


class Client:
    def __init__(self, base_url: str, api_key: str | None = None, concurrency: int | None = None,
                 timeout: float | None = None, retries: int | None = None, backoff: float = 0.5):
        self.base_url = base_url.rstrip("/")
        # vLLM's and SGLang's own endpoints (/tokenize, /version) sit beside /v1, not under it
        self.root_url = self.base_url.removesuffix("/v1")
        self._api_key = api_key if api_key is not None else os.environ.get("IQABENCH_SERVED_API_KEY") or None
        self.concurrency = int(concurrency or _env_number("IQABENCH_SERVED_CONCURRENCY", 4, int))
        self.timeout = float(timeout or _env_number("IQABENCH_SERVED_TIMEOUT", 120.0, float))
        self.retries = int(retries if retries is not None else _env_number("IQABENCH_SERVED_RETRIES", 4, int))
        self.backoff = backoff
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="iqabench-served")
        self.stats = {"requests": 0, "retries": 0, "failed": 0}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _url(self, path: str) -> str:
        """`path` under the API base (/v1/...); a path starting with `~/` under the server's root."""
        return self.root_url + path[1:] if path.startswith("~/") else self.base_url + path

    def _once(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self._url(path), data=data, method=method, headers=self._headers())
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read().decode("utf-8"))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, retries: int | None = None) -> Any:
        """One JSON request, retried with exponential backoff on connection errors, timeouts and
        the statuses a busy server answers (429, 5xx); any other HTTP error fails at once."""
        tries = (self.retries if retries is None else retries) + 1
        self.stats["requests"] += 1
        for attempt in range(tries):
            try:
                return self._once(method, path, body)
            except urllib.error.HTTPError as exc:
                detail = _error_text(exc)
                if exc.code not in RETRY_STATUS or attempt == tries - 1:
                    self.stats["failed"] += 1
                    raise RequestFailed(f"{self._url(path)}: HTTP {exc.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                if attempt == tries - 1:
                    self.stats["failed"] += 1
                    reason = getattr(exc, "reason", exc)
                    raise RequestFailed(f"{self._url(path)}: {type(exc).__name__}: {reason} "
                                        f"(after {tries} tries, timeout {self.timeout:g} s)") from None
            except ValueError as exc:  # not JSON
                self.stats["failed"] += 1
                raise RequestFailed(f"{self._url(path)}: the answer is not JSON ({exc})") from None
            self.stats["retries"] += 1
            time.sleep(self.backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    def post_many(self, path: str, bodies: Sequence[dict[str, Any]]) -> list[Any]:
        """The bodies posted concurrently (at most `concurrency` in flight), answers in order."""
        if len(bodies) == 1:
            return [self.call("POST", path, bodies[0])]
        return list(self._pool.map(lambda body: self.call("POST", path, body), bodies))


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read().decode("utf-8", "replace"))
        message = payload.get("error", payload) if isinstance(payload, dict) else payload
        if isinstance(message, dict):
            message = message.get("message", message)
        text = str(message)
    except (ValueError, OSError):
        text = str(exc.reason)
    return (text.strip().splitlines() or [""])[0][:300]
