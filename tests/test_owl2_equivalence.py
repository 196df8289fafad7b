"""Our mPLUG-Owl2 against pyiqa's independent implementation, on the same random weights.

The reference runs in a subprocess (tests/owl2_reference_worker.py): pyiqa patches
transformers' Llama classes process-wide, which must not leak into this test process.
Both configurations go through one subprocess, since importing pyiqa takes seconds.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyiqa  # noqa: F401
import pytest
import torch

WORKER = Path(__file__).with_name("owl2_reference_worker.py")
PROMPTS = (
    "Rate the technical quality of the image.",  # wrapped in USER: <|image|>... ASSISTANT:
    "USER: How would you rate the quality of this image?\n<|image|>\nASSISTANT: The quality of the image is",
)
CONFIGS = {
    "small": {},
    "deeper": {"text_layers": 3, "vision_layers": 3, "abstractor_layers": 3, "queries": 5, "image_size": 42,
               "text_hidden": 48, "text_heads": 6},
}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """name -> (our logits per prompt, reference logits per prompt)."""
    from iqabench.models.backend import BackendSpec, load_backend
    from iqabench.models.tiny_owl2 import build_tiny_owl2

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("owl2_equivalence")
    ours, jobs = {}, []
    for name, sizes in CONFIGS.items():
        folder = build_tiny_owl2(root / name, seed=3, **sizes)
        backend = load_backend(BackendSpec(path=str(folder)), "cpu")
        size = backend.image_size
        pixels = backend.normalize(torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(1)))
        with torch.no_grad():
            ours[name] = [backend.next_token_logits(pixels, p) for p in PROMPTS]
        inputs = root / f"{name}_inputs.pt"
        torch.save({"prompts": [backend.prompt_ids(p) for p in PROMPTS], "pixel_values": pixels}, inputs)
        jobs += [str(folder), str(inputs), str(root / f"{name}_reference.pt")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OWL2_THREADS": "1"}
    done = subprocess.run([sys.executable, str(WORKER), "logits", *jobs],
                          check=False, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {name: (ours[name], torch.load(root / f"{name}_reference.pt", weights_only=True)["logits"])
            for name in CONFIGS}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_last_position_logits_match_pyiqa(cases, name):
    ours, reference = cases[name]
    for mine, expected in zip(ours, reference):
        assert mine.shape == expected.shape and mine.shape[0] == 3
        # the check has teeth: images move the logits far more than the tolerance
        assert (expected[0] - expected[1]).abs().max() > 1e-2
        torch.testing.assert_close(mine, expected, atol=1e-4, rtol=1e-4)
    assert (reference[0] - reference[1]).abs().max() > 1e-2  # and so do prompts
