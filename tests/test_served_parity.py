"""The parity check's wiring in the softmax methods, and the served backend's refusals that need no
server (the real-server tests are tests/test_served_vllm.py). Here both sides of the parity check
are in process (the same tiny checkpoint twice), so every per-image difference must be 0."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from iqabench.api import RunContext, Sample
from iqabench.errors import IqaError
from iqabench.models.backend import BackendSpec, load_backend


def _samples(n: int):
    rng = np.random.default_rng(0)
    return [Sample(id=f"im{i}", image=Image.fromarray(rng.integers(0, 256, (24 + i, 30, 3), dtype=np.uint8)),
                   label=float(i)) for i in range(n)]


def test_parity_records_per_image_and_srcc_differences(tmp_path, capsys):
    from iqabench.methods.softmax import SoftmaxOwl2QBench
    from iqabench.models.tiny import tiny_model_path

    path = tiny_model_path("qwen2_5_vl", tmp_path)
    options = SoftmaxOwl2QBench.Options(backend="qwen2_5_vl", backend_path=path, parity_path=path, parity_n=4)
    method = SoftmaxOwl2QBench(options)
    method.setup(RunContext(batch_size=3))
    samples = _samples(5)
    scores = list(method.score(samples[:3])) + list(method.score(samples[3:]))
    extras = [method.sample_extras(s.id) for s in samples]
    assert [("parity" in e) for e in extras] == [True] * 4 + [False]
    for e, s in zip(extras[:4], scores):
        assert e["parity"]["local_score"] == pytest.approx(s, abs=1e-6) and abs(e["parity"]["diff"]) < 1e-6
    summary = method.runtime_stats()["parity"]
    assert summary["images"] == 4 and summary["compared"] == 4 and abs(summary["srcc_diff"]) < 1e-9
    method.teardown()
    assert "parity (served vs in-process, first 4 images" in capsys.readouterr().err


def test_served_backend_needs_a_url_and_a_live_server():
    with pytest.raises(IqaError, match="not a server URL"):
        load_backend(BackendSpec(arch="served", path="/some/folder"))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(IqaError, match="cannot reach the server"):
        load_backend(BackendSpec(arch="served", path=f"http://127.0.0.1:{port}/v1"))


def test_served_options_are_checked_without_a_server():
    from iqabench.methods.softmax import SoftmaxOwl2QBench

    options = SoftmaxOwl2QBench.Options(backend="served", backend_path="http://127.0.0.1:9/v1", served_model="m")
    assert SoftmaxOwl2QBench.check_available(options) is None
    assert options.backend_spec().served_model == "m" and options.backend_spec().served_logprobs == 20


def test_served_and_parity_settings_apply_where_they_can_and_keep_run_keys():
    import pydantic

    from iqabench.methods.softmax import SoftmaxOwl2QBench

    for wrong in ({"served_model": "m"}, {"served_logprobs": 5}):  # owl2 runs in process
        with pytest.raises(pydantic.ValidationError, match="not a served backend"):
            SoftmaxOwl2QBench.Options(**wrong)
    with pytest.raises(pydantic.ValidationError, match="resize=crop"):  # the server owns preprocessing
        SoftmaxOwl2QBench.Options(backend="served", backend_path="http://127.0.0.1:9/v1", resize="crop")
    with pytest.raises(pydantic.ValidationError, match="parity_n needs parity_path"):
        SoftmaxOwl2QBench.Options(parity_n=2)
    with pytest.raises(pydantic.ValidationError, match="unknown backend"):
        SoftmaxOwl2QBench.Options(parity_backend="no-such-arch", parity_path="/x", parity_n=1)
    served = SoftmaxOwl2QBench.Options(backend="served", backend_path="/not/a/url")
    assert "not a server URL" in SoftmaxOwl2QBench.check_available(served)
    # at their defaults the new settings are not in the options' dump, so run keys made before them hold
    dumped = SoftmaxOwl2QBench.Options().model_dump(mode="json")
    assert not {"served_model", "served_logprobs", "parity_path", "parity_backend", "parity_n"} & set(dumped)
    set_ = SoftmaxOwl2QBench.Options(backend="served", backend_path="http://h:1/v1", served_logprobs=5,
                                     parity_path="/x", parity_n=2).model_dump(mode="json")
    assert set_["served_logprobs"] == 5 and set_["parity_n"] == 2 and set_["parity_path"] == "/x"
