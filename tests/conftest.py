"""Shared fixtures: offline settings, a tiny dataset registered like a plugin's, the built `synthetic` set.

There is no tests/__init__.py on purpose: pyiqa installs a top-level `tests` package.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the engine tests do not need torch
    pass

from iqabench import registry  # noqa: E402
from iqabench.registry import load_plugin  # noqa: E402

PLUGINS = Path(__file__).parent / "plugins"
load_plugin(str(PLUGINS / "tiny_dataset_plugin.py"))
load_plugin(str(PLUGINS / "slow_method.py"))
TINY_CARD = registry.datasets.get("tiny")


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A data root holding the tiny set (built once per session)."""
    root = tmp_path_factory.mktemp("data")
    TINY_CARD.load(root)
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A data root holding the embedded `synthetic` set, built once per session (about a minute)."""
    root = tmp_path_factory.mktemp("synthetic-data")
    registry.datasets.get("synthetic").build(root / "synthetic", progress=False)
    return root
