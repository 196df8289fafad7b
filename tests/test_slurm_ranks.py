"""Processes started by SLURM's `srun` without torchrun become data-parallel ranks (iqabench/parallel.py).

`srun -n 2 iqabench run ...` starts two plain processes whose only hint is SLURM_PROCID and
SLURM_NTASKS. The test starts two such processes itself, with the variables srun sets and none of
torchrun's, and checks that they share the images: each scores its own half, once, and the merged
result equals a single process's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from iqabench import parallel
from iqabench.errors import IqaError
from iqabench.run import RunConfig, run

PLUGINS = Path(__file__).parent / "plugins"
PLUGIN_ARGS = ["--plugin", str(PLUGINS / "tiny_dataset_plugin.py"), "--plugin", str(PLUGINS / "slow_method.py")]
TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")


def _srun_env(rank: int, ntasks: int, job: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES and not k.startswith("SLURM_")}
    env.update({"SLURM_PROCID": str(rank), "SLURM_NTASKS": str(ntasks), "SLURM_STEP_NUM_TASKS": str(ntasks),
                "SLURM_LOCALID": str(rank), "SLURM_JOB_ID": job, "SLURM_STEP_ID": "0", "OMP_NUM_THREADS": "1",
                "HF_HUB_OFFLINE": "1"})
    return env


def test_two_srun_tasks_share_the_images(tiny_root, tmp_path):
    log = tmp_path / "scored.log"
    results = tmp_path / "res"
    args = [sys.executable, "-m", "iqabench.cli.main", *PLUGIN_ARGS, "run", "--method", "slow-sharpness",
            "--dataset", "tiny", "--split", "all", "--data-root", str(tiny_root), "--results", str(results),
            "--no-progress", "-o", "delay=0.05", "-o", f"log={log}"]
    job = f"{os.getpid()}{tmp_path.name[-6:]}"
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_srun_env(rank, 2, job)) for rank in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outs):
        assert proc.returncode == 0, err
    run_dir = next(results.glob("runs/tiny/all-test/*/"))
    files = sorted(p.name for p in run_dir.glob("predictions*.jsonl"))
    assert files == ["predictions.rank0-of2.jsonl", "predictions.rank1-of2.jsonl"]
    per_rank = [[json.loads(x)["id"] for x in (run_dir / f).read_text().splitlines()] for f in files]
    assert len(per_rank[0]) == len(per_rank[1]) == 18 and not set(per_rank[0]) & set(per_rank[1])
    assert sorted(log.read_text().split()) == sorted(per_rank[0] + per_rank[1])  # each image scored once
    assert "n=36 scored=36 missing=0 failed=0 | complete" in outs[0][0]  # rank 0 reports the metrics
    single = run(RunConfig(method="slow-sharpness", dataset="tiny", split="all", data_root=tiny_root,
                           results=tmp_path / "single", options={"delay": 0.05, "log": str(log)}, progress=False),
                 on_log=lambda m: None).run_dir
    assert single.name == run_dir.name
    columns = ["id", "score", "label", "error"]
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "predictions.csv")[columns],
                                  pd.read_csv(single / "predictions.csv")[columns])


def test_launch_reads_srun_and_torchrun_variables(monkeypatch):
    for name in (*TORCHRUN_VARIABLES, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    assert parallel.launch() == parallel.Launch(0, 1, 0, "none")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")  # inside a step, the step's tasks are the ranks
    assert parallel.launch() == parallel.Launch(3, 4, 1, "slurm")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert parallel.launch().size == 1  # `srun -n 1`: one process, no process group
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun inside a SLURM job: torchrun's variables win
    monkeypatch.setenv("RANK", "1")
    assert parallel.launch() == parallel.Launch(1, 2, 1, "torchrun")


def test_a_task_outside_the_step_is_refused_in_one_line(monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "2")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    with pytest.raises(IqaError, match=r"SLURM_PROCID=2 is not a task of 2 .*srun -n N"):
        parallel.launch()


def test_an_sbatch_script_of_several_tasks_without_srun_is_refused_in_one_line(monkeypatch):
    """`sbatch -n 2` runs its script once, with SLURM_NTASKS=2 and SLURM_PROCID=0 but no step of its own
    (srun sets SLURM_STEP_NUM_TASKS in every task): that one process would wait for a rank never started."""
    for name in (*TORCHRUN_VARIABLES, "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    with pytest.raises(IqaError, match=r"^SLURM_NTASKS=2 but this process is not an srun task .*`srun iqabench run"):
        parallel.launch()
    monkeypatch.setenv("SLURM_NTASKS", "1")  # `sbatch -n 1`: one process, nothing to wait for
    assert parallel.launch() == parallel.Launch(0, 1, 0, "none")
