"""The harness side of the mPLUG-Owl3 worker: an MLLMBackend (arch "owl3-worker") that starts
`worker.py` with the interpreter of the worker's virtualenv and talks JSON lines to it.

Only generation crosses the process boundary: `next_token_logits` and `token_id` raise, so
Dog-IQA's logit variant is refused with a message for this backend.
"""
from __future__ import annotations

import atexit
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iqabench import hub
from iqabench.errors import IqaError, NotAvailable
from iqabench.models.backend import BackendSpec, BackendTraits, MLLMBackend
from iqabench.models.owl3_worker import protocol

WORKER = Path(__file__).with_name("worker.py")
# The hosted model preprocesses the images itself (its grid is the hosted model's: unknown here),
# one image per prompt; the worker settings are backend options
TRAITS = BackendTraits(grid=None, multi_image=False, resize=("model",), worker=True)


def traits(arch: str) -> BackendTraits:
    return TRAITS


class Owl3WorkerBackend(MLLMBackend):
    def __init__(self, spec: BackendSpec, device: str):
        python, host = spec.worker_python or "", spec.worker_host
        exe = Path(python).expanduser()
        if not exe.is_file():
            raise NotAvailable(f"worker_python {python}: no such interpreter (create the worker venv: see {WORKER.parent / 'README.md'})")
        self.spec = spec
        self.device = device
        self.host = host
        self._next_id = 0
        self._log = tempfile.NamedTemporaryFile(prefix="owl3-worker-", suffix=".log", delete=False)  # noqa: SIM115 - lives as long as the worker
        env = hub.child_environment(dict(os.environ))
        # The worker may host iqabench backends: make this checkout importable there.
        root = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        self._proc = subprocess.Popen([str(exe), "-u", str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, text=True, env=env, bufsize=1)
        atexit.register(self.close)
        try:
            self._handshake(spec, device, host)
        except BaseException:
            self.close()  # a worker that failed to load is not left running
            raise

    def _handshake(self, spec: BackendSpec, device: str, host: str) -> None:
        hello = self._request({"op": "hello"})
        if hello.get("protocol") != protocol.PROTOCOL_VERSION:
            raise IqaError(f"owl3 worker speaks protocol {hello.get('protocol')}, expected {protocol.PROTOCOL_VERSION}")
        self.worker_versions = {"python": hello.get("python"), "transformers": hello.get("transformers")}
        spec_fields = {"path": spec.path, "revision": spec.revision, "trust_remote_code": spec.trust_remote_code,
                       "dtype": spec.dtype, "resize": spec.resize}
        loaded = self._request({"op": "load", "host": host, "spec": spec_fields, "device": device})
        self._fingerprint = {"arch": "owl3-worker", **loaded["fingerprint"], "worker": self.worker_versions}
        self.image_size = int(loaded["image_size"])
        self.mean = tuple(loaded["mean"])
        self.std = tuple(loaded["std"])

    # -- transport ----------------------------------------------------------------
    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._proc.poll() is not None:
            raise IqaError(f"owl3 worker exited with code {self._proc.returncode}; {self._stderr_tail()}")
        self._next_id += 1
        message = {**message, "id": self._next_id}
        try:
            self._proc.stdin.write(protocol.dumps(message))
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        except (BrokenPipeError, OSError) as exc:
            raise IqaError(f"owl3 worker: connection lost ({exc}); {self._stderr_tail()}") from exc
        if not line:
            self._proc.wait(timeout=10)
            raise IqaError(f"owl3 worker exited with code {self._proc.returncode}; {self._stderr_tail()}")
        answer = protocol.loads(line)
        if answer.get("id") != self._next_id:
            raise IqaError(f"owl3 worker answered request {answer.get('id')} to request {self._next_id}")
        if not answer.get("ok"):
            raise IqaError(f"owl3 worker, op {message['op']}: {answer.get('error')}")
        return answer

    def _stderr_tail(self, lines: int = 5) -> str:
        try:
            text = Path(self._log.name).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no worker log"
        return "worker log: " + " | ".join(text[-lines:]) if text else "worker log is empty"

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.stdin.write(protocol.dumps({"op": "shutdown", "id": -1}))
            proc.stdin.flush()
            proc.stdin.close()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        self._log.close()
        if proc.returncode == 0:  # errors were already quoted; a clean exit leaves no log behind
            Path(self._log.name).unlink(missing_ok=True)

    # -- MLLMBackend ------------------------------------------------------------------
    def generate_images(self, images: Sequence[Any], prompt: str, max_new_tokens: int = 8, system: str | None = None) -> list[str]:
        """PIL views in, answers out; the hosted model preprocesses the images itself."""
        answer = self._request({"op": "generate", "images": [protocol.encode_image(im) for im in images],
                                "prompt": prompt, "system": system, "max_new_tokens": max_new_tokens})
        return [str(a) for a in answer["answers"]]

    def to_pixels(self, images: Sequence[Any]):
        import numpy as np
        import torch
        from PIL import Image

        arrays = [np.asarray(im.convert("RGB").resize((self.image_size, self.image_size), Image.BICUBIC), dtype=np.uint8) for im in images]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)

    def generate(self, pixel_values, prompt: str, max_new_tokens: int = 8) -> list[str]:
        """Normalised pixels back to images (exact up to 8-bit rounding), then `generate_images`."""
        import numpy as np
        import torch
        from PIL import Image

        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        unit = (pixel_values.detach().cpu().float() * std + mean).clamp(0, 1)
        arrays = (unit.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
        return self.generate_images([Image.fromarray(a) for a in arrays], prompt, max_new_tokens)

    def next_token_logits(self, pixel_values, prompt: str):
        raise IqaError("owl3-worker backend: next-token logits do not cross the worker boundary; use judge_mode=generate")

    def token_id(self, word: str) -> int:
        raise IqaError("owl3-worker backend: token ids are not available across the worker boundary; use judge_mode=generate")

    def fingerprint(self) -> dict[str, Any]:
        return dict(self._fingerprint)


def unavailable(spec: BackendSpec) -> str | None:
    """Why the worker cannot start, checked without starting it."""
    if not spec.worker_python:
        return ("backend owl3-worker runs in its own virtualenv: set the backend option "
                f"worker_python=/path/to/venv/bin/python (see {WORKER.parent / 'README.md'})")
    return None


def load(spec: BackendSpec, device: str = "cpu") -> Owl3WorkerBackend:
    """Start the worker with `spec.worker_python`, the interpreter of the worker's virtualenv."""
    why = unavailable(spec)
    if why:
        raise NotAvailable(why)
    if spec.worker_host == "owl3" and not (spec.trust_remote_code and spec.revision):
        raise IqaError("mPLUG-Owl3 runs remote code: set trust_remote_code=true and revision=<commit hash>")
    return Owl3WorkerBackend(spec, device)
