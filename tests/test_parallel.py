"""Data-parallel runs on torch.distributed: real `torchrun` launches of 2 CPU processes (gloo).

Merged predictions equal a single-process run; a rank that fails stops the others with its
error; a run killed with 2 ranks resumes with 1 process and the other way round, scoring
nothing twice.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch  # noqa: F401

from iqabench.run import RunConfig, run  # noqa: E402
from iqabench.store import RunStore  # noqa: E402

PLUGINS = Path(__file__).parent / "plugins"
PLUGIN_ARGS = ["--plugin", str(PLUGINS / "tiny_dataset_plugin.py"), "--plugin", str(PLUGINS / "slow_method.py")]
COLUMNS = ["id", "score", "label", "error"]

# A method that cannot start on rank 1, as a model too big for one GPU would; it is named by
# the test itself with --plugin, the only way a plugin file gets loaded.
FAILING_RANK_PLUGIN = '''
import os
from iqabench.api import Method
from iqabench.registry import methods, register_method

SlowSharpness = methods.get("slow-sharpness")


@register_method
class FailsOnRankOne(SlowSharpness):
    name = "fails-on-rank-one"
    prepare = Method.prepare  # no dataset-wide pass: the failure comes in the scoring phase

    def setup(self, ctx):
        super().setup(ctx)
        if os.environ.get("RANK") == "1":
            raise RuntimeError("rank 1 cannot load its model (on purpose)")


@register_method
class FailsOnRankOneInPrepare(SlowSharpness):
    name = "fails-on-rank-one-in-prepare"

    def prepare(self, source):
        if os.environ.get("RANK") == "1":
            raise RuntimeError("rank 1 cannot load its model (on purpose)")
'''


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def launch(nproc: int, args: list[str], plugins: list[str] = ()) -> subprocess.Popen:
    """`iqabench ...` on `nproc` processes: torchrun for 2+, a plain process for 1."""
    cli = ["-m", "iqabench.cli.main", *PLUGIN_ARGS, *[a for p in plugins for a in ("--plugin", p)], *args]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *cli]
    else:
        cmd = [sys.executable, *cli]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def run_args(root: Path, results: Path, *options: str) -> list[str]:
    out = ["run", "--method", "slow-sharpness", "--dataset", "tiny", "--split", "all", "--data-root", str(root),
           "--results", str(results), "--no-progress"]
    for opt in options:
        out += ["-o", opt]
    return out


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a launcher and its workers (torchrun starts each worker in its own session)."""
    import psutil
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for child in children:
        try:
            child.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.kill()
    proc.communicate()
    psutil.wait_procs(children, timeout=30)


def saved_ids(run_dir: Path) -> list[str]:
    """Ids of the complete records of every prediction file (a torn last line is not saved)."""
    ids = []
    for path in sorted(run_dir.glob("predictions*.jsonl")):
        data = path.read_text()
        lines = data.split("\n")
        ids += [json.loads(line)["id"] for line in lines[:-1] if line.strip()]
    return ids


def wait_for_records(results: Path, at_least: int, proc: subprocess.Popen, timeout: float = 180) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        dirs = list(results.glob("runs/tiny/all-test/*/"))
        if dirs and len(saved_ids(dirs[0])) >= at_least:
            return dirs[0]
        if proc.poll() is not None:
            raise AssertionError(f"finished before {at_least} records were saved: {proc.communicate()}")
        time.sleep(0.02)
    kill_tree(proc)
    raise AssertionError(f"no {at_least} records within {timeout} s")


def reference(root: Path, results: Path, delay: float, log: Path) -> Path:
    """The same configuration (same options, so the same key), uninterrupted, in one process."""
    result = run(RunConfig(method="slow-sharpness", dataset="tiny", split="all", data_root=root, results=results,
                           options={"delay": delay, "log": str(log)}, progress=False), on_log=lambda m: None)
    return result.run_dir


def assert_same_results(a: Path, b: Path) -> None:
    assert a.name == b.name  # the same configuration has the same key whatever the process count
    pd.testing.assert_frame_equal(pd.read_csv(a / "predictions.csv")[COLUMNS],
                                  pd.read_csv(b / "predictions.csv")[COLUMNS])
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for key in ("n", "n_failed", "n_missing", "srcc", "krcc", "plcc", "plcc_raw", "rmse", "ci95", "status"):
        assert ma[key] == mb[key], key


