"""Hardening, round two, through the CLI in-process: exit statuses (2 bad input, 1 the machine), a
disk that fills mid-run and a read-only results folder, corrupt bookkeeping files named with what to
do, datasets that change between a kill and the resume, and nonsense option values.

Every failure here must be one line on stderr, no traceback, and keep what was saved before.
The kill is simulated in-process by a Ctrl-C after N saved records (tests/test_crash.py kills real
processes with SIGKILL); the machine's refusals by OSErrors raised where the real ones would be.
"""
from __future__ import annotations

import builtins
import errno
import io as _io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from iqabench.cli.main import cli
from iqabench.store import RunStore

KONIQ_META = "koniq10k_distributions_sets.csv"


# -- helpers ----------------------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error(result, status: int) -> str:
    """The run failed with `status`, no traceback, and its last stderr line is its only error line."""
    err = result.stderr
    assert result.exit_code == status, (result.exit_code, err, result.exception)
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("iqabench: error")]
    assert len(errors) == 1 and err.rstrip("\n").endswith(errors[0]), err
    return errors[0]


def run_args(root: Path, results: Path, dataset: str = "tiny", *extra) -> list:
    return ["run", "--method", "slow-sharpness", "--dataset", dataset, "--split", "all", "--data-root", root,
            "--results", results, "--no-progress", *extra]


def run_dir_of(results: Path) -> Path:
    (found,) = list(results.glob("runs/*/*/*/"))
    return found


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def data(tiny_root, tmp_path) -> Path:
    """A private copy of the tiny set (tests here change its labels and files)."""
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    return root


@pytest.fixture(scope="module")
def reference(tiny_root, tmp_path_factory) -> dict[str, float]:
    """id -> score of an uninterrupted run, to compare resumed runs with."""
    results = tmp_path_factory.mktemp("reference")
    assert invoke(*run_args(tiny_root, results)).exit_code == 0
    return {r["id"]: r["score"] for r in records(run_dir_of(results))}


def interrupt_after(monkeypatch, n: int) -> None:
    """Ctrl-C right after the n-th record is saved, as a kill between two records leaves the run."""
    original = RunStore.append
    count = {"n": 0}

    def append(self, record):
        original(self, record)
        count["n"] += 1
        if count["n"] >= n:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunStore, "append", append)


