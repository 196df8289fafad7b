"""The built-in presets say what their papers and official code say: checked against one committed
reference file (tests/reference/presets.toml, each fact with its source), never against constants
restated here. Parameter counts are computed from the paper's shapes, not copied."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from iqabench import registry
from iqabench.api import RunContext
from iqabench.methods.visual_prompt import PromptConfig, VisualPrompt

REFERENCE = tomllib.loads((Path(__file__).parent / "reference" / "presets.toml").read_text())
SCORERS = ("vp-owl2", "softmax-owl2", "softmax-owl2-qbench", "qalign-owl2")


def test_every_fact_names_its_source():
    for name, facts in REFERENCE.items():
        assert facts.get("source"), f"presets.toml [{name}] gives no source"


@pytest.mark.parametrize("name", SCORERS)
def test_scorer_presets_match_the_reference(name):
    facts = REFERENCE[name]
    options = registry.methods.get(name).Options()
    assert options.prompt == facts.get("question", facts.get("template"))
    assert options.backend_path == facts["backend_path"]
    for field in ("positive", "negative", "levels", "weights"):
        expected = facts.get(field)
        assert getattr(options, field) == (tuple(expected) if expected is not None else None), field


def test_visual_prompt_training_defaults_match_the_reference():
    facts = REFERENCE["vp-owl2"]
    options = registry.methods.get("vp-owl2").Options()
    assert (options.vp_type, options.vp_size) == (facts["default_prompt"], facts["default_size"])
    assert (options.lr, options.stage2_lr) == (facts["learning_rate"], facts["second_stage_learning_rate"])


@pytest.mark.parametrize("dataset", sorted(REFERENCE["vp-owl2"]["recipes"]))
def test_visual_prompt_recipes_match_the_reference(dataset):
    recipe = REFERENCE["vp-owl2"]["recipes"][dataset]
    method = registry.methods.get("vp-owl2")()
    method.ctx = RunContext(dataset=dataset)  # what the engine's setup(ctx) gives
    assert method.recipe()[:2] == (recipe["batch_size"], recipe["epochs"])


def _count_from_shapes(kind: str, size: int, channels: int, side: int) -> int:
    """Values a prompt adds to a channels x side x side image (seed 000 section 3.3 and Table 1)."""
    if kind == "padding":  # a frame `size` px wide
        return channels * (side * side - (side - 2 * size) ** 2)
    if kind.startswith("patch"):
        return channels * size * size
    return channels * side * side  # full overlay


SHAPES = REFERENCE["vp-owl2"]["shapes"]
PROMPTS = [(kind, size) for kind in ("padding", "patch_center", "patch_topleft") for size in SHAPES["sizes"]]


@pytest.mark.parametrize("kind,size", PROMPTS + [("full", 0)])
def test_parameter_counts_follow_from_the_papers_shapes(kind, size):
    channels, side = SHAPES["channels"], SHAPES["image_size"]
    expected = _count_from_shapes(kind, size, channels, side)
    config = PromptConfig(kind, size, side)
    assert config.num_params() == expected
    assert sum(p.numel() for p in VisualPrompt(config, seed=0).parameters()) == expected
    stated = SHAPES["stated_full"] if kind == "full" else SHAPES["stated_patch"].get(str(size))
    if not kind == "padding":  # the paper's padding figure miscounts (see presets.toml)
        assert expected == stated, "the shapes no longer give the paper's own count"
