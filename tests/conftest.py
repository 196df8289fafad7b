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


class Payload:
    """Unpickling this runs code: it writes a marker file (the security tests' live pickle)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def live_pickle_writer(folder: Path, key: str = "weight"):
    """(write(path, key=...), marker): write saves a torch file whose value runs code when unpickled.
    The payload is proved live first (a plain unpickling loader runs it), then the marker removed."""
    import torch

    marker = Path(folder) / "PWNED"

    def write(path: Path, key: str = key) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({key: Payload(marker)}, str(path))
        return path

    probe = write(Path(folder) / "probe.pt")
    torch.load(str(probe), weights_only=False)
    assert marker.exists(), "the payload must be live for a refusal to mean anything"
    marker.unlink()
    return write, marker


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A data root holding the tiny set (built once per session)."""
    root = tmp_path_factory.mktemp("data")
    TINY_CARD.load(root)
    return root


# The embedded `synthetic` set takes a minute or more to build on 2 cores. When the collected tests
# need it, a background process starts building it as soon as collection ends, beside the tests
# that do not need it; the fixture then waits on the builder's own lock (the build is locked and
# resumable, so waiting is what a second builder does anyway).
_BUILD: dict = {}


def pytest_collection_modifyitems(session, config, items):
    if not any("synthetic_root" in getattr(item, "fixturenames", ()) for item in items):
        return
    # the tests that need the set run last, so the build overlaps as much of the rest as it can
    items.sort(key=lambda item: "synthetic_root" in getattr(item, "fixturenames", ()))
    import subprocess
    import sys
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="iqabench-synthetic-"))
    code = ("import sys; from pathlib import Path; from iqabench import registry; "
            "registry.datasets.get('synthetic').build(Path(sys.argv[1]) / 'synthetic', progress=False)")
    _BUILD["root"] = root
    _BUILD["process"] = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True)


def pytest_unconfigure(config):
    process = _BUILD.get("process")
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
    if "root" in _BUILD:
        import shutil

        shutil.rmtree(_BUILD["root"], ignore_errors=True)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A data root holding the embedded `synthetic` set (all 720 images), built once per session."""
    process = _BUILD.get("process")
    if process is None:  # collected another way (e.g. by a plugin): build here
        root = tmp_path_factory.mktemp("synthetic-data")
        registry.datasets.get("synthetic").build(root / "synthetic", progress=False)
        return root
    _out, err = process.communicate()
    root = _BUILD["root"]
    if process.returncode != 0:  # the same build in-process shows its error (it resumes what was done)
        registry.datasets.get("synthetic").build(root / "synthetic", progress=False)
    return root
