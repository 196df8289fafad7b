"""Security: no remote code unless asked for with a pinned revision, no unpickling of files,
plugins only from entry points or paths the user names, one writer per run folder, and
bit-identical predictions when a configuration runs twice on CPU."""
from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import iqabench
from iqabench import registry
from iqabench.api import TrainableMethod
from iqabench.errors import IqaError, NotAvailable

PACKAGE = Path(iqabench.__file__).parent
PLUGINS = Path(__file__).parent / "plugins"
# The one module that passes trust_remote_code on to transformers: the mPLUG-Owl3 worker, which runs in
# its own virtualenv, refuses unless the request carries trust_remote_code and a revision, and then passes
# the user's own flag (tested below). No module passes a literal True.
REMOTE_CODE_HOSTS = {"models/owl3_worker/worker.py"}


def _sources() -> dict[str, ast.Module]:
    return {p.relative_to(PACKAGE).as_posix(): ast.parse(p.read_text(), filename=str(p)) for p in PACKAGE.rglob("*.py")}


def _call_name(node: ast.Call) -> str:
    parts = []
    func = node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


# -- remote code ----------------------------------------------------------------------------------

def test_no_code_path_turns_remote_code_on_by_default():
    found = []
    for name, tree in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code" and _is_true(node.value):
                found.append((name, node.value.lineno))
            elif isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "trust_remote_code" \
                    and _is_true(node.value):
                found.append((name, node.lineno))
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if isinstance(key, ast.Constant) and key.value == "trust_remote_code" and _is_true(value):
                        found.append((name, value.lineno))
    assert not found, found
    for name in REMOTE_CODE_HOSTS:  # there, only after the explicit flag and the revision were checked
        text = (PACKAGE / name).read_text()
        first_use = text.index("trust_remote_code=remote")
        assert text.index('if not spec.get("trust_remote_code")') < first_use
        assert text.index("if not revision") < first_use


def test_remote_code_needs_the_flag_and_a_pinned_revision(tmp_path):
    from iqabench.models.backend import BackendSpec, load_backend
    from iqabench.plan import resolve_method

    assert BackendSpec().trust_remote_code is False
    with pytest.raises(IqaError, match="pinned revision"):
        load_backend(BackendSpec(arch="hf-vlm", path=str(tmp_path), trust_remote_code=True))
    for method in ("softmax-llava", "vp-owl2", "qalign-owl2"):
        assert resolve_method(method, {}).options.trust_remote_code is False
        with pytest.raises(IqaError, match="revision"):
            resolve_method(method, {"trust_remote_code": True})
    from iqabench.models.owl3_worker.client import load as load_owl3

    with pytest.raises(IqaError, match="trust_remote_code=true and judge.revision"):
        load_owl3(BackendSpec(arch="owl3-worker", path="mPLUG/mPLUG-Owl3-7B-240728", trust_remote_code=True),
                  python=sys.executable)
    pytest.importorskip("transformers")
    from iqabench.models.owl3_worker.worker import Owl3Host

    with pytest.raises(PermissionError, match="trust_remote_code=true explicitly"):
        Owl3Host({"path": str(tmp_path)}, "cpu")
    with pytest.raises(PermissionError, match="pinned revision"):
        Owl3Host({"path": str(tmp_path), "trust_remote_code": True}, "cpu")


# -- no unpickling ----------------------------------------------------------------------------------

def test_the_package_never_unpickles_nor_saves_pickles():
    forbidden = {"pickle.load", "pickle.loads", "pickle.Unpickler", "joblib.load", "dill.load", "pd.read_pickle",
                 "pandas.read_pickle", "torch.save", "pickle.dump", "joblib.dump", "np.save", "numpy.save"}
    bad = []
    for name, tree in _sources().items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            call = _call_name(node)
            kwargs = {k.arg: k.value for k in node.keywords}
            if call in forbidden:
                bad.append((name, node.lineno, call))
            elif call == "torch.load" and not _is_true(kwargs.get("weights_only")):
                bad.append((name, node.lineno, "torch.load without weights_only=True"))
            elif call in ("np.load", "numpy.load") and "allow_pickle" in kwargs and not (
                    isinstance(kwargs["allow_pickle"], ast.Constant) and kwargs["allow_pickle"].value is False):
                bad.append((name, node.lineno, "np.load with allow_pickle"))
    assert not bad, bad


