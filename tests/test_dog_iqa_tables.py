"""Dog-IQA's tables as computed cells (seed 004): every Table 6 judge a backend here runs scores
through dog-iqa on a tiny random model of its architecture, with the suite's own options."""
import copy
import math
import os

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (a test dependency: a missing one fails, never skips)

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


def test_s_seg_formulas_by_hand():
    from iqabench.methods.dog_iqa_aggregate import seg_score

    assert seg_score(7, 7, 71) == pytest.approx(7 * 7 / 71)  # the paper's SPAQ mean count and maximum
    assert seg_score(71, 7, 71) == 7.0
    assert seg_score(3, 7, 11, "unit") == pytest.approx(3 / 11)
    assert seg_score(3, 5, 11, "minmax", c_min=1) == pytest.approx(5 * 2 / 10)
    assert seg_score(4, 5, 4, "minmax", c_min=4) == 0.0  # counts that do not vary add nothing
    assert DogIqaOptions().s_seg_formula == "paper"
    # out of the option dump (the run key) at its default: runs made before the option existed keep their keys
    assert "s_seg_formula" not in DogIqaOptions().model_dump()
    assert DogIqaOptions(s_seg_formula="unit").model_dump()["s_seg_formula"] == "unit"


@pytest.mark.parametrize("formula,outside", [("paper", True), ("minmax", False)])
def test_a_run_whose_scores_leave_the_judge_range_says_so_in_its_metrics(tiny_root, tmp_path, formula, outside, caplog):
    """min_area_fraction = 1 keeps no mask, so every image has one region (c = c_max = 1): the printed
    s_seg is K for every image and each final score is above K; minmax adds 0 and stays in range."""
    from iqabench.models.tiny import tiny_model_path
    from iqabench.run import RunConfig, run

    options = DogIqa.contract_options(tmp_path)
    options.update(min_area_fraction=1.0, judge_mode="logits", s_seg_formula=formula)
    cfg = RunConfig(method="dog-iqa", dataset="tiny", data_root=tiny_root, results=tmp_path / "results", device="cpu",
                    options=options, limit=3, batch_size=2, progress=False, n_boot=0)
    assert tiny_model_path("llava", tmp_path) == options["judge"]["backend_path"]
    metrics = run(cfg, on_log=lambda m: None).metrics
    assert metrics["n_scored"] == 3
    score_range = metrics["runtime"]["score_range"]
    assert score_range["judge_range"] == [1, 7] and score_range["at_c_max"] == 3
    if outside:
        assert score_range["outside_judge_range"] == 3 and score_range["min"] > 7
        assert "3 of 3 scores lie outside [1, 7]" in score_range["note"] and "constant 7" in score_range["note"]
        assert score_range["s_seg_mean"] == 7.0
        assert any("3 of 3 scores lie outside [1, 7]" in r.getMessage() for r in caplog.records)  # and on the console
    else:
        assert score_range["outside_judge_range"] == 0 and "note" not in score_range and score_range["s_seg_mean"] == 0
        assert 1 <= score_range["min"] <= score_range["max"] <= 7
