"""Hardening, round three, continued (issue 20): the documented launch commands import nothing from
the working folder, run folders are checked before they are scored, option files name files inside
their own folder, and every refusal is one line naming the file and the problem."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iqabench.errors import IqaError

ROOT = Path(__file__).resolve().parents[1]


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


# -- the data-parallel launch commands -----------------------------------------------------------

HOSTILE = "from pathlib import Path\nPath(__file__).with_name('ran').write_text('imported')\n" \
          "raise SystemExit('hostile module imported from the working folder')\n"


def test_python_dash_m_main_imports_nothing_from_the_working_folder(tmp_path):
    # torchrun and `accelerate launch -m` run `python -m iqabench.cli.main`, which puts cwd first on sys.path
    for name in ("filelock", "click"):  # filelock: imported by `list methods`; click: by main.py itself
        (tmp_path / f"{name}.py").write_text(HOSTILE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    done = subprocess.run([sys.executable, "-m", "iqabench.cli.main", "--results", str(tmp_path / "r"), "list",
                           "methods"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "ran").exists()
    assert "piqe" in done.stdout


def test_the_readme_torchrun_form_runs_the_script_on_two_ranks_from_a_hostile_folder(tiny_root, tmp_path):
    # the README's form, `torchrun --no-python iqabench run ...`, started where a filelock.py lies
    (tmp_path / "filelock.py").write_text(HOSTILE)
    plugins = ROOT / "tests" / "plugins"
    script = Path(sys.executable).with_name("iqabench")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python",
           str(script), "--plugin", str(plugins / "tiny_dataset_plugin.py"), "--plugin", str(plugins / "slow_method.py"),
           "run", "--method", "slow-sharpness", "--dataset", "tiny", "--split", "all", "--data-root", str(tiny_root),
           "--results", str(tmp_path / "r"), "--no-progress", "--limit", "6"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / "ran").exists()
    [metrics] = list((tmp_path / "r").glob("runs/*/*/*/metrics.json"))
    assert json.loads(metrics.read_text())["n_scored"] == 6
    assert sorted(p.name for p in metrics.parent.glob("predictions*.jsonl")) == [
        "predictions.rank0-of2.jsonl", "predictions.rank1-of2.jsonl"]


def test_the_readme_launch_commands_do_not_use_python_dash_m():
    text = (ROOT / "README.md").read_text()
    launches = [line.strip() for line in text.splitlines() if line.strip().startswith(("torchrun ", "accelerate "))]
    assert len(launches) == 2 and not any(" -m " in line for line in launches), launches
    assert "torchrun --standalone --nproc_per_node 4 --no-python iqabench run" in text
    assert "accelerate launch --multi_gpu --num_processes 4 --no_python iqabench run" in text


# -- `iqabench score RUN_DIR` checks what it reads ------------------------------------------------

@pytest.fixture
def finished_run(tiny_root, tmp_path):
    from iqabench.run import RunConfig, run

    result = run(RunConfig(method="slow-sharpness", dataset="tiny", split="all", data_root=tiny_root,
                           results=tmp_path / "r", device="cpu", progress=False, n_boot=0), on_log=lambda m: None)
    return Path(result.run_dir)


def score_cli(*args):
    from click.testing import CliRunner

    from iqabench.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    data = change(data)
    path.write_text(json.dumps(data))


def assert_refused(result, *words):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("iqabench: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _relabel(data):
    data["images"][0]["label"] = float(data["images"][0]["label"]) + 1.0
    return data


def _drop_half(data):
    data["images"] = data["images"][: len(data["images"]) // 2]
    return data


def _rehash(data):
    from iqabench.runs import inputs_hash

    data["hash"] = inputs_hash(data["images"])
    return data


@pytest.mark.parametrize("change, words", [
    (_relabel, ["inputs.json", "hash"]),
    (lambda d: _rehash(_relabel(d)), ["inputs.json", "manifest.json"]),
    (lambda d: _rehash(_drop_half(d)), ["inputs.json", "manifest.json"]),
    (lambda d: {**d, "hash": None}, ["inputs.json", "hash"]),
], ids=["label-edited", "label-edited-rehashed", "half-removed-rehashed", "hash-removed"])
def test_score_refuses_inputs_that_are_not_the_recorded_ones(finished_run, change, words):
    edit_json(finished_run / "inputs.json", change)
    assert_refused(score_cli("score", finished_run), *words)


@pytest.mark.parametrize("field", ["method_higher_better", "label_higher_better", "labels", "split_hash"])
def test_score_refuses_a_manifest_whose_recorded_identity_was_edited(finished_run, field):
    def flip(m):
        m[field] = (not m[field]) if isinstance(m[field], bool) else "0" * 16
        return m

    edit_json(finished_run / "manifest.json", flip)
    assert_refused(score_cli("score", finished_run), "manifest.json", "identity")


@pytest.mark.parametrize("change, words", [
    (lambda m: [m], ["manifest.json", "not a JSON object"]),
    (lambda m: {k: v for k, v in m.items() if k != "dataset"}, ["manifest.json", "lacks dataset"]),
    (lambda m: {k: v for k, v in m.items() if k != "identity"}, ["manifest.json", "identity"]),
    (lambda m: {**m, "method_higher_better": "yes"}, ["manifest.json", "method_higher_better"]),
], ids=["list", "no-dataset", "no-identity", "text-direction"])
def test_score_names_a_malformed_manifest_in_one_line(finished_run, change, words):
    edit_json(finished_run / "manifest.json", change)
    assert_refused(score_cli("score", finished_run), *words)


@pytest.mark.parametrize("label", ["good", float("nan"), None, True])
def test_score_names_a_bad_label_in_inputs_in_one_line(finished_run, label):
    def put(d):
        d["images"][0]["label"] = label
        return _rehash(d)

    edit_json(finished_run / "inputs.json", put)
    new_hash = json.loads((finished_run / "inputs.json").read_text())["hash"]
    edit_json(finished_run / "manifest.json", lambda m: reseal({**m, "inputs_hash": new_hash}))  # all consistent
    line = assert_refused(score_cli("score", finished_run), "inputs.json", "label", "not a finite number")
    assert "manifest" not in line


def reseal(manifest):
    from iqabench.runs import manifest_seal

    return {**manifest, "seal": manifest_seal(manifest)}


def test_an_unsealed_manifest_is_still_checked_against_its_identity(finished_run):
    # a folder written before the seal: the fields repeated in the identity must still agree with it
    edit_json(finished_run / "manifest.json", lambda m: {k: v for k, v in m.items() if k != "seal"})
    assert score_cli("score", finished_run, "--quiet").exit_code == 0
    edit_json(finished_run / "manifest.json", lambda m: {**m, "split_hash": "0" * 16})
    assert_refused(score_cli("score", finished_run), "manifest.json", "split_hash", "recorded identity")


def test_a_record_whose_label_is_not_the_inputs_label_makes_the_run_inconsistent(finished_run):
    path = finished_run / "predictions.jsonl"
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, "label": first["label"] + 1.0})
    path.write_text("\n".join(lines) + "\n")
    # as with two records that disagree: `score` marks the run inconsistent (no table cell), naming the image
    result = score_cli("score", finished_run)
    assert result.exit_code == 0 and "inconsistent" in result.output, result.output
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["status"] == "inconsistent" and metrics["record_problems"]["conflicting_records"] == [first["id"]]
    assert metrics["n_scored"] == metrics["n"] - 1  # the record is not used with either label


def test_score_of_an_untouched_run_still_works(finished_run):
    result = score_cli("score", finished_run, "--quiet")
    assert result.exit_code == 0, result.output


# -- files an option names, and the files those name ----------------------------------------------

def _png(path: Path, seed: int) -> Path:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


def _examples(folder: Path, names=("ex0.png", "ex1.png")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        if not name.startswith(("/", "..")) and not (folder / name).exists():
            _png(folder / name, i)
    path = folder / "examples.csv"
    path.write_text("image,score\n" + "".join(f"{n},{1 + i}\n" for i, n in enumerate(names)))
    return path


def _key(tiny_root, tmp_path, method, options):
    from iqabench.plan import build_run_plan
    from iqabench.run import RunConfig

    cfg = RunConfig(method=method, dataset="tiny", split="all", data_root=tiny_root, results=tmp_path / "r",
                    device="cpu", progress=False, options=options)
    return build_run_plan(cfg).key


def _mllm_options(tmp_path, examples):
    (tmp_path / "model").mkdir(exist_ok=True)
    return {"backend_path": str(tmp_path / "model"), "system": "in-context", "examples": str(examples),
            "examples_range": "1,5"}


def test_an_example_image_edited_changes_the_run_key(tiny_root, tmp_path):
    examples = _examples(tmp_path / "ex")
    options = _mllm_options(tmp_path, examples)
    before = _key(tiny_root, tmp_path, "mllm-prompt", options)
    assert _key(tiny_root, tmp_path, "mllm-prompt", options) == before  # stable
    _png(tmp_path / "ex" / "ex1.png", 99)  # the CSV is unchanged; one image it names is not
    assert _key(tiny_root, tmp_path, "mllm-prompt", options) != before


@pytest.mark.parametrize("name", ["../outside.png", "/abs/outside.png", "link.png"])
def test_an_examples_csv_naming_a_file_outside_its_folder_is_refused(name, tiny_root, tmp_path):
    _png(tmp_path / "outside.png", 3)
    (tmp_path / "ex").mkdir()
    (tmp_path / "ex" / "link.png").symlink_to(tmp_path / "outside.png")  # a link leaving the folder
    name = str(tmp_path / "outside.png") if name.startswith("/") else name
    examples = _examples(tmp_path / "ex", ("ex0.png", name))
    with pytest.raises(IqaError) as exc:
        _key(tiny_root, tmp_path, "mllm-prompt", _mllm_options(tmp_path, examples))
    text = one_line(exc)
    assert text.startswith(f"{examples}: line 3: image {name!r} must stay inside {examples.parent}"), text


def test_promptiqa_prompt_images_are_in_the_key_and_stay_inside_the_folder(tiny_root, tmp_path):
    from iqabench.methods.promptiqa.prompt import read_prompt_file

    folder = tmp_path / "prompt"
    folder.mkdir()
    _png(folder / "a.png", 1), _png(folder / "b.png", 2)
    csv_file = folder / "prompt.csv"
    csv_file.write_text("image,score\na.png,0.2\nb.png,0.8\n")
    before = _key(tiny_root, tmp_path, "promptiqa", {"prompt_file": str(csv_file)})
    _png(folder / "b.png", 7)
    assert _key(tiny_root, tmp_path, "promptiqa", {"prompt_file": str(csv_file)}) != before
    _png(tmp_path / "outside.png", 3)
    csv_file.write_text("image,score\na.png,0.2\n../outside.png,0.8\n")
    for attempt in (lambda: _key(tiny_root, tmp_path, "promptiqa", {"prompt_file": str(csv_file)}),
                    lambda: read_prompt_file(csv_file, 32)):
        with pytest.raises(IqaError) as exc:
            attempt()
        assert "'../outside.png' must stay inside" in one_line(exc)


def test_a_pyiqa_parameter_file_edited_changes_the_run_key(tiny_root, tmp_path):
    params = tmp_path / "niqe_params.mat"
    params.write_bytes(b"first version")
    options = {"metric_options": {"pretrained_model_path": str(params)}}
    before = _key(tiny_root, tmp_path, "pyiqa:niqe", options)
    assert _key(tiny_root, tmp_path, "pyiqa:niqe", options) == before
    params.write_bytes(b"second version")
    assert _key(tiny_root, tmp_path, "pyiqa:niqe", options) != before


@pytest.mark.parametrize("content, problem", [
    (b"image,score\nex\xe9.png,1\n", "not UTF-8 text (byte 0xe9 at offset 14)"),
    (b"image,score\n\"" + b"x" * 200_000 + b"\",1\n", "a field is longer than 131072 characters"),
])
def test_an_examples_csv_that_cannot_be_read_is_one_line(content, problem, tiny_root, tmp_path):
    examples = tmp_path / "examples.csv"
    examples.write_bytes(content)
    with pytest.raises(IqaError) as exc:
        _key(tiny_root, tmp_path, "mllm-prompt", _mllm_options(tmp_path, examples))
    text = one_line(exc)
    assert text.startswith(str(examples)) and problem in text, text


# -- suite files that name other files -------------------------------------------------------------

def _suite(folder: Path, options: str, method: str = "mllm-prompt", column_options: str = "") -> Path:
    from test_hardening3 import suite_file

    return suite_file(folder, options, method, column_options, label="Row")


def test_a_suite_names_files_relative_to_its_own_folder(tmp_path, test_plugins):
    from iqabench.suite import load_suite

    examples = _examples(tmp_path / "suites" / "ex")
    path = _suite(tmp_path / "suites", '{ system = "in-context", examples = "ex/examples.csv", examples_range = "1,5", '
                  'backend_path = "model" }')
    suite = load_suite(path)
    [cell] = suite.cells()
    assert Path(cell.options["examples"]) == examples  # not relative to the working folder
    niqe = _suite(tmp_path / "suites2", '{ metric_options = { pretrained_model_path = "p.mat" } }', "pyiqa:niqe")
    (niqe.parent / "p.mat").write_bytes(b"x")
    [cell] = load_suite(niqe).cells()
    assert Path(cell.options["metric_options"]["pretrained_model_path"]) == niqe.parent / "p.mat"


@pytest.mark.parametrize("where, value", [
    ("options", "../elsewhere/examples.csv"), ("options", "/etc/passwd"), ("options", "link.csv"),
    ("column_options", "../elsewhere/examples.csv")])
def test_a_suite_naming_a_file_outside_its_folder_is_refused(where, value, tmp_path, test_plugins):
    from iqabench.suite import load_suite

    _examples(tmp_path / "elsewhere")
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "link.csv").symlink_to(tmp_path / "elsewhere" / "examples.csv")
    common = 'system = "in-context", examples_range = "1,5", backend_path = "model"'
    if where == "options":
        path = _suite(tmp_path / "suites", f'{{ {common}, examples = "{value}" }}')
    else:
        path = _suite(tmp_path / "suites", f'{{ {common}, examples = "x.csv" }}',
                      column_options=f'column_options = {{ tiny = {{ examples = "{value}" }} }}')
    with pytest.raises(IqaError) as exc:
        load_suite(path)
    text = one_line(exc)
    assert text.startswith(f"{path}: rows[0] (Row).")
    assert f"examples {value!r} must stay inside {path.parent}" in text, text


# -- a finished run on a read-only results folder ---------------------------------------------------

@pytest.mark.parametrize("code", [__import__("errno").EROFS, __import__("errno").EACCES])
def test_a_finished_run_on_a_read_only_folder_can_be_shown_scored_and_reported(code, tiny_root, tmp_path,
                                                                                tmp_path_factory, monkeypatch):
    from test_hardening import invoke, read_only, run_args

    results = tmp_path / "results"
    first = invoke(*run_args(tiny_root, results))
    assert first.exit_code == 0, first.stderr
    (run_dir,) = list(results.glob("runs/*/*/*/"))
    before = {p: p.read_bytes() for p in results.rglob("*")
              if p.is_file()}
    out = tmp_path_factory.mktemp("elsewhere")
    read_only(monkeypatch, results, code)
    shown = invoke(*run_args(tiny_root, results))  # the same command again: shown, nothing to score
    assert shown.exit_code == 0, shown.stderr
    assert "0 to score" in shown.output and "SRCC" in shown.output
    scored = invoke("score", run_dir)
    assert scored.exit_code == 0, scored.stderr
    assert "cannot write here" in scored.stderr and "computed, not saved" in scored.stderr
    assert [line for line in scored.output.splitlines() if "SRCC" in line]
    reported = invoke("report", "--results", results, "--out", out)
    assert reported.exit_code == 0, reported.stderr
    assert (out / "table.md").is_file()
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} == before  # not a byte written
    srcc = json.loads((run_dir / "metrics.json").read_text())["srcc"]
    assert f"{srcc:.4f}" in shown.output and f"{srcc:.4f}" in scored.output


# -- smaller defects ------------------------------------------------------------------------------

def test_a_step_fit_running_against_the_ranking_gives_no_signed_plcc():
    import numpy as np

    from iqabench.metrics import best_logistic_fit, compute, srcc

    pred = np.array([*range(10), 100.0])
    label = np.array([*range(10), -50.0])  # ten in order and one far outlier at the top of the scores
    assert srcc(pred, label) > 0
    params = best_logistic_fit(pred, label).params
    assert params[0] < params[1]  # the lowest residual is a falling step that isolates the outlier
    out = compute(pred, label, n_boot=0)
    assert out["srcc"] > 0 and out["plcc"] is None
    assert out["logistic_fit"].startswith("degenerate: the best fit is a step decreasing while SRCC is +")
    assert "logistic_params" not in out  # a report does not read it as "ranks images backwards"
    fine = compute(np.arange(20.0), np.arange(20.0) ** 1.5, n_boot=0)  # an ordinary fit is untouched
    assert fine["plcc"] > 0.99 and "logistic_params" in fine and "logistic_fit" not in fine


def test_a_method_name_holding_a_comma_can_be_named_by_quoting_it(tiny_root, tmp_path):
    from iqabench.cli.shared import split_names

    assert split_names(['"x,y",piqe', "niqe", "piqe"]) == ["x,y", "piqe", "niqe"]
    assert split_names(["a, b"]) == ["a", "b"]
    result = score_cli("run", "--method", '"no,such"', "--dataset", "tiny", "--data-root", tiny_root,
                       "--results", tmp_path)
    assert "unknown method 'no,such'" in assert_refused(result)


# -- the torch thread count -------------------------------------------------------------------------

def test_the_thread_count_is_recorded_with_each_attempt(finished_run):
    import torch

    [attempt] = [json.loads(line) for line in (finished_run / "runtime.rank0.jsonl").read_text().splitlines()]
    assert attempt["torch_threads"] == torch.get_num_threads()


def test_brisque_scores_on_one_thread_whatever_the_machine_has(monkeypatch):
    import torch
    from PIL import Image

    from iqabench import registry
    from iqabench.api import RunContext, Sample

    seen = []

    class Probe(torch.nn.Module):  # stands in for pyiqa's BRISQUE (its SVM weights are not here)
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x.mean().reshape(1)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for name, threads in (("pyiqa:brisque", 1), ("pyiqa:piqe", 2)):
            cls = registry.methods.get(name)
            method = cls(cls.Options())
            monkeypatch.setattr("iqabench.methods.pyiqa.family.create_metric", lambda *a: Probe())
            method.setup(RunContext(device="cpu"))
            seen.clear()
            method.score([Sample("a", Image.new("RGB", (32, 32)))])
            assert seen == [threads] and torch.get_num_threads() == 2  # pinned for the call only
            assert (method.fingerprint().get("torch_threads") == 1) == (threads == 1)  # in the run key
    finally:
        torch.set_num_threads(before)