def test_trained_checkpoints_are_safetensors():
    """Built-in trainable methods save tensors as safetensors (test plugins may save what they like)."""
    trainable = [registry.methods.get(n) for n in registry.methods.names()
                 if not n.endswith(":<name>") and issubclass(registry.methods.get(n), TrainableMethod)
                 and registry.methods.get(n).__module__.startswith("iqabench.methods.")]
    assert {c.name for c in trainable} >= {"brisque-svr", "vp-owl2", "vp-llava"}
    for cls in trainable:
        files = cls.checkpoint_files()
        assert any(f.endswith(".safetensors") for f in files), cls.name
        assert all(f.endswith((".safetensors", ".json")) for f in files), (cls.name, files)


class _Payload:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture
def malicious(tmp_path):
    """(write(path), marker): write(path) saves a state dict whose value runs code when unpickled."""
    torch = pytest.importorskip("torch")
    marker = tmp_path / "PWNED"

    def write(path: Path, key: str = "pad_up") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({key: _Payload(marker)}, str(path))
        return path

    # the payload is live: a plain unpickling loader would run it
    probe = write(tmp_path / "probe.pt")
    torch.load(str(probe), weights_only=False)
    assert marker.exists()
    marker.unlink()
    return write, marker


def test_visual_prompt_loader_refuses_a_malicious_pickle(malicious, tmp_path):
    write, marker = malicious
    from iqabench.methods.visual_prompt import read_prompt_file

    for suffix in (".pt", ".pth", ".bin"):
        with pytest.raises(IqaError, match="refused, not a plain tensor file") as err:
            read_prompt_file(write(tmp_path / f"prompt{suffix}"))
        assert str(err.value).startswith(str(tmp_path / f"prompt{suffix}"))
        assert "\n" not in str(err.value) and "weights_only=False" not in str(err.value)
    assert not marker.exists()


def test_pyiqa_weight_guard_refuses_a_malicious_pickle(malicious, tmp_path):
    import torch

    write, marker = malicious
    from iqabench.models.pyiqa_support import _check_tensors_only

    for suffix in (".pth", ".pt", ".ckpt", ".bin"):
        with pytest.raises(NotAvailable, match="refused, not a plain tensor file"):
            _check_tensors_only(write(tmp_path / f"weights{suffix}", key="params"))
    assert not marker.exists()
    good = tmp_path / "good.pth"
    torch.save({"params": {"w": torch.zeros(2)}}, str(good))
    _check_tensors_only(good)  # plain tensors pass


def test_owl2_weights_loader_refuses_a_malicious_pickle(malicious, tmp_path):
    write, marker = malicious
    pytest.importorskip("transformers")
    from iqabench.models.owl2.weights import load_owl2
    from iqabench.models.tiny_owl2 import build_tiny_owl2

    folder = build_tiny_owl2(tmp_path / "owl2", seed=0)
    for shard in folder.glob("*.safetensors"):
        shard.unlink()
    write(folder / "pytorch_model.bin", key="model.norm.weight")
    with pytest.raises(IqaError, match="pytorch_model.bin: refused, not a plain tensor file") as err:
        load_owl2(str(folder))
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_transformers_backend_refuses_a_malicious_pickle(malicious, tmp_path):
    write, marker = malicious
    pytest.importorskip("transformers")
    from iqabench.models.backend import BackendSpec, load_backend
    from iqabench.models.tiny_llava import build_tiny_llava

    folder = build_tiny_llava(tmp_path / "llava", seed=0)
    for shard in folder.glob("*.safetensors"):
        shard.unlink()
    write(folder / "pytorch_model.bin", key="lm_head.weight")
    with pytest.raises(IqaError, match="cannot load the model or processor") as err:
        load_backend(BackendSpec(arch="llava", path=str(folder)))
    assert "\n" not in str(err.value)
    assert not marker.exists()


# -- plugins ------------------------------------------------------------------------------------------

EVIL_PLUGIN = '''
from pathlib import Path
Path({marker!r}).write_text("imported")
from iqabench.api import Method, MethodInfo
from iqabench.registry import register_method


@register_method
class Evil(Method):
    name = "evil"
    info = MethodInfo(kind="classic", description="must never load by itself")

    def score(self, samples):
        return [0.0 for _ in samples]
'''


