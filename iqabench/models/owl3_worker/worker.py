"""The worker process: reads requests from stdin, answers on stdout, one JSON line each.

Run by `client.py` as `python -u worker.py` with the interpreter of the worker's virtualenv.
Requests (`id` is echoed back; every answer has `ok`, and `error` when not ok):
  {"op": "hello"}                                        -> protocol, python and transformers versions
  {"op": "load", "host": "owl3" | "iqabench:<arch>", "spec": {...}, "device": "cuda"}
                                                         -> fingerprint, image_size, mean, std
  {"op": "generate", "images": [{"png_b64"|"path"}], "prompt": str, "system": str | null,
   "max_new_tokens": int}                                -> answers (one string per image)
  {"op": "shutdown"}
The worker exits when stdin closes, so it never outlives the harness.
"""
from __future__ import annotations

import os
import sys
from typing import Any

if __package__ in (None, ""):  # run as a script in the worker's own virtualenv
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import protocol  # type: ignore[no-redef]
else:
    from iqabench.models.owl3_worker import protocol

OWL3_DEFAULT = "mPLUG/mPLUG-Owl3-7B-240728"


class Owl3Host:
    """mPLUG-Owl3 through its own remote code (transformers 4.37-4.41), as its model card shows:
    AutoModel with trust_remote_code, `model.init_processor(tokenizer)`, ChatML messages with
    `<|image|>` in the user turn, greedy decoding. Images are preprocessed by Owl3's processor."""

    def __init__(self, spec: dict[str, Any], device: str):
        import torch
        import transformers
        from transformers import AutoModel, AutoTokenizer

        path = spec.get("path") or OWL3_DEFAULT
        revision = spec.get("revision")
        if not spec.get("trust_remote_code"):
            raise PermissionError("mPLUG-Owl3 runs its own code from the hub: pass trust_remote_code=true explicitly")
        if not revision:
            raise PermissionError("mPLUG-Owl3 with trust_remote_code needs a pinned revision (a commit hash)")
        dtype_name = spec.get("dtype") or "auto"
        dtype = (torch.float16 if str(device).startswith("cuda") else torch.float32) if dtype_name == "auto" else getattr(torch, dtype_name)
        remote = bool(spec["trust_remote_code"])  # the user's explicit opt-in, checked above
        self.model = AutoModel.from_pretrained(path, revision=revision, trust_remote_code=remote,
                                               attn_implementation="sdpa", torch_dtype=dtype).eval().to(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=remote)
        self.processor = self.model.init_processor(self.tokenizer)
        self.device = device
        self.info = {
            "fingerprint": {"host": "owl3", "path": path, "revision": revision, "dtype": str(dtype).replace("torch.", ""),
                            "transformers": transformers.__version__, "attn": "sdpa"},
            "image_size": 378, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
        }

    def generate(self, images: list[Any], prompt: str, system: str | None, max_new_tokens: int) -> list[str]:
        import torch

        answers = []
        for image in images:  # Owl3's processor takes one conversation at a time
            messages = [{"role": "system", "content": system}] if system else []
            messages += [{"role": "user", "content": f"<|image|>\n{prompt}"}, {"role": "assistant", "content": ""}]
            inputs = self.processor(messages, images=[image], videos=None)
            inputs.to(self.device)
            inputs.update({"tokenizer": self.tokenizer, "max_new_tokens": max_new_tokens, "decode_text": True})
            with torch.inference_mode():
                out = self.model.generate(**inputs)
            answers.append(str(out[0] if isinstance(out, (list, tuple)) else out).strip())
        return answers


class IqabenchHost:
    """Any iqabench MLLMBackend inside the worker (tests run the transport on a tiny Llava)."""

    def __init__(self, arch: str, spec: dict[str, Any], device: str):
        from iqabench.models.backend import BackendSpec, load_backend

        self.backend = load_backend(BackendSpec(**{**spec, "arch": arch}), device)
        self.info = {"fingerprint": {"host": f"iqabench:{arch}", **self.backend.fingerprint()},
                     "image_size": self.backend.image_size, "mean": list(self.backend.mean), "std": list(self.backend.std)}

    def generate(self, images: list[Any], prompt: str, system: str | None, max_new_tokens: int) -> list[str]:
        import torch

        text = f"{system}\n{prompt}" if system else prompt
        pixels = self.backend.normalize(self.backend.to_pixels(images))
        with torch.no_grad():
            return list(self.backend.generate(pixels, text, max_new_tokens=max_new_tokens))


def handle(request: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if op == "hello":
        try:
            import transformers
            version = transformers.__version__
        except ImportError:
            version = None
        return {"ok": True, "protocol": protocol.PROTOCOL_VERSION, "python": sys.version.split()[0], "transformers": version}
    if op == "load":
        host = request.get("host", "owl3")
        spec = dict(request.get("spec") or {})
        device = request.get("device", "cpu")
        if host == "owl3":
            state["host"] = Owl3Host(spec, device)
        elif host.startswith("iqabench:"):
            state["host"] = IqabenchHost(host.split(":", 1)[1], spec, device)
        else:
            raise ValueError(f"unknown host {host!r}: expected owl3 or iqabench:<arch>")
        return {"ok": True, **state["host"].info}
    if op == "generate":
        if "host" not in state:
            raise RuntimeError("generate before load")
        images = [protocol.decode_image(item) for item in request.get("images", [])]
        answers = state["host"].generate(images, str(request.get("prompt", "")), request.get("system"),
                                         int(request.get("max_new_tokens", 8)))
        return {"ok": True, "answers": answers}
    if op == "shutdown":
        state["stop"] = True
        return {"ok": True}
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    wire = sys.stdout
    sys.stdout = sys.stderr  # library prints must not corrupt the protocol stream
    state: dict[str, Any] = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        request_id = None
        try:
            request = protocol.loads(line)
            request_id = request.get("id")
            answer = handle(request, state)
        except Exception as exc:  # noqa: BLE001 - reported to the harness as one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            answer = {"ok": False, "error": f"{type(exc).__name__}: {first}"}
        answer["id"] = request_id
        wire.write(protocol.dumps(answer))
        wire.flush()
        if state.get("stop"):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
