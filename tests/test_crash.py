"""Crash tests: SIGKILL `iqabench run` and `iqabench train` at seeded random points, restart,
and check that nothing saved is lost, nothing saved is computed again, and the final results
equal an uninterrupted run's.

Half the kills of each kind fire at a random time after launch (they land anywhere: imports,
dataset loading, scoring, metrics); the other half fire when a random number of records is on
disk (they land inside the scoring or feature loop). Restarts run in this process.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from iqabench.run import RunConfig, run
from iqabench.train import TrainConfig, train

PLUGINS = Path(__file__).parent / "plugins"
RUN_TRIALS = 12
TRAIN_TRIALS = 6
SEED = 20240605
COLUMNS = ["id", "score", "label", "error"]
METRIC_KEYS = ("n", "n_failed", "n_missing", "srcc", "krcc", "plcc", "plcc_raw", "rmse", "ci95", "status")


def _cli(args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "iqabench.cli.main", "--plugin", str(PLUGINS / "tiny_dataset_plugin.py"),
           "--plugin", str(PLUGINS / "slow_method.py"), *args]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def _complete_lines(path: Path) -> list[str]:
    """The lines of an append-only log that were fully written (a torn last line is not saved)."""
    if not path.exists():
        return []
    return path.read_text().split("\n")[:-1]


def _kill_when(proc: subprocess.Popen, ready, at_time: float | None, timeout: float = 120) -> None:
    """SIGKILL `proc` at `at_time` seconds after now, or as soon as `ready()` is true."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            return  # it finished first: the restart must then score nothing
        if (at_time is not None and time.monotonic() - start >= at_time) or (at_time is None and ready()):
            break
        time.sleep(0.002)
    proc.kill()
    proc.wait()


def _frame(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "predictions.csv")[COLUMNS]


def _assert_same_metrics(a: dict, b: dict) -> None:
    for key in METRIC_KEYS:
        assert a[key] == b[key], key


# -- run ---------------------------------------------------------------------------------------

def _run_cfg(root: Path, results: Path, log: Path, workers: int = 0) -> RunConfig:
    return RunConfig(method="slow-sharpness", dataset="tiny", split="all", data_root=root, results=results,
                     options={"delay": 0.02, "log": str(log)}, batch_size=2, progress=False, n_boot=200,
                     workers=workers)


def _run_args(root: Path, results: Path, log: Path, workers: int = 0) -> list[str]:
    return ["run", "--method", "slow-sharpness", "--dataset", "tiny", "--split", "all", "--data-root", str(root),
            "--results", str(results), "--batch-size", "2", "--no-progress", "-o", "delay=0.02", "-o", f"log={log}",
            "--workers", str(workers)]


