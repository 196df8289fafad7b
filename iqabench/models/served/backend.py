"""The served-model backend: an OpenAI-compatible server (vLLM, SGLang, an API model) behind the
MLLMBackend query interface (iqabench/models/backend.py).

Selected with `-o backend=served -o backend_path=http://HOST:PORT/v1`, and `-o served_model=NAME`
when the server serves several models (vLLM serves one: its name is read from /v1/models).

- `logits(queries)`: one request per query with `max_tokens=1`, `temperature=0` and the top
  `served_logprobs` log-probabilities of the next token. The tensor it returns has one column per
  answer token asked for through `token_id` (not the model's vocabulary): the server's
  log-probability where the server returned that token, NaN where it did not. Log-probabilities
  are logits shifted per row, and every score formula (iqabench/models/scoring/formulas.py) is
  shift-invariant per row, so scores equal the in-process ones; a word the server did not return
  makes that image's score NaN, which the scorers and the engine record as a failure (never a 0).
- `token_id(word)`: servers with a /tokenize endpoint (vLLM, SGLang) give the id of the word's
  first token as the in-process backends pick it, and answers are matched by id
  (`return_tokens_as_token_ids`); elsewhere (API models) by text: the returned token " word",
  else "word".
- `answers(queries, n)`: greedy completions (`temperature=0`).
- Messages: a question prompt goes to /v1/chat/completions (images as base64 PNG data URLs in the
  user's content, in placeholder order; `answer_prefix` as an assistant message the server
  continues, vLLM's `continue_final_message`); a whole-template prompt (template=True) goes as
  raw text to /v1/completions, which takes no images in the OpenAI API, so a template with images
  is refused in one line.
Pixel-space methods (visual prompts) need gradients through the model: refused in one line.
Concurrency, timeouts, retries and the API key: iqabench/models/served/client.py.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from iqabench.errors import IqaError
from iqabench.models.backend import IMAGE_PLACEHOLDER, BackendSpec, BackendTraits, MLLMBackend, Query, first_text_token
from iqabench.models.served.client import Client, RequestFailed

ARCH = "served"
# No pixel grid in this process (image-level methods only, as a tiling processor); the prompt may hold
# several images (whether the served model takes them is the server's answer). The server preprocesses
# the images itself; served_model / served_logprobs are its options.
TRAITS = BackendTraits(grid="tiled", multi_image=True, resize=("model",), served=True)
ID_PREFIX = "token_id:"


def image_url(image: Any) -> str:
    """A PIL image as a base64 PNG data URL (lossless: the server decodes the pixels we decoded)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def user_content(query: Query) -> list[dict[str, Any]]:
    """The user's message as OpenAI content parts: text and images in placeholder order (images
    first when the text has no placeholder), as the in-process backends order them."""
    text = query.text
    parts = text.split(IMAGE_PLACEHOLDER)
    content: list[dict[str, Any]] = []
    if len(parts) == 1:
        content += [{"type": "image_url", "image_url": {"url": image_url(im)}} for im in query.images]
        return content + ([{"type": "text", "text": text}] if text else [])
    for i, part in enumerate(parts):
        if i:
            content.append({"type": "image_url", "image_url": {"url": image_url(query.images[i - 1])}})
        if part:
            content.append({"type": "text", "text": part})
    return content


