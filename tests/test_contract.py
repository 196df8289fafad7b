"""Every registered method passes the same contract, the moment it is registered (cf. timm's test_models).

A method either runs offline (on tiny random models it builds for itself through
`contract_options`) and then: scores a tiny dataset, one finite float per image, records
everything, and resumes with nothing scored twice; or it says in one line why it cannot run here
and the runner refuses it at once with that line.

What a method claims in its `info` is checked too: its scores lie inside `score_range` where it
declares one; it is given the reference image exactly when it says `needs_reference`; and, where
its scores are real rather than a random model's (a weight-free full-reference metric), an image
scored against itself comes out best in the direction `higher_better` claims.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from iqabench import registry
from iqabench.api import Method, MethodInfo, Options, RunContext, Sample, TrainableMethod
from iqabench.errors import NotAvailable
from iqabench.plan import build_run_plan
from iqabench.run import RunConfig, run
from iqabench.train import TrainConfig, train


def method_names() -> list[str]:
    names = [n for n in registry.methods.names() if not n.endswith(":<name>")]
    family_aliases = [a for a, target in registry.methods.aliases().items() if ":" in target]
    return sorted(set(names) | set(family_aliases))


def _record_references(cls, monkeypatch) -> list[bool]:
    """Whether each sample the method scores carries a reference image (its own score, wrapped)."""
    given: list[bool] = []
    original = cls.score

    def score(self, samples):
        given.extend(s.reference is not None for s in samples)
        return original(self, samples)

    monkeypatch.setattr(cls, "score", score)
    return given


@pytest.mark.parametrize("name", method_names())
def test_method_contract(name, tiny_root, tmp_path, monkeypatch):
    cls = registry.methods.get(name)
    assert isinstance(cls.info, MethodInfo) and cls.info.kind in ("zero-shot", "trainable", "classic")
    assert cls.info.description
    if cls.info.score_range is not None:
        lo, hi = cls.info.score_range
        assert lo < hi, f"{name}: score_range {cls.info.score_range} is empty"
    options = cls.contract_options(tmp_path / "models")
    results = tmp_path / "results"
    if options is None:  # the method says it cannot run offline: it must say why, and be refused
        reason = cls.check_available(cls.Options())
        assert reason and "\n" not in reason.strip(), f"{name} must say in one line why it cannot run"
        with pytest.raises(NotAvailable):
            run(RunConfig(method=name, dataset="tiny", data_root=tiny_root, results=results, options=options or {},
                          progress=False), on_log=lambda m: None)
        return
    assert cls.check_available(cls.Options(**options)) is None, "contract_options must make the method runnable"
    common = dict(method=name, dataset="tiny", data_root=tiny_root, results=results, options=options)
    checkpoint = None
    if issubclass(cls, TrainableMethod):
        checkpoint, summary = train(TrainConfig(**common, limit=8), on_log=lambda m: None)
        for file in cls.checkpoint_files():
            assert (checkpoint / file).is_file()
        assert summary["n_failed_images"] == 0
    cfg = RunConfig(**common, limit=5, batch_size=2, progress=False, n_boot=20, checkpoint=checkpoint)
    given_reference = _record_references(cls, monkeypatch)
    first = run(cfg, on_log=lambda m: None)
    m = first.metrics
    # the runner records a score outside the declared score_range as that image's failure ("range: ...")
    assert m["n"] == 5 and m["n_failed"] == 0 and first.scored_now == 5, (
        f"{name} (score_range {cls.info.score_range}): {m.get('failures_by_kind')}")
    preds = pd.read_csv(first.run_dir / "predictions.csv")
    assert len(preds) == 5 and all(math.isfinite(v) for v in preds["score"])
    assert given_reference and set(given_reference) == {cls.info.needs_reference}, (
        f"{name} says needs_reference={cls.info.needs_reference}; samples carried one: {given_reference}")
    again = run(cfg, on_log=lambda m: None)
    assert again.scored_now == 0 and again.run_dir == first.run_dir
    assert again.metrics["srcc"] == m["srcc"]


class _RangeOptions(Options):
    outside: tuple[str, ...] = ()  # images scored 1.5, outside the declared [0, 1]


def test_a_score_outside_the_declared_range_is_that_images_failure(scratch_registry, tiny_root, tmp_path):
    @scratch_registry.register_method
    class Bounded(Method):
        name = "contract-bounded"
        info = MethodInfo(kind="classic", description="claims [0, 1] (test)", score_range=(0.0, 1.0))
        Options = _RangeOptions

        def score(self, samples):
            return [1.5 if s.id in self.options.outside else 1.0 for s in samples]  # 1.0: the closed end

    common = dict(method="contract-bounded", dataset="tiny", data_root=tiny_root, results=tmp_path, limit=4,
                  progress=False, n_boot=10)
    ids = build_run_plan(RunConfig(**common)).ids
    cfg = RunConfig(**common, options={"outside": [ids[1]]})
    m = run(cfg, on_log=lambda m: None).metrics
    assert m["n_failed"] == 1 and m["n_scored"] == 3 and m["failures_by_kind"] == {"range": 1}
    preds = pd.read_csv(Path(m["run_dir"]) / "predictions.csv").set_index("id")
    assert preds.loc[ids[1], "error"] == "range: 1.5 outside the method's declared score_range [0, 1]"
    assert preds.drop(ids[1])["score"].tolist() == [1.0, 1.0, 1.0]


def _real_full_reference_methods() -> list[str]:
    """Full-reference metrics whose scores need no weights: their direction can be checked on any image."""
    return [n for n in method_names() if (info := registry.methods.get(n).info).needs_reference
            and info.kind == "classic" and info.needs_weights is None]


@pytest.mark.parametrize("name", _real_full_reference_methods())
def test_an_image_against_itself_scores_best_in_the_claimed_direction(name, tiny_root, tmp_path):
    cls = registry.methods.get(name)
    options = cls.contract_options(tmp_path / "models")
    method = cls(cls.Options(**(options or {})))
    reference = Image.open(next((tiny_root / "tiny" / "refs").glob("*.png"))).convert("RGB")
    pixels = np.asarray(reference, dtype=np.float64)
    noisy = np.clip(pixels + np.random.default_rng(0).normal(0, 25, pixels.shape), 0, 255).astype(np.uint8)
    blurred = reference.resize((16, 16), Image.BILINEAR).resize(reference.size, Image.BILINEAR)
    method.setup(RunContext())
    try:
        same, *distorted = method.score([Sample("same", reference, reference=reference),
                                         Sample("noisy", Image.fromarray(noisy), reference=reference),
                                         Sample("blurred", blurred, reference=reference)])
    finally:
        method.teardown()
    best = max if cls.info.higher_better else min
    assert best([same, *distorted]) == same, (
        f"{name} says higher_better={cls.info.higher_better}, yet scores itself {same} and distorted {distorted}")


def test_every_builtin_entry_point_resolves():
    """A broken entry point must fail here rather than vanish from `iqabench list`."""
    import importlib.metadata

    for ep in importlib.metadata.entry_points(group="iqabench.methods"):
        assert ep.load() is not None
    names = registry.datasets.names()
    assert "synthetic" in names  # the shipped cards were found
    for name in names:
        assert registry.datasets.get(name).name == name


def test_not_available_is_raised_for_missing_weights(tiny_root, tmp_path):
    with pytest.raises(NotAvailable, match="needs weight file niqe_modelparameters.mat"):
        run(RunConfig(method="niqe", dataset="tiny", data_root=tiny_root, results=tmp_path, progress=False),
            on_log=lambda m: None)
