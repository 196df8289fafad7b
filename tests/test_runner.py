"""The runner: records, failures, resume after SIGKILL, locking."""
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

from iqabench.errors import IqaError
from iqabench.run import RunConfig, run
from iqabench.store import RunStore

PLUGINS = Path(__file__).parent / "plugins"


def cfg(root, results, **kw):
    base = dict(method="slow-sharpness", dataset="tiny", split="all", data_root=root, results=results,
                progress=False, n_boot=50)
    base.update(kw)
    return RunConfig(**base)


def test_run_writes_manifest_predictions_and_metrics(tiny_root, tmp_path):
    result = run(cfg(tiny_root, tmp_path), on_log=lambda m: None)
    m = result.metrics
    for key in ("method", "dataset", "split", "n", "n_failed", "srcc", "krcc", "plcc", "plcc_raw", "rmse", "ci95"):
        assert key in m
    assert m["n"] == 36 and m["n_failed"] == 0 and m["status"] == "complete"
    assert m["srcc"] is not None and -1 <= m["srcc"] <= 1
    assert m["runtime_attempts"][0]["fingerprint"]["method"] == "slow-sharpness"
    assert m["model_identity_changed"] is False
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    for key in ("options", "split_hash", "packages", "git_commit", "device", "batch_size", "seed", "fingerprint"):
        assert key in manifest
    preds = pd.read_csv(result.run_dir / "predictions.csv")
    assert len(preds) == 36 and preds["score"].notna().all()
    assert json.loads((result.run_dir / "metrics.json").read_text())["srcc"] == m["srcc"]


def test_failures_are_records_and_counted(tiny_root, tmp_path):
    ids = ["astronaut_jpeg_1.png", "coffee_white_noise_3.png"]
    result = run(cfg(tiny_root, tmp_path, batch_size=4, options={"fail_on": ids[:1], "nan_on": ids[1:]}),
                 on_log=lambda m: None)
    m = result.metrics
    assert m["n"] == 36 and m["n_failed"] == 2 and m["n_scored"] == 34
    preds = pd.read_csv(result.run_dir / "predictions.csv").set_index("id")
    assert "refusing astronaut_jpeg_1.png on purpose" in preds.loc[ids[0], "error"]
    assert "non-finite" in preds.loc[ids[1], "error"]
    # the other images of the failing batch were still scored, one by one
    assert preds["score"].notna().sum() == 34


def test_undecodable_image_is_a_recorded_failure(tiny_root, tmp_path):
    root = tmp_path / "data"
    import shutil

    shutil.copytree(tiny_root / "tiny", root / "tiny")
    (root / "tiny" / "images" / "chelsea_jpeg_5.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    m = run(cfg(root, tmp_path / "res"), on_log=lambda m: None).metrics
    assert m["n_failed"] == 1 and m["failures_by_kind"] == {"decode": 1}


def test_a_second_run_scores_nothing(tiny_root, tmp_path):
    first = run(cfg(tiny_root, tmp_path), on_log=lambda m: None)
    second = run(cfg(tiny_root, tmp_path), on_log=lambda m: None)
    assert first.scored_now == 36 and second.scored_now == 0
    assert first.run_dir == second.run_dir and first.metrics["srcc"] == second.metrics["srcc"]


def test_other_options_make_another_run(tiny_root, tmp_path):
    a = run(cfg(tiny_root, tmp_path, limit=5), on_log=lambda m: None)
    b = run(cfg(tiny_root, tmp_path, limit=6), on_log=lambda m: None)
    assert a.run_dir != b.run_dir


def test_a_locked_run_is_refused(tiny_root, tmp_path):
    first = run(cfg(tiny_root, tmp_path, limit=3), on_log=lambda m: None)
    with RunStore(first.run_dir):
        # finished: shown as it stands, which reads only and needs no lock (a read-only archive works too)
        shown = run(cfg(tiny_root, tmp_path, limit=3), on_log=lambda m: None)
        assert shown.scored_now == 0 and shown.metrics["srcc"] == first.metrics["srcc"]
        (first.run_dir / "metrics.json").unlink()  # now the rerun has to write
        with pytest.raises(IqaError, match="another iqabench process"):
            run(cfg(tiny_root, tmp_path, limit=3), on_log=lambda m: None)


def test_torn_last_line_is_dropped_on_resume(tiny_root, tmp_path):
    result = run(cfg(tiny_root, tmp_path, limit=4), on_log=lambda m: None)
    path = result.run_dir / "predictions.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3]) + lines[3][:10])  # a kill in the middle of a write
    again = run(cfg(tiny_root, tmp_path, limit=4), on_log=lambda m: None)
    assert again.scored_now == 1
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == [json.loads(x)["id"] for x in lines]


def _cli(args, **kw):
    cmd = [sys.executable, "-m", "iqabench.cli.main", "--plugin", str(PLUGINS / "tiny_dataset_plugin.py"),
           "--plugin", str(PLUGINS / "slow_method.py"), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("kill_after", [3, 11])
def test_sigkill_then_resume_equals_uninterrupted_run(tiny_root, tmp_path, kill_after):
    common = ["run", "--method", "slow-sharpness", "--dataset", "tiny", "--split", "all", "--data-root", str(tiny_root),
              "--no-progress", "--batch-size", "2"]
    log, pause = tmp_path / "scored.log", tmp_path / "pause"
    # the run pauses once kill_after images are scored (at a batch boundary): however loaded the machine,
    # the kill lands mid-run, after the records the test waits for
    options = ["-o", "delay=0.05", "-o", f"log={log}", "-o", f"pause_after={kill_after}", "-o", f"pause_file={pause}"]
    pause.touch()
    killed = _cli(common + ["--results", str(tmp_path / "a"), *options])
    preds = None
    deadline = time.time() + 120
    while time.time() < deadline:
        found = list((tmp_path / "a").glob("runs/tiny/all-test/*/predictions.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= kill_after:
            preds = found[0]
            break
        assert killed.poll() is None, killed.communicate()
        time.sleep(0.02)
    assert preds is not None, killed.communicate()
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    saved_at_kill = {json.loads(x)["id"] for x in preds.read_text().splitlines() if x.endswith("}")}
    scored_before = log.read_text().splitlines()
    assert len(saved_at_kill) == -(-kill_after // 2) * 2  # paused at the first batch boundary (batches of 2)

    pause.unlink()
    resumed = _cli(common + ["--results", str(tmp_path / "a"), *options])
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    rescored = log.read_text().splitlines()[len(scored_before):]
    assert not set(rescored) & saved_at_kill  # nothing saved was scored again
    assert set(rescored) | saved_at_kill == set(pd.read_csv(preds.parent / "predictions.csv")["id"])

    clean = _cli(common + ["--results", str(tmp_path / "b"), *options])
    assert clean.wait(timeout=300) == 0
    run_b = next((tmp_path / "b").glob("runs/tiny/all-test/*/"))
    assert run_b.name == preds.parent.name  # same configuration, same key
    a = pd.read_csv(preds.parent / "predictions.csv")[["id", "score", "label", "error"]]
    b = pd.read_csv(run_b / "predictions.csv")[["id", "score", "label", "error"]]
    pd.testing.assert_frame_equal(a, b)
    ma = json.loads((preds.parent / "metrics.json").read_text())
    mb = json.loads((run_b / "metrics.json").read_text())
    for key in ("n", "n_failed", "srcc", "krcc", "plcc", "plcc_raw", "rmse", "ci95"):
        assert ma[key] == mb[key]
