"""Security: no remote code unless asked for with a pinned revision, no unpickling of files,
plugins only from entry points or paths the user names, one writer per run folder, and
bit-identical predictions when a configuration runs twice on CPU."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
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

    with pytest.raises(IqaError, match="trust_remote_code=true and revision"):
        load_owl3(BackendSpec(arch="owl3-worker", path="mPLUG/mPLUG-Owl3-7B-240728", trust_remote_code=True,
                              worker_python=sys.executable))
    import transformers  # noqa: F401

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


@pytest.fixture
def malicious(tmp_path):
    """(write(path), marker): write(path) saves a state dict whose value runs code when unpickled."""
    import torch  # noqa: F401
    from conftest import live_pickle_writer

    return live_pickle_writer(tmp_path, key="pad_up")


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
    import transformers  # noqa: F401

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
    import transformers  # noqa: F401

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
            "--results", str(tmp_path), "--no-progress", "-o", "pause_after=1", "-o", f"pause_file={tmp_path / 'pause'}"]
    (tmp_path / "pause").touch()  # the first run holds its lock, paused after its first record, until killed
    first = _cli(args)
    try:
        deadline = time.time() + 120
        preds = []
        while time.time() < deadline and not preds:
            preds = [p for p in tmp_path.glob("runs/tiny/all-test/*/predictions.jsonl")
                     if p.read_text().count("\n") >= 1]
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
    import torch  # noqa: F401
    import transformers  # noqa: F401

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


# -- every file a user can name: a live malicious pickle through each entry point ----------------------
# pyiqa metric options (`-o metric_options='{"pretrained_model_path": FILE}'`) and pyiqa's weight cache are
# covered in tests/test_pyiqa_family.py (test_a_malicious_weight_path_option_is_refused_unread,
# test_a_malicious_weight_path_is_refused_by_a_run, test_a_malicious_file_in_the_weight_cache_is_refused).

# Option fields (method:field, nested fields dotted) that name a file or folder, and where each is tested.
# test_every_file_option_is_classified walks every registered method's options: a new one must be added.
FILE_OPTIONS = {
    # tested below with a live pickle
    "vp-owl2:prompt_path": "prompt", "vp-llava:prompt_path": "prompt",
    "softmax-owl2:backend_path": "backend", "softmax-owl2-qbench:backend_path": "backend",
    "qalign-owl2:backend_path": "backend", "softmax-llava:backend_path": "backend",
    "vp-owl2:backend_path": "backend", "vp-llava:backend_path": "backend", "q-adapt:backend_path": "backend",
    "mllm-prompt:backend_path": "backend", "mllm-prompt-fr:backend_path": "backend",
    "dog-iqa:judge.backend_path": "dog-iqa", "dog-iqa:segmenter.model": "dog-iqa", "dog-iqa:segmenter.checkpoint": "dog-iqa",
    "dog-iqa:segmenter.config": "dog-iqa", "q-adapt:qformer_path": "q-adapt",
    "promptiqa:weights": "promptiqa", "promptiqa:backbone_weights": "promptiqa",
    "pyiqa:<name>:metric_options": "tests/test_pyiqa_family.py",
    # not weights: nothing in them is loaded as code
    "promptiqa:prompt_file": "a CSV read by pandas; its images are decoded by PIL (open_rgb)",
    "q-adapt:instructions": "JSON text (json.loads); its images are decoded by PIL",
    "q-adapt:image_folder": "a folder of images decoded by PIL",
    # a served model's name on the server: sent in the request, never opened as a file
    **{f"{m}:served_model": "a model name sent to the server" for m in (
        "softmax-owl2", "softmax-owl2-qbench", "qalign-owl2", "softmax-llava", "vp-owl2", "vp-llava", "q-adapt",
        "mllm-prompt", "mllm-prompt-fr")},
    "dog-iqa:judge.served_model": "a model name sent to the server",
    # the parity check's local copy: loaded by the backend loaders (tested below with a live pickle)
    **{f"{m}:parity_path": "parity" for m in ("softmax-owl2", "softmax-owl2-qbench", "qalign-owl2", "softmax-llava")},
    # code by design, like --plugin: the user names the interpreter that runs the Owl3 worker
    **{f"{m}:{field}": "an interpreter the user chooses to run (README: Security)"
       for m, field in [("dog-iqa", "judge.worker_python"), *((m, "worker_python") for m in (
           "softmax-owl2", "softmax-owl2-qbench", "qalign-owl2", "softmax-llava", "vp-owl2", "vp-llava", "q-adapt",
           "mllm-prompt", "mllm-prompt-fr"))]},
}
_FILE_FIELD = re.compile(r"(^|_)(path|file|files|weights|checkpoint|model|folder|dir|python|instructions|config)$")


def _named_files(model_cls, prefix: str = ""):
    """Option fields typed str (or a dict of options) whose name says they name a file or folder."""
    import typing

    import pydantic

    for name, field in model_cls.model_fields.items():
        ann = field.annotation
        args = set(typing.get_args(ann)) or {ann}
        if isinstance(ann, type) and issubclass(ann, pydantic.BaseModel):
            yield from _named_files(ann, f"{prefix}{name}.")
        elif str in args and args <= {str, type(None)} and _FILE_FIELD.search(name):
            yield prefix + name
        elif typing.get_origin(ann) is dict and name.endswith("options"):
            yield prefix + name  # e.g. pyiqa's metric_options, which may hold paths


def _builtin_methods() -> dict[str, type]:
    out = {}
    for name in registry.methods.names():
        cls = registry.methods.get(name.replace("<name>", "piqe"))
        if cls.__module__.startswith("iqabench.methods."):
            out[name] = cls
    return out


def test_every_file_option_is_classified():
    found = {f"{name}:{field}" for name, cls in _builtin_methods().items() for field in _named_files(cls.Options)}
    assert found == set(FILE_OPTIONS), (sorted(found - set(FILE_OPTIONS)), sorted(set(FILE_OPTIONS) - found))


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """Tiny real models, good and poisoned copies, and live malicious pickles (proved live first)."""
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from conftest import live_pickle_writer

    from iqabench.models.tiny import tiny_model_path

    root = tmp_path_factory.mktemp("evil")
    pickle_file, marker = live_pickle_writer(root)  # proved live first

    def poisoned(arch: str, how: str) -> Path:
        """A copy of a tiny model whose weights are a pickle: as pytorch_model.bin, or renamed *.safetensors."""
        folder = root / f"{arch}-{how}"
        if not folder.exists():
            shutil.copytree(tiny_model_path(arch, root / "tiny"), folder)
            for shard in folder.glob("*.safetensors"):
                shard.unlink()
                if how == "renamed":
                    pickle_file(shard)
            if how == "bin":
                pickle_file(folder / "pytorch_model.bin", "lm_head.weight")
        return folder

    return {"root": root, "marker": marker, "pickle": pickle_file, "poisoned": poisoned}


def _refused(result, *needles: str) -> str:
    """Exit status 2, no traceback, exactly one error line (the last line), naming what it should."""
    err = result.stderr
    assert result.exit_code == 2, (result.exit_code, err, result.exception)
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("iqabench: error")]
    assert len(errors) == 1 and err.rstrip("\n").endswith(errors[0]), err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def _invoke(command: str, method: str, tiny_root: Path, results: Path, *args) -> object:
    from click.testing import CliRunner

    from iqabench.cli.main import cli

    return CliRunner().invoke(cli, [command, "--method", method, "--dataset", "tiny", "--data-root", str(tiny_root),
                                    "--results", str(results), "--no-progress", *map(str, args)])


def _opts(values: dict) -> list[str]:
    return [a for k, v in values.items() for a in ("-o", f"{k}={json.dumps(v) if not isinstance(v, str) else v}")]


# the hf-vlm backend (iqabench/models/hf_vlm.py) lets safetensors' own error out for a pickle renamed
# model.safetensors: a traceback, though nothing is unpickled. Fix described in the hardening report.


@pytest.mark.parametrize("method,how", [
    pytest.param(m, how)
    for m in sorted(k.split(":")[0] for k, v in FILE_OPTIONS.items() if v == "backend") for how in ("bin", "renamed")])
def test_a_poisoned_backend_folder_is_refused(method, how, evil, tiny_root, tmp_path):
    cls = registry.methods.get(method)
    folder = evil["poisoned"](cls.Options().backend, how)
    options = {**cls.contract_options(evil["root"] / "tiny"), "backend_path": str(folder)}
    command = "train" if issubclass(cls, TrainableMethod) else "run"  # a run of an untrained one stops before loading
    line = _refused(_invoke(command, method, tiny_root, tmp_path, *_opts(options)), str(folder))
    assert re.search(r"refused|not a safetensors file|cannot load the model", line), line
    assert not evil["marker"].exists()


@pytest.mark.parametrize("method", sorted(k.split(":")[0] for k, v in FILE_OPTIONS.items() if v == "parity"))
def test_a_poisoned_parity_folder_is_refused(method, evil, tiny_root, tmp_path):
    cls = registry.methods.get(method)
    folder = evil["poisoned"]("llava", "bin")
    options = {**cls.contract_options(evil["root"] / "tiny"), "parity_path": str(folder), "parity_backend": "llava",
               "parity_n": 2}
    line = _refused(_invoke("run", method, tiny_root, tmp_path, *_opts(options)), str(folder))
    assert re.search(r"refused|not a safetensors file|cannot load the model", line), line
    assert not evil["marker"].exists()


@pytest.mark.parametrize("method", ["vp-owl2", "vp-llava"])
@pytest.mark.parametrize("suffix,problem", [(".pth", "refused, not a plain tensor file"), (".pt", "refused"),
                                            (".safetensors", "not a safetensors file")])
def test_a_malicious_prompt_file_is_refused(method, suffix, problem, evil, tiny_root, tmp_path):
    cls = registry.methods.get(method)
    prompt = evil["pickle"](tmp_path / f"prompt{suffix}", "pad_up")
    options = {**cls.contract_options(evil["root"] / "tiny"), "prompt_path": str(prompt)}
    _refused(_invoke("run", method, tiny_root, tmp_path / "r", *_opts(options)), f"{prompt}: {problem}")
    assert not evil["marker"].exists()


def _trainable_builtins() -> list[str]:
    return sorted(n for n, c in _builtin_methods().items() if issubclass(c, TrainableMethod))


@pytest.mark.parametrize("method", _trainable_builtins())
def test_a_checkpoint_folder_holding_a_pickle_is_refused(method, evil, tiny_root, tmp_path):
    """--checkpoint DIR whose .safetensors files are pickles renamed (the json files are empty objects)."""
    cls = registry.methods.get(method)
    ckpt = tmp_path / "ckpt"
    for name in cls.checkpoint_files():
        if name.endswith(".safetensors"):
            evil["pickle"](ckpt / name)
        else:
            (ckpt / name).write_text("{}")
    line = _refused(_invoke("run", method, tiny_root, tmp_path / "r", "--checkpoint", ckpt,
                            *_opts(cls.contract_options(evil["root"] / "tiny"))), str(ckpt))
    assert "not a safetensors file" in line or "not a readable" in line, line
    assert not evil["marker"].exists()


def _stand_in_sam2_package(monkeypatch) -> list:
    """The PyPI `sam2` package (not installed here) as modules whose build_sam2 records being reached."""
    import types

    reached = []
    package, build, amg = (types.ModuleType(n) for n in ("sam2", "sam2.build_sam", "sam2.automatic_mask_generator"))
    build.build_sam2 = lambda *args, **kwargs: reached.append(args)
    amg.SAM2AutomaticMaskGenerator = lambda *args, **kwargs: None
    for module in (package, build, amg):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return reached


def test_dog_iqa_judge_and_segmenter_files_are_refused(evil, tiny_root, tmp_path, monkeypatch):
    reached = _stand_in_sam2_package(monkeypatch)
    base = registry.methods.get("dog-iqa").contract_options(evil["root"] / "tiny")
    judge, segmenter = dict(base["judge"]), dict(base["segmenter"])
    pt = evil["pickle"](tmp_path / "sam2.pt", "model")
    poisoned_judge = str(evil["poisoned"]("llava", "bin"))
    cases = [({"judge": {**judge, "backend_path": poisoned_judge}}, poisoned_judge),
             ({"segmenter": {**segmenter, "model": str(evil["poisoned"]("sam2", "bin"))}}, "pickled code or objects"),
             ({"segmenter": {**segmenter, "model": str(evil["poisoned"]("sam2", "renamed"))}}, "sam2-renamed"),
             ({"segmenter": {"backend": "sam2-package", "checkpoint": str(pt),
                             "config": "configs/sam2.1/sam2.1_hiera_t.yaml"}},
              f"{pt}: refused, not a plain tensor file")]
    for i, (change, needle) in enumerate(cases):
        options = {**base, **change}
        line = _refused(_invoke("run", "dog-iqa", tiny_root, tmp_path / f"r{i}", *_opts(options)), needle)
        assert re.search(r"refused|not a safetensors file|cannot load the model", line), line
        assert not evil["marker"].exists()
    assert reached == []  # the sam2 package never got the file
    import torch

    from iqabench.models.segmenter import Segmenter, SegmenterOptions

    good = tmp_path / "plain.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, str(good))
    Segmenter(SegmenterOptions(backend="sam2-package", checkpoint=str(good),
                               config="configs/sam2.1/sam2.1_hiera_t.yaml"))._load()
    assert len(reached) == 1  # a plain tensor file does reach it
    # a sam2 config is a name inside the sam2 package (hydra instantiates what a config names)
    for config in ("/tmp/evil.yaml", "../../evil.yaml", "configs/../../evil.yaml"):
        options = {**base, "segmenter": {"backend": "sam2-package", "checkpoint": str(pt), "config": config}}
        _refused(_invoke("run", "dog-iqa", tiny_root, tmp_path / "rc", *_opts(options)), "config")


def test_promptiqa_weight_files_are_refused(evil, tiny_root, tmp_path):
    cls = registry.methods.get("promptiqa")
    base = cls.contract_options(evil["root"] / "tiny")
    pth = evil["pickle"](tmp_path / "best_model.pth")
    renamed = evil["pickle"](tmp_path / "best_model.safetensors")
    _refused(_invoke("run", "promptiqa", tiny_root, tmp_path / "r1", *_opts({**base, "weights": str(pth)})),
             f"{pth}: refused, not a plain tensor file")
    _refused(_invoke("run", "promptiqa", tiny_root, tmp_path / "r2", *_opts({**base, "weights": str(renamed)})),
             str(renamed))
    _refused(_invoke("train", "promptiqa", tiny_root, tmp_path / "r3", *_opts({**base, "backbone_weights": str(pth)})),
             f"{pth}: refused, not a plain tensor file")
    assert not evil["marker"].exists()


def test_q_adapt_qformer_weights_are_safetensors_only(evil, tmp_path):
    """-o qformer_path=DIR is read from safetensors only; a pickle renamed model.safetensors is one line."""
    from iqabench.methods.q_adapt import qformer_init

    folder = tmp_path / "instructblip"
    evil["pickle"](folder / "model.safetensors", "query_tokens")
    (folder / "config.json").write_text(json.dumps({"model_type": "instructblip", "qformer_config": {}}))
    try:
        with pytest.raises(IqaError, match="model.safetensors"):
            qformer_init.read_tensors(str(folder))
    finally:
        assert not evil["marker"].exists()
