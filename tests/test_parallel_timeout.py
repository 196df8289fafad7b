"""The distributed timeout: a RunConfig field, with IQABENCH_DIST_TIMEOUT_MINUTES as the user's
override of the default, read when a run starts (not when iqabench.parallel is imported)."""
from __future__ import annotations

import datetime

import pytest

from iqabench import parallel
from iqabench.config import RunConfig
from iqabench.errors import IqaError


def test_the_configured_value_wins_then_the_variable_then_a_day(monkeypatch):
    monkeypatch.delenv("IQABENCH_DIST_TIMEOUT_MINUTES", raising=False)
    assert parallel.timeout_minutes() == 24 * 60
    monkeypatch.setenv("IQABENCH_DIST_TIMEOUT_MINUTES", "7.5")  # set after import: still seen
    assert parallel.timeout_minutes() == 7.5
    assert parallel.timeout_minutes(3) == 3.0


@pytest.mark.parametrize("text", ["soon", "0", "-5", "nan"])
def test_a_bad_variable_is_one_line_naming_it(monkeypatch, text):
    monkeypatch.setenv("IQABENCH_DIST_TIMEOUT_MINUTES", text)
    with pytest.raises(IqaError, match=r"IQABENCH_DIST_TIMEOUT_MINUTES=.*must be a number of minutes above 0"):
        parallel.timeout_minutes()


def test_run_config_refuses_a_timeout_that_is_not_positive():
    with pytest.raises(IqaError, match="dist_timeout_minutes must be above 0"):
        RunConfig(method="m", dataset="d", dist_timeout_minutes=0)


def test_the_process_group_waits_as_configured(monkeypatch):
    import torch.distributed as dist

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("IQABENCH_DIST_TIMEOUT_MINUTES", "9")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group",
                        lambda backend, timeout: seen.update(backend=backend, timeout=timeout))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(parallel, "_WORLD", None)
    world = parallel.current(2.5)
    assert (world.rank, world.size) == (1, 2)
    assert seen == {"backend": "gloo", "timeout": datetime.timedelta(minutes=2.5)}
    parallel.current()
    assert seen["timeout"] == datetime.timedelta(minutes=9)
