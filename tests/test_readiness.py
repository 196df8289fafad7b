"""The one check of whether a run can start here (iqabench.readiness), behind multi-cell `run`
and the suites' cells."""
from __future__ import annotations

from iqabench import registry
from iqabench.config import RunConfig
from iqabench.readiness import why_not_runnable


def test_a_misspelt_method_is_the_one_reason_and_nothing_else_is_asked(tmp_path):
    cfg = RunConfig(method="no-such-method", dataset="no-such-set", data_root=tmp_path)
    for read_data in (True, False):
        [reason] = why_not_runnable(cfg, read_data=read_data)
        assert "no-such-method" in reason and "no-such-set" not in reason


def test_without_reading_data_a_missing_method_does_not_hide_a_missing_dataset(tmp_path, test_plugins, monkeypatch):
    cls = registry.methods.get("slow-sharpness")
    monkeypatch.setattr(cls, "check_available", classmethod(lambda c, options=None: "no weights here"))
    # tiny is built on first use: present; each member of the training mix is asked
    cfg = RunConfig(method="slow-sharpness", dataset="tiny", train_dataset="koniq10k+tiny", data_root=tmp_path / "empty")
    assert why_not_runnable(cfg, read_data=False) == (
        "method slow-sharpness cannot run here: no weights here", f"dataset koniq10k not found under {tmp_path / 'empty'}")


def test_reading_data_checks_the_split_and_passes_a_run_that_can_start(tiny_root, tmp_path):
    common = dict(method="slow-sharpness", dataset="tiny", data_root=tiny_root, results=tmp_path / "r")
    assert why_not_runnable(RunConfig(**common, split="all")) == ()
    [reason] = why_not_runnable(RunConfig(**common, split="no-such-split"))
    assert "no-such-split" in reason
    assert why_not_runnable(RunConfig(**common, split="no-such-split"), read_data=False) == ()  # not read