def fsync_fails(monkeypatch, when) -> None:
    """os.fsync raises ENOSPC for a file when `when(path, calls_so_far_for_that_path)` says so."""
    real = os.fsync
    calls: dict[str, int] = {}

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        calls[path] = calls.get(path, 0) + 1
        if when(path, calls[path]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


# -- the machine: exit status 1, one line, what was saved is kept ------------------------------------

def test_a_disk_that_fills_mid_run_exits_1_keeps_the_saved_records_and_resumes(tiny_root, tmp_path, monkeypatch,
                                                                              reference):
    results = tmp_path / "results"
    monkeypatch.setattr("iqabench.store.COMMIT_SECONDS", 0.0)  # a group commit after every batch (of one image)
    fsync_fails(monkeypatch, lambda path, n: path.endswith("predictions.jsonl") and n > 5)
    line = one_error(invoke(*run_args(tiny_root, results)), 1)
    run_dir = run_dir_of(results)
    assert f"{run_dir / 'predictions.jsonl'}: disk full" in line and "rerun the same command to resume" in line
    saved = records(run_dir)  # every line whole: the failed append cut its partial line off again
    assert len(saved) == 5 and (run_dir / "predictions.jsonl").read_bytes().endswith(b"\n")
    assert temp_files(results) == []
    monkeypatch.undo()
    again = invoke(*run_args(tiny_root, results))
    assert again.exit_code == 0, again.stderr
    assert "5 already saved, 31 to score" in again.stdout
    final = records(run_dir)
    assert final[:5] == saved and len(final) == len({r["id"] for r in final}) == 36
    assert {r["id"]: r["score"] for r in final} == reference


def test_disk_full_while_writing_the_manifest_leaves_no_temp_file(tiny_root, tmp_path, monkeypatch):
    results = tmp_path / "results"
    fsync_fails(monkeypatch, lambda path, n: os.path.basename(path).startswith(".manifest.json."))
    line = one_error(invoke(*run_args(tiny_root, results)), 1)
    assert "manifest.json: disk full" in line
    assert temp_files(results) == [] and not list(results.rglob("manifest.json"))
    monkeypatch.undo()
    assert invoke(*run_args(tiny_root, results)).exit_code == 0


def test_a_temp_file_left_by_a_killed_writer_is_removed_by_the_next_attempt(tiny_root, tmp_path):
    results = tmp_path / "results"
    assert invoke(*run_args(tiny_root, results)).exit_code == 0
    run_dir = run_dir_of(results)
    stale = [run_dir / f".{name}.k1ll3d.tmp" for name in ("manifest.json", "metrics.json", "predictions.csv")]
    for path in stale:
        path.write_text("half a file")  # a SIGKILL between writing a temp file and renaming it
    assert invoke(*run_args(tiny_root, results)).exit_code == 0
    assert temp_files(results) == []


def test_out_of_memory_is_one_line_with_status_1(tiny_root, tmp_path, monkeypatch):
    import iqabench.run as run_module

    def too_big(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(run_module, "build_run_plan", too_big)
    assert "out of memory" in one_error(invoke(*run_args(tiny_root, tmp_path)), 1)


def read_only(monkeypatch, folder: Path, code: int) -> None:
    """Every write or create under `folder` fails with `code` (EROFS, EACCES), as on a read-only
    mount or a folder without write permission (the tests run as root, so chmod would not stop them)."""
    folder = str(folder.resolve())

    def inside(path) -> bool:
        try:
            return os.path.abspath(os.fsdecode(path)).startswith(folder)
        except TypeError:
            return False  # a file descriptor

    def refuse(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def fake_open(file, mode="r", *args, **kwargs):
        if inside(file) and any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if inside(path):
            if os.path.exists(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(_io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


@pytest.mark.parametrize("code,seen", [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")])
def test_a_read_only_results_folder_exits_1_and_changes_nothing(code, seen, tiny_root, tmp_path, monkeypatch):
    results = tmp_path / "results"
    assert invoke(*run_args(tiny_root, results)).exit_code == 0  # a finished run, then the folder turns read-only
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    read_only(monkeypatch, tmp_path, code)
    # (showing a finished run, `score` and `report --out` elsewhere read only: tests/test_hardening4.py)
    for args in (run_args(tiny_root, results, "tiny", "--limit", "3"),  # a new run: its folder cannot be made
                 run_args(tiny_root, fresh),  # a first run: its split cannot be recorded
                 ["report", "--results", results],  # tables cannot be written
                 ["train", "--method", "brisque-svr", "--dataset", "tiny", "--data-root", tiny_root,
                  "--results", results, "--no-progress"]):
        line = one_error(invoke(*args), 1)
        assert seen in line and str(tmp_path) in line, (args[0], line)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} == before
    assert list(fresh.iterdir()) == [] and temp_files(tmp_path) == []


def test_an_environment_error_keeps_status_1_when_a_command_adds_context(tiny_root, tmp_path, monkeypatch):
    """Several methods in one command: the failing one is named, and the status is still the machine's."""
    fsync_fails(monkeypatch, lambda path, n: path.endswith("predictions.jsonl"))
    line = one_error(invoke("run", "--method", "slow-sharpness", "--dataset", "tiny",
                            "--split", "ratio50-0-50-seed{1..2}",
                            "--data-root", tiny_root, "--results", tmp_path, "--no-progress"), 1)
    assert line.startswith("iqabench: error: slow-sharpness on tiny split ratio50-0-50-seed1: ") and "disk full" in line


def test_an_unnamed_os_error_is_one_line_with_status_1(tiny_root, tmp_path, monkeypatch):
    """An OSError the engine did not turn into a sentence itself still reaches the user as one line."""
    import iqabench.run as run_module

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(tmp_path / "somewhere"))

    monkeypatch.setattr(run_module, "build_run_plan", broken)
    line = one_error(invoke(*run_args(tiny_root, tmp_path)), 1)
    assert f"{tmp_path / 'somewhere'}: input/output error" in line


# -- corrupt bookkeeping: named, with what to do, and doing it works -------------------------------------

@pytest.fixture
def finished(tiny_root, tmp_path) -> tuple[Path, Path]:
    results = tmp_path / "results"
    assert invoke(*run_args(tiny_root, results)).exit_code == 0
    return results, run_dir_of(results)


def cut_in_half(path: Path) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data


def test_a_manifest_cut_in_half_is_named_with_what_to_do(finished, tiny_root):
    results, run_dir = finished
    cut_in_half(run_dir / "manifest.json")
    line = one_error(invoke(*run_args(tiny_root, results)), 2)
    assert f"{run_dir / 'manifest.json'}: run manifest is not valid JSON" in line
    assert "move this run folder away to score the run afresh" in line
    shutil.move(run_dir, results / "aside")  # doing what it says works
    assert invoke(*run_args(tiny_root, results)).exit_code == 0


def test_run_inputs_cut_in_half_are_named(finished, tiny_root):
    results, run_dir = finished
    cut_in_half(run_dir / "inputs.json")
    line = one_error(invoke(*run_args(tiny_root, results)), 2)
    assert f"{run_dir / 'inputs.json'}: run inputs is not valid JSON" in line and "move this run folder away" in line


def test_a_recorded_split_cut_in_half_is_named_with_what_to_do(finished, tiny_root):
    results, _ = finished
    split = results / "splits" / "tiny" / "all.json"
    whole = cut_in_half(split)
    line = one_error(invoke(*run_args(tiny_root, results)), 2)
    assert f"{split}: not valid JSON" in line and "delete it to re-record the split" in line
    split.unlink()  # doing what it says: the same membership is recorded again
    assert invoke(*run_args(tiny_root, results)).exit_code == 0
    assert json.loads(split.read_text())["hash"] == json.loads(whole)["hash"]


@pytest.mark.parametrize("bad,problem", [
    ("[1, 2]", "not a JSON object (a JSON list, not an object)"),
    ('{"score": 1.5, "label": 1.0, "error": null}', "no image id"),
    (None, "score 'high' is not a number"),  # the 4th record with its score as text
    ('{"id": "x", "score": NaN, "error": null}', "score nan is not finite"),
])
def test_a_corrupt_prediction_line_is_named_and_deleting_it_rescored(bad, problem, finished, tiny_root, reference):
    results, run_dir = finished
    path = run_dir / "predictions.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    if bad is None:
        rec = json.loads(lines[3])
        rec["score"] = "high"
        lines[3] = json.dumps(rec) + "\n"
        rescored = rec["id"]
    else:
        lines.insert(3, bad + "\n")
        rescored = None
    path.write_text("".join(lines))
    line = one_error(invoke(*run_args(tiny_root, results)), 2)
    assert f"{path}:4: corrupt prediction record: {problem}" in line and "delete that line" in line, line
    del lines[3]  # doing what it says
    path.write_text("".join(lines))
    again = invoke(*run_args(tiny_root, results))
    assert again.exit_code == 0, again.stderr
    assert f"{1 if rescored else 0} to score" in again.stdout
    assert {r["id"]: r["score"] for r in records(run_dir)} == reference


def test_a_non_safetensors_checkpoint_is_one_line(tiny_root, tmp_path):
    """brisque-svr --checkpoint DIR whose svr.safetensors is not one (a pickle renamed: tests/test_security.py)."""
    for content in (b"", b"not tensors at all", json.dumps({"support_vectors": [1, 2]}).encode()):
        ckpt = tmp_path / "ckpt"
        ckpt.mkdir(exist_ok=True)
        (ckpt / "svr.safetensors").write_bytes(content)
        (ckpt / "svr.json").write_text(json.dumps({"gamma": 0.1}))
        line = one_error(invoke("run", "--method", "brisque-svr", "--dataset", "tiny", "--split", "all", "--data-root",
                                tiny_root, "--results", tmp_path / "r", "--no-progress", "--checkpoint", ckpt), 2)
        assert f"{ckpt / 'svr.safetensors'}: not a safetensors file" in line


# -- silent mixing, end to end --------------------------------------------------------------------------

def test_labels_changed_between_a_kill_and_the_resume_are_refused(data, tmp_path, monkeypatch):
    results = tmp_path / "results"
    interrupt_after(monkeypatch, 4)
    assert invoke(*run_args(data, results)).exit_code == 130
    monkeypatch.undo()
    run_dir = run_dir_of(results)
    saved = (run_dir / "predictions.jsonl").read_bytes()
    meta = data / "tiny" / "mos.csv"
    table = pd.read_csv(meta)
    first = table.loc[0, "image"]
    old = table.loc[0, "mos"]
    table.loc[0, "mos"] = old + 0.5
    table.to_csv(meta, index=False)
    line = one_error(invoke(*run_args(data, results)), 2)
    assert f"{run_dir / 'inputs.json'}: the dataset changed since this run started" in line
    assert f"1 label(s) changed (first '{first}': {old} -> {old + 0.5})" in line and "another --results" in line
    assert (run_dir / "predictions.jsonl").read_bytes() == saved  # nothing mixed in
    assert not (run_dir / "predictions.csv").exists()


def write_koniq(root: Path, folder: str, names: list[str], size: tuple[int, int]) -> Path:
    base = root / "koniq10k"
    (base / folder).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        rng = np.random.default_rng(i)
        small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
        small.save(base / folder / name, "JPEG", quality=90)
    return base


def test_koniqs_full_size_folder_appearing_between_a_kill_and_the_resume_is_refused(tmp_path, monkeypatch):
    root, results = tmp_path / "data", tmp_path / "results"
    names = [f"{1000 + i}.jpg" for i in range(8)]
    base = write_koniq(root, "512x384", names, (64, 48))
    pd.DataFrame({"image_name": names, "MOS": np.linspace(10, 90, 8), "set": "test"}).to_csv(base / KONIQ_META,
                                                                                               index=False)
    interrupt_after(monkeypatch, 3)
    assert invoke(*run_args(root, results, "koniq10k")).exit_code == 130
    monkeypatch.undo()
    run_dir = run_dir_of(results)
    saved = (run_dir / "predictions.jsonl").read_bytes()
    write_koniq(root, "1024x768", names, (128, 96))  # the download of the full-size images finished meanwhile
    line = one_error(invoke(*run_args(root, results, "koniq10k")), 2)
    assert "the dataset changed since this run started" in line
    assert f"8 image file(s) changed (first '512x384/{names[0]}' -> '1024x768/{names[0]}')" in line
    assert (run_dir / "predictions.jsonl").read_bytes() == saved
    # the half-size images asked for by name: a dataset card of its own, so a run of its own, nothing mixed
    forced = invoke(*run_args(root, results, "koniq10k-512x384"))
    assert forced.exit_code == 0 and "0 already saved, 8 to score" in forced.stdout, forced.stdout


def test_one_file_listed_under_two_spellings_is_refused(tmp_path):
    root = tmp_path / "data"
    names = ["1000.jpg", "1001.jpg", "1002.jpg"]
    base = write_koniq(root, "1024x768", names, (64, 48))
    pd.DataFrame({"image_name": names + ["./1001.jpg"], "MOS": [10.0, 20.0, 30.0, 40.0], "set": "test"}
                 ).to_csv(base / KONIQ_META, index=False)
    line = one_error(invoke(*run_args(root, tmp_path / "results", "koniq10k")), 2)
    assert f"{base / KONIQ_META}: two rows name the same image file" in line and "1001.jpg" in line
    assert not (tmp_path / "results" / "runs").exists()


def test_a_nan_score_is_a_recorded_failure_and_the_metrics_stay_finite(tiny_root, tmp_path):
    results = tmp_path / "results"
    nan_ids = ["astronaut_jpeg_3.png", "coffee_white_noise_1.png"]
    done = invoke(*run_args(tiny_root, results, "tiny", "-o", f"nan_on={json.dumps(nan_ids)}"))
    assert done.exit_code == 0, done.stderr
    run_dir = run_dir_of(results)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n"] == 36 and metrics["n_failed"] == 2 and metrics["n_scored"] == 34
    assert metrics["failures_by_kind"] == {"score": 2} and np.isfinite(metrics["srcc"]) and np.isfinite(metrics["plcc"])
    preds = pd.read_csv(run_dir / "predictions.csv").set_index("id")
    for sid in nan_ids:
        assert pd.isna(preds.loc[sid, "score"]) and preds.loc[sid, "error"] == "score: non-finite (nan)"
    assert "failed=2" in done.stdout


@pytest.mark.parametrize("extra,problem", [
    ({"id": "astronaut_jpeg_3.png", "score": 123.0, "label": 1.0, "error": None},
     "two records of image 'astronaut_jpeg_3.png' with different scores"),
    ({"id": "from_another_run.png", "score": 1.0, "label": 1.0, "error": None},
     "a record of image 'from_another_run.png', which is not among this run's images"),
])
def test_merged_or_foreign_records_are_refused_on_resume(extra, problem, finished, tiny_root):
    results, run_dir = finished
    with open(run_dir / "predictions.jsonl", "a") as fh:
        fh.write(json.dumps(extra) + "\n")
    line = one_error(invoke(*run_args(tiny_root, results)), 2)
    assert problem in line and str(run_dir / "predictions.jsonl") in line
    # recomputing the metrics alone reports it instead of choosing silently
    scored = invoke("score", run_dir)
    assert scored.exit_code == 0, scored.stderr
    found = json.loads((run_dir / "metrics.json").read_text())["record_problems"]
    assert [extra["id"]] in (found["conflicting_records"], found["records_outside_run"])


# -- nonsense values, refused at the edge -----------------------------------------------------------------
# (--batch-size 0, --limit 0 and --seed -1 for `run`: tests/test_cli.py; the pyiqa option model: test_pyiqa_family)

@pytest.mark.parametrize("command", ["run", "train"])
@pytest.mark.parametrize("flag,value", [("--batch-size", "-2"), ("--limit", "-1"), ("--seed", "-1")])
def test_negative_counts_and_seeds_are_one_line(command, flag, value, tmp_path):
    method = "slow-sharpness" if command == "run" else "brisque-svr"
    line = one_error(invoke(command, "--method", method, "--dataset", "tiny", flag, value,
                            "--results", tmp_path / "r"), 2)
    assert flag in line and "not in the range" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_size_option_of_zero_or_less_is_refused(value, tiny_root, tmp_path):
    line = one_error(invoke("run", "--method", "pyiqa:piqe", "--dataset", "tiny", "--data-root", tiny_root,
                            "--results", tmp_path / "r", "-o", f"resize_short_side={value}"), 2)
    assert "resize_short_side" in line and "greater than 0" in line
    segmenter = json.dumps({"max_side": int(value)})
    line = one_error(invoke("run", "--method", "dog-iqa", "--dataset", "tiny", "--data-root", tiny_root,
                            "--results", tmp_path / "r", "-o", f"segmenter={segmenter}"), 2)
    assert "segmenter.max_side" in line and "greater than 0" in line
    assert not (tmp_path / "r").exists()
