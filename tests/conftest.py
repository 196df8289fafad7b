"""Shared fixtures: offline settings, the test plugins (registered for the session, then undone), a
scratch registry for tests that register, and the built `synthetic` set.

No test registers at import: the registry after collection must equal what the install registers
(checked below), and a test that registers a method, dataset or backend does it inside
`scratch_registry` (a test that changes the registry without it fails).
There is no tests/__init__.py on purpose: pyiqa installs a top-level `tests` package.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402  (declared by the test extra: a broken install fails here, it does not skip)

torch.set_num_threads(1)

from iqabench import registry  # noqa: E402
from iqabench.registry import load_plugin  # noqa: E402

PLUGINS = Path(__file__).parent / "plugins"
# Published metadata files beside the checkout (not redistributed here). Tests marked needs_shared_data
# skip without them, except under IQABENCH_REQUIRE_SHARED=1 (set by .ci/run), where they fail.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "reference" / "data"
_INSTALLED: dict = {}  # the registry as the install makes it, before any test module is imported


def pytest_configure(config):
    _INSTALLED["snapshot"] = registry.snapshot()


def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_shared_data") and not SHARED_DATA.is_dir():
        if os.environ.get("IQABENCH_REQUIRE_SHARED") == "1":
            pytest.fail(f"{SHARED_DATA} not present, and IQABENCH_REQUIRE_SHARED=1 requires it", pytrace=False)
        pytest.skip(f"{SHARED_DATA} not present")


def pytest_collection_finish(session):
    added = _INSTALLED["snapshot"].added_since()
    if added:
        raise pytest.UsageError(f"test modules register at import: {', '.join(added)}; register inside the "
                                "scratch_registry fixture (tests/conftest.py)")


@pytest.fixture(scope="session", autouse=True)
def test_plugins():
    """The test plugins, loaded as a user's --plugin files are: the `tiny` dataset (tiny_dataset_plugin.py)
    and the `slow-sharpness` method (slow_method.py). Undone when the session ends."""
    with registry.scratch():
        load_plugin(str(PLUGINS / "tiny_dataset_plugin.py"))
        load_plugin(str(PLUGINS / "slow_method.py"))
        yield


@pytest.fixture
def scratch_registry():
    """The registry module, for a test that registers: whatever it registers is undone after it."""
    with registry.scratch():
        yield registry


@pytest.fixture(autouse=True)
def _registry_unchanged(request):
    """A test that registers without `scratch_registry` fails (and its registrations are undone)."""
    if "scratch_registry" in request.fixturenames:
        yield
        return
    before = registry.snapshot()
    yield
    added = before.added_since()
    if added:
        registry.restore(before)
        pytest.fail(f"{request.node.nodeid} registers {', '.join(added)} outside the scratch_registry fixture")


def pytest_sessionfinish(session, exitstatus):
    added = _INSTALLED["snapshot"].added_since() if "snapshot" in _INSTALLED else []
    if added:  # a module- or session-scoped fixture registered and did not undo it
        print(f"\nconftest: registrations left after the session: {', '.join(added)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
def tiny_root(tmp_path_factory, test_plugins) -> Path:
    """A data root holding the tiny set (built once per session)."""
    root = tmp_path_factory.mktemp("data")
    registry.datasets.get("tiny").load(root)
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