class ServedBackend(MLLMBackend):
    image_size = None
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    pixel_space = TRAITS.grid == "fixed"
    multi_image = TRAITS.multi_image

    def __init__(self, spec: BackendSpec, client: Client):
        self.spec, self.client = spec, client
        self.top_logprobs = spec.served_logprobs
        self.model, self.server = self._identify()
        self.by_id = self._has_tokenizer()
        self.columns: list[int | str] = []  # answer-token column -> server token id (by id) or word (by text)
        self._responses: dict[str, Any] = {}  # request -> answer: a batch re-scored image by image asks once

    # -- identity --------------------------------------------------------------------
    def _identify(self) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            listing = self.client.call("GET", "/models", retries=1)
        except RequestFailed as exc:
            raise IqaError(f"backend served: cannot reach the server ({exc})") from None
        models = [m for m in listing.get("data", []) if isinstance(m, dict)] if isinstance(listing, dict) else []
        names = [m.get("id") for m in models]
        wanted = self.spec.served_model
        if wanted is None:
            if len(models) != 1:
                listed = ", ".join(map(str, names)) or "none"
                raise IqaError(f"{self.spec.path}: serves {len(models)} models ({listed}); "
                               f"name one with -o served_model=NAME")
            model = models[0]
        elif wanted in names:
            model = models[names.index(wanted)]
        elif models:
            raise IqaError(f"{self.spec.path}: no model {wanted!r}; it serves {', '.join(map(str, names))}")
        else:  # API servers may not list every model they take
            model = {"id": wanted}
        keep = ("id", "root", "owned_by", "max_model_len")  # not "created": the listing's time
        server: dict[str, Any] = {}
        try:
            version = self.client.call("GET", "~/version", retries=0)
            if isinstance(version, dict):
                server = {"version": version.get("version")}
        except RequestFailed:  # API servers may have no /version: the identity says it is unknown (a constant,
            server = {"version": None}  # so the run key does not change with the error's wording)
        return {k: model[k] for k in keep if k in model}, server

    def _has_tokenizer(self) -> bool:
        try:
            self._tokenize(" a")
            return True
        except RequestFailed:
            return False

    def _tokenize(self, text: str) -> list[int]:
        out = self.client.call("POST", "~/tokenize", {"model": self.model["id"], "prompt": text,
                                                         "add_special_tokens": False}, retries=0)
        return [int(t) for t in out["tokens"]]

    def _detokenize(self, ids: list[int]) -> str:
        return str(self.client.call("POST", "~/detokenize", {"model": self.model["id"], "tokens": ids})["prompt"])

    def sampling(self) -> dict[str, Any]:
        return {"temperature": 0.0, "top_logprobs": self.top_logprobs, "answer_match": "id" if self.by_id else "text"}

    def fingerprint(self) -> dict[str, Any]:
        return {"arch": ARCH, "url": self.spec.path, "model": self.model, "revision": self.spec.revision,
                "server": self.server, "sampling": self.sampling()}

    # -- answer tokens -----------------------------------------------------------------
    def token_id(self, word: str) -> int:
        """The column of `word`'s first answer token in `logits` (two words sharing a first token
        share a column, as they share an id in process)."""
        key: int | str = word.strip()
        if self.by_id:
            # as the in-process backends: the first piece of " word" that carries text
            key = first_text_token(self._tokenize(" " + word.strip()), self._detokenize)
            if key is None:
                raise IqaError(f"{self.spec.path}: the server's tokenizer has no token for {word!r}")
        if key not in self.columns:
            self.columns.append(key)
        return self.columns.index(key)

    # -- requests --------------------------------------------------------------------
    def _body(self, query: Query, max_tokens: int, logprobs: bool) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model["id"], "max_tokens": max_tokens, "temperature": 0.0}
        if query.template:
            if query.images:
                raise IqaError("backend served: a whole-template prompt with images needs /v1/completions, which "
                               "takes no images in the OpenAI API; use a question prompt (the server applies its "
                               "chat format)")
            body["prompt"] = query.answer_start(query.text)
            if logprobs:
                body["logprobs"] = self.top_logprobs
            path = "/completions"
        else:
            messages: list[dict[str, Any]] = []
            if query.system:
                messages.append({"role": "system", "content": query.system})
            messages.append({"role": "user", "content": user_content(query)})
            if query.answer_prefix:
                messages.append({"role": "assistant", "content": query.answer_prefix})
                body.update(add_generation_prompt=False, continue_final_message=True)
            body["messages"] = messages
            if logprobs:
                body.update(logprobs=True, top_logprobs=self.top_logprobs)
            path = "/chat/completions"
        if logprobs and self.by_id:
            body["return_tokens_as_token_ids"] = True
        return path, body

    def _post(self, requests: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        keys = [hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest() for r in requests]
        todo = [i for i, k in enumerate(keys) if k not in self._responses]
        by_path: dict[str, list[int]] = {}
        for i in todo:
            by_path.setdefault(requests[i][0], []).append(i)
        for path, idx in by_path.items():
            for i, answer in zip(idx, self.client.post_many(path, [requests[i][1] for i in idx])):
                self._responses[keys[i]] = answer
        out = [self._responses[k] for k in keys]
        if len(self._responses) > 4096:
            self._responses.clear()
        return out

    def _top(self, answer: Any) -> dict[int | str, float]:
        """The first generated position's top log-probabilities: token (id or text) -> value."""
        try:
            choice = answer["choices"][0]
            logprobs = choice["logprobs"]
            if "content" in logprobs:  # chat: [{token, logprob, top_logprobs: [{token, logprob}]}]
                first = logprobs["content"][0]
                pairs = [(e["token"], e["logprob"]) for e in first["top_logprobs"]]
                pairs.append((first["token"], first["logprob"]))
            else:  # completions: top_logprobs = [{token: logprob}]
                pairs = list(logprobs["top_logprobs"][0].items())
        except (KeyError, IndexError, TypeError) as exc:
            raise RequestFailed(f"{self.spec.path}: the answer holds no log-probabilities "
                                f"({type(exc).__name__}: {exc}); does the server return logprobs?") from None
        top: dict[int | str, float] = {}
        for token, value in pairs:
            key: int | str = int(token[len(ID_PREFIX):]) if self.by_id and str(token).startswith(ID_PREFIX) else token
            if value is not None and math.isfinite(float(value)):
                top[key] = float(value)
        return top

    def _column_value(self, top: dict[int | str, float], key: int | str) -> float:
        if self.by_id:
            return top.get(key, math.nan)
        for text in (" " + str(key), str(key)):
            if text in top:
                return top[text]
        return math.nan

    def logits(self, queries: Sequence[Query]):
        import torch

        if not queries:
            raise IqaError("no queries to score")
        if not self.columns:
            raise IqaError("backend served: no answer words asked for (token_id) before logits")
        answers = self._post([self._body(q, 1, True) for q in queries])
        rows = [[self._column_value(top, key) for key in self.columns] for top in map(self._top, answers)]
        return torch.tensor(rows, dtype=torch.float32)

    def answers(self, queries: Sequence[Query], max_new_tokens: int = 8) -> list[str]:
        out = []
        for answer in self._post([self._body(q, max_new_tokens, False) for q in queries]):
            try:
                choice = answer["choices"][0]
                text = choice["message"]["content"] if "message" in choice else choice["text"]
            except (KeyError, IndexError, TypeError):
                raise RequestFailed(f"{self.spec.path}: an answer without text: {str(answer)[:200]}") from None
            out.append((text or "").strip())
        return out

    # -- pixel space: not reachable through a server -----------------------------------
    def _no_pixels(self, what: str):
        raise IqaError(f"backend served: {what} needs the model in this process (gradients or edited pixels); a "
                       f"served model takes images and prompts only, so only image-level methods work")

    def to_pixels(self, images):
        self._no_pixels("to_pixels")

    def normalize(self, pixels):
        self._no_pixels("normalize")

    def next_token_logits(self, pixel_values, prompt):
        self._no_pixels("next_token_logits")

    def generate(self, pixel_values, prompt, max_new_tokens=8):
        self._no_pixels("generate from pixels")

    def runtime_stats(self) -> dict[str, Any]:
        return {"served_requests": dict(self.client.stats)}


def traits(arch: str) -> BackendTraits:
    return TRAITS


def _not_a_url(spec: BackendSpec) -> str | None:
    if spec.path.startswith(("http://", "https://")):
        return None
    return f"backend served: backend_path {spec.path!r} is not a server URL (http://HOST:PORT/v1)"


def unavailable(spec: BackendSpec) -> str | None:
    """Checked without asking the server (listing and planning stay offline): the server is asked
    when the backend loads."""
    return _not_a_url(spec)


def load(spec: BackendSpec, device: str = "cpu") -> ServedBackend:
    """`device` is unused: the server owns the model."""
    problem = _not_a_url(spec)
    if problem:
        raise IqaError(problem)
    return ServedBackend(spec, Client(spec.path))