def test_plugins_load_only_from_entry_points_or_named_paths(tmp_path):
    script = Path(sys.executable).with_name("iqabench")
    if not script.exists():
        pytest.skip("the iqabench console script is not installed")
    marker = tmp_path / "IMPORTED"
    code = EVIL_PLUGIN.format(marker=str(marker))
    # files a careless loader might pick up: in the working folder, a plugins folder, the data root
    for rel in ("iqabench_plugins.py", "iqabench_plugin_evil.py", "plugins/evil.py", "plugins/__init__.py",
                "data/evil.py", "data/tiny/evil.py", "conftest.py", "iqabench.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(code)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    ran = subprocess.run([str(script), "run", "--method", "evil", "--dataset", "tiny", "--data-root", "data"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 2 and "unknown method 'evil'" in ran.stderr, ran.stderr
    assert not marker.exists()
    # named by the user: loaded (and registered)
    named = subprocess.run([str(script), "--plugin", str(tmp_path / "plugins" / "evil.py"), "run", "--method", "evil",
                            "--dataset", "nowhere"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert marker.exists()
    assert named.returncode == 2 and "unknown dataset 'nowhere'" in named.stderr, named.stderr


# -- one writer per run folder -------------------------------------------------------------------------

def _cli(args, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "iqabench.cli.main", "--plugin", str(PLUGINS / "tiny_dataset_plugin.py"),
           "--plugin", str(PLUGINS / "slow_method.py"), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}, **kw)


def test_a_second_process_on_the_same_run_fails_at_once(tiny_root, tmp_path):
    args = ["run", "--method", "slow-sharpness", "--dataset", "tiny", "--split", "all", "--data-root", str(tiny_root),
            "--results", str(tmp_path), "--no-progress", "-o", "delay=0.5"]
    first = _cli(args)
    try:
        deadline = time.time() + 120
        preds = []
        while time.time() < deadline and not preds:
            preds = [p for p in tmp_path.glob("runs/tiny/all-test/*/predictions.jsonl") if p.read_text().count("\n") >= 1]
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        assert preds, "the first run saved nothing"
        manifest = (preds[0].parent / "manifest.json").read_bytes()
        second = _cli(args)
        out, err = second.communicate(timeout=120)  # a hang guard: it must not wait for the lock
        assert second.returncode == 2, err
        assert err.strip().splitlines() == [err.strip()] and "Traceback" not in err
        assert "another iqabench process is writing this run (lock held)" in err and str(tmp_path) in err
        assert (preds[0].parent / "manifest.json").read_bytes() == manifest  # the second touched nothing
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    ids = [json.loads(line)["id"] for line in preds[0].read_text().splitlines() if line.endswith("}")]
    assert ids and len(ids) == len(set(ids))
    assert sorted(p.name for p in preds[0].parent.glob("predictions*")) == ["predictions.jsonl"]


# -- determinism --------------------------------------------------------------------------------------

def test_one_config_run_twice_gives_bit_identical_predictions(tiny_root, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from iqabench.models.tiny_llava import build_tiny_llava

    model = build_tiny_llava(tmp_path / "llava", seed=4)
    outputs = []
    for attempt in ("a", "b"):  # two processes, as two separate invocations would be
        proc = _cli(["run", "--method", "softmax-llava", "--dataset", "tiny", "--split", "all", "--data-root",
                     str(tiny_root), "--results", str(tmp_path / attempt), "--no-progress", "--batch-size", "4",
                     "--limit", "16", "-o", f"backend_path={model}"])
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        run_dir = next((tmp_path / attempt).glob("runs/tiny/all-test/*/"))
        records = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
        outputs.append((run_dir.name, [(r["id"], r["score"], r["error"]) for r in records]))
    (key_a, preds_a), (key_b, preds_b) = outputs
    assert key_a == key_b and len(preds_a) == 16
    assert all(err is None for _, _, err in preds_a)
    assert preds_a == preds_b  # floats compared exactly: bit-identical
    assert len({score for _, score, _ in preds_a}) > 1  # the scores do depend on the image
