"""Offline mode is an argument of the command (iqabench.hub.no_downloads), never written into os.environ."""
from __future__ import annotations

import os

from iqabench import hub


def test_no_downloads_holds_for_the_block_only_and_leaves_the_environment_alone(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = dict(os.environ)
    assert not hub.offline()
    with hub.no_downloads():
        assert hub.offline()
        with hub.no_downloads(False):  # an inner "may download" does not undo an outer "never"
            assert hub.offline()
        assert hub.child_environment({"A": "1"}) == {"A": "1", "HF_HUB_OFFLINE": "1"}
        assert dict(os.environ) == before
    assert not hub.offline()
    with hub.no_downloads(False):
        assert not hub.offline()
    assert hub.child_environment({"A": "1"}) == {"A": "1"}


def test_the_users_own_setting_is_read_at_call_time(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hub.offline()


def test_an_uncached_hub_model_is_not_available_when_the_command_never_downloads(monkeypatch):
    from iqabench.methods import softmax

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    options = softmax.SoftmaxLlava.Options(backend_path="iqabench-test/never-downloaded-model")
    assert softmax.SoftmaxLlava.check_available(options) is None  # it could be downloaded
    with hub.no_downloads():
        why = softmax.SoftmaxLlava.check_available(options)
    assert why and "iqabench-test/never-downloaded-model" in why and hub.OFFLINE_NOTE in why
