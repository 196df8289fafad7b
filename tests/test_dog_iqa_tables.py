"""Dog-IQA's tables as computed cells (seed 004): every Table 6 judge a backend here runs scores
through dog-iqa on a tiny random model of its architecture, with the suite's own options."""
import copy
import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from iqabench.api import RunContext, Sample  # noqa: E402
from iqabench.methods.dog_iqa import DogIqa, DogIqaOptions  # noqa: E402
from iqabench.suite import load_suite  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)


def _images(n=2):
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Sample(f"img/{i}", Image.fromarray(rng.integers(0, 255, (40, 56), dtype=np.uint8)).convert("RGB"), 0.5)
            for i in range(n)]


def test_every_table6_judge_with_a_backend_here_is_a_computed_cell(tmp_path):
    from iqabench.models.tiny import tiny_model_path

    suite = load_suite("seed004-table6")
    cells = {c.row.label: c for c in suite.cells()}
    assert set(cells) == {"LLaVA-v1.5-7b", "LLaVA-v1.5-13b", "LLaVA-Next", "mPLUG-Owl2", "mPLUG-Owl3"}
    published_only = {r.label for r in suite.rows if r.published_only}
    assert published_only == {"InternLM-XComposer-1.0", "InternLM-XComposer-2.0", "mPLUG-Owl"}
    arches = {label: c.fingerprint_options["judge"]["backend"] for label, c in cells.items()}
    assert arches == {"LLaVA-v1.5-7b": "llava", "LLaVA-v1.5-13b": "llava", "LLaVA-Next": "llava_next",
                      "mPLUG-Owl2": "owl2", "mPLUG-Owl3": "owl3"}  # Owl3 is the in-process default judge
    os.environ["HF_HUB_OFFLINE"] = "1"
    samples = _images()
    for label, cell in cells.items():
        options = copy.deepcopy(cell.fingerprint_options)
        assert (options["levels"], options["parts"], options["use_s_seg"]) == (5, "global", False)
        options["judge"]["backend_path"] = tiny_model_path(options["judge"]["backend"], tmp_path)
        options["judge_mode"] = "logits"  # tiny random models rarely answer a digit; the levels' expectation always runs
        method = DogIqa(DogIqaOptions(**options))
        method.setup(RunContext(dataset="synthetic"))
        scores = method.score(samples)
        assert len(scores) == 2 and all(math.isfinite(s) and 1.0 <= s <= 5.0 for s in scores), (label, scores)
        assert method.runtime_stats()["judge_backend"]["arch"] == options["judge"]["backend"], label
        method.teardown()