def test_kill_run_at_random_points(tiny_root, tmp_path):
    rng = random.Random(SEED)
    log = tmp_path / "scored.log"  # one log for every run: the option is part of the run's key
    started = time.monotonic()
    reference = run(_run_cfg(tiny_root, tmp_path / "reference", log), on_log=lambda m: None)
    one_run = time.monotonic() - started + 2.0  # plus the start-up of a fresh process
    ref_frame = _frame(reference.run_dir)
    phases = []
    for trial in range(RUN_TRIALS):
        results = tmp_path / f"trial{trial}"
        pred_files = lambda r=results: list(r.glob("runs/tiny/all-test/*/predictions*.jsonl"))  # noqa: E731
        n_saved = lambda f=pred_files: sum(len(_complete_lines(p)) for p in f())  # noqa: E731
        by_time = trial % 2 == 0
        at_time = rng.uniform(0.0, one_run) if by_time else None
        target = rng.randint(1, 33)
        # every other pair of trials decodes ahead: batches decoded but not yet scored are lost
        # with the process and decoded again by the resume, never recorded twice
        workers = 2 if (trial // 2) % 2 else 0
        _kill_when(_cli(_run_args(tiny_root, results, log, workers)), lambda n=n_saved, t=target: n() >= t, at_time)

        saved = {p: _complete_lines(p) for p in pred_files()}
        saved_ids = [json.loads(line)["id"] for lines in saved.values() for line in lines]
        assert len(saved_ids) == len(set(saved_ids))
        phases.append(len(saved_ids))
        log_at_kill = len(_complete_lines(log))

        resumed = run(_run_cfg(tiny_root, results, log, workers), on_log=lambda m: None)
        assert resumed.run_dir.name == reference.run_dir.name
        rescored = _complete_lines(log)[log_at_kill:]
        assert not set(rescored) & set(saved_ids), f"trial {trial}: saved images were scored again"
        assert resumed.scored_now == 36 - len(saved_ids)
        for path, lines in saved.items():  # nothing saved is lost or rewritten
            assert _complete_lines(path)[: len(lines)] == lines
        final_ids = [json.loads(x)["id"] for p in resumed.run_dir.glob("predictions*.jsonl")
                     for x in _complete_lines(p)]
        assert sorted(final_ids) == sorted(set(final_ids)) and len(final_ids) == 36
        pd.testing.assert_frame_equal(_frame(resumed.run_dir), ref_frame)
        _assert_same_metrics(resumed.metrics, reference.metrics)
        on_disk = json.loads((resumed.run_dir / "metrics.json").read_text())
        _assert_same_metrics(on_disk, reference.metrics)
    # the record-count kills land inside the scoring loop by construction
    assert all(0 < n < 36 for n in phases[1::2]), phases
    print(f"\n{RUN_TRIALS} run kill trials; records saved at each kill: {phases}")


# -- train -------------------------------------------------------------------------------------

GRID = {"c_grid": [1.0, 8.0], "gamma_grid": [0.05, 0.5]}


def _train_args(root: Path, results: Path) -> list[str]:
    return ["train", "--method", "brisque-svr", "--dataset", "tiny", "--data-root", str(root),
            "--results", str(results),
            "-o", f"c_grid={json.dumps(GRID['c_grid'])}", "-o", f"gamma_grid={json.dumps(GRID['gamma_grid'])}"]


def test_kill_train_at_random_points(tiny_root, tmp_path):
    import sklearn  # noqa: F401
    rng = random.Random(SEED + 1)
    common = dict(method="brisque-svr", dataset="tiny", data_root=tiny_root, options=GRID)
    started = time.monotonic()
    ref_dir, _ = train(TrainConfig(**common, results=tmp_path / "reference"), on_log=lambda m: None)
    one_train = time.monotonic() - started + 2.0
    ref_run = run(RunConfig(**common, results=tmp_path / "reference", progress=False, n_boot=200),
                  on_log=lambda m: None)
    ref_model = (ref_dir / "svr.safetensors").read_bytes()
    phases = []
    for trial in range(TRAIN_TRIALS):
        results = tmp_path / f"trial{trial}"
        workdir = results / ref_dir.relative_to(tmp_path / "reference")
        caches = [workdir / "features.train.jsonl", workdir / "features.val.jsonl"]
        n_features = lambda cs=caches: sum(len(_complete_lines(c)) for c in cs)  # noqa: E731
        by_time = trial % 2 == 0
        at_time = rng.uniform(0.0, one_train) if by_time else None
        target = rng.randint(1, 20)
        _kill_when(_cli(_train_args(tiny_root, results)), lambda n=n_features, t=target: n() >= t, at_time)

        saved = {c: _complete_lines(c) for c in caches}
        phases.append(sum(len(v) for v in saved.values()))
        out_dir, summary = train(TrainConfig(**common, results=results), on_log=lambda m: None)
        assert out_dir == workdir
        for cache, lines in saved.items():
            final = _complete_lines(cache)
            assert final[: len(lines)] == lines, "a saved feature line was lost or rewritten"
            ids = [json.loads(x)["id"] for x in final]
            assert len(ids) == len(set(ids)), "features of an image were computed twice"
        assert (workdir / "svr.safetensors").read_bytes() == ref_model
        assert json.loads((workdir / "train_summary.json").read_text())["selected"] == summary["selected"]
        result = run(RunConfig(**common, results=results, progress=False, n_boot=200), on_log=lambda m: None)
        pd.testing.assert_frame_equal(_frame(result.run_dir), _frame(ref_run.run_dir))
        _assert_same_metrics(result.metrics, ref_run.metrics)
    assert all(n > 0 for n in phases[1::2]), phases
    print(f"\n{TRAIN_TRIALS} train kill trials; feature lines saved at each kill: {phases}")