def test_two_ranks_merge_to_the_single_process_result(tiny_root, tmp_path):
    log = tmp_path / "scored.log"
    proc = launch(2, run_args(tiny_root, tmp_path / "ddp", "delay=0.05", f"log={log}"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    ddp = next((tmp_path / "ddp").glob("runs/tiny/all-test/*/"))
    files = sorted(p.name for p in ddp.glob("predictions*.jsonl"))
    assert files == ["predictions.rank0-of2.jsonl", "predictions.rank1-of2.jsonl"]
    per_rank = [[json.loads(x)["id"] for x in (ddp / f).read_text().splitlines()] for f in files]
    assert len(per_rank[0]) == len(per_rank[1]) == 18 and not set(per_rank[0]) & set(per_rank[1])
    assert sorted(log.read_text().split()) == sorted(per_rank[0] + per_rank[1])  # each image scored once
    # metrics computed once, by rank 0
    assert "n=36 scored=36 missing=0 failed=0 | complete" in out and out.count("SRCC") == 1
    assert_same_results(ddp, reference(tiny_root, tmp_path / "single", 0.05, log))


def test_the_dataset_wide_pass_is_sharded_across_ranks(tiny_root, tmp_path):
    """A method's prepare() (Dog-IQA segments every image there) is split between ranks: each image's
    expensive work is done once in all, not once per rank, and scoring still sees every image prepared."""
    prep = tmp_path / "prepared.log"
    proc = launch(2, run_args(tiny_root, tmp_path / "ddp", f"prepare_log={prep}", "delay=0.05"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    done = prep.read_text().split()
    assert sorted(done) == sorted(set(done)) and len(done) == 36


@pytest.mark.parametrize("method", ["fails-on-rank-one", "fails-on-rank-one-in-prepare"])
def test_a_failing_rank_stops_every_rank_with_its_error(tiny_root, tmp_path, method):
    plugin = tmp_path / "failing_rank.py"
    plugin.write_text(FAILING_RANK_PLUGIN)
    log = tmp_path / "scored.log"
    args = run_args(tiny_root, tmp_path / "res", "delay=1.0", f"log={log}")
    args[args.index("slow-sharpness")] = method
    proc = launch(2, args, plugins=[str(plugin)])
    out, err = proc.communicate(timeout=240)  # a hang guard only: rank 0 alone would need 18 s
    assert proc.returncode != 0
    # rank 0 reports rank 1's error itself, in one line, and exits non-zero
    line = next((x for x in err.splitlines() if x.startswith("iqabench: error (rank 0 of 2):")), None)
    assert line is not None, err
    assert "rank 1 failed: RuntimeError: rank 1 cannot load its model (on purpose)" in line
    # rank 0 stopped early instead of scoring its whole shard of 18 images
    scored = log.read_text().split() if log.exists() else []
    assert len(scored) < 18
    run_dir = next((tmp_path / "res").glob("runs/tiny/all-test/*/"))
    assert not (run_dir / "metrics.json").exists()
    assert sorted(saved_ids(run_dir)) == sorted(set(saved_ids(run_dir)))
    assert (run_dir / ".failed.rank1").exists()


def test_resume_across_a_change_of_process_count(tiny_root, tmp_path):
    """2 ranks killed -> 1 process killed -> 2 ranks finish: nothing saved is scored again."""
    log = tmp_path / "scored.log"
    results = tmp_path / "res"
    args = run_args(tiny_root, results, "delay=0.1", f"log={log}")
    saved: set[str] = set()
    run_dir = None
    for nproc, kill_at in ((2, 4), (1, 4), (2, None)):
        before = len(log.read_text().split()) if log.exists() else 0
        proc = launch(nproc, args)
        if kill_at is None:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
        else:
            run_dir = wait_for_records(results, len(saved) + kill_at, proc)
            kill_tree(proc)
        rescored = log.read_text().split()[before:]
        assert not set(rescored) & saved, "an image saved by an earlier attempt was scored again"
        now = saved_ids(run_dir)
        assert len(now) == len(set(now)), "an image was saved twice"
        assert saved <= set(now), "a saved record was lost"
        saved = set(now)
    files = sorted(p.name for p in run_dir.glob("predictions*.jsonl"))
    assert files == ["predictions.jsonl", "predictions.rank0-of2.jsonl", "predictions.rank1-of2.jsonl"]
    assert len(saved) == 36
    attempts = [json.loads(line) for line in (run_dir / "attempts.jsonl").read_text().splitlines()]
    assert [a["world_size"] for a in attempts] == [2, 1, 2]  # every attempt is recorded, first included
    assert_same_results(run_dir, reference(tiny_root, tmp_path / "single", 0.1, log))


def test_records_merge_the_same_whatever_the_file_order(tmp_path):
    """Files of several attempts (1 process, then 2 ranks): a success is never replaced by an older
    failure from a file read later, and a final line without its newline is not counted as saved."""
    def line(i, score, error=None):
        return json.dumps({"id": i, "score": score, "label": 1.0, "error": error}) + "\n"

    (tmp_path / "predictions.jsonl").write_text(line("a", 0.5) + line("b", None, "decode: x"))
    (tmp_path / "predictions.rank0-of2.jsonl").write_text(line("a", None, "score: boom") + line("b", 0.7))
    (tmp_path / "predictions.rank1-of2.jsonl").write_text(line("c", 0.9) + line("d", 0.1).rstrip("\n"))
    with RunStore(tmp_path, 1, 2) as store:
        records = store.read_records()
        assert records["a"]["score"] == 0.5 and records["b"]["score"] == 0.7 and "d" not in records
        store.append({"id": "d", "score": 0.2, "label": 1.0, "error": None})  # drops the torn tail first
    rank1 = (tmp_path / "predictions.rank1-of2.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in rank1] == ["c", "d"]
