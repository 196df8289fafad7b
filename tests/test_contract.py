"""Every registered method passes the same contract, the moment it is registered (cf. timm's test_models).

A method either runs offline (on tiny random models it builds for itself through
`contract_options`) and then: scores a tiny dataset, one finite float per image, records
everything, and resumes with nothing scored twice; or it says in one line why it cannot run here
and the runner refuses it at once with that line.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest

from iqabench import registry
from iqabench.api import MethodInfo, TrainableMethod
from iqabench.errors import NotAvailable
from iqabench.run import RunConfig, run
from iqabench.train import TrainConfig, train


def method_names() -> list[str]:
    names = [n for n in registry.methods.names() if not n.endswith(":<name>")]
    family_aliases = [a for a, target in registry.methods.aliases().items() if ":" in target]
    return sorted(set(names) | set(family_aliases))


@pytest.mark.parametrize("name", method_names())
def test_method_contract(name, tiny_root, tmp_path):
    cls = registry.methods.get(name)
    assert isinstance(cls.info, MethodInfo) and cls.info.kind in ("zero-shot", "trainable", "classic")
    assert cls.info.description
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
    first = run(cfg, on_log=lambda m: None)
    m = first.metrics
    assert m["n"] == 5 and m["n_failed"] == 0 and first.scored_now == 5, m.get("failures_by_kind")
    preds = pd.read_csv(first.run_dir / "predictions.csv")
    assert len(preds) == 5 and all(math.isfinite(v) for v in preds["score"])
    again = run(cfg, on_log=lambda m: None)
    assert again.scored_now == 0 and again.run_dir == first.run_dir
    assert again.metrics["srcc"] == m["srcc"]


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
