"""The command line: lazy and fast to answer, global options anywhere, one-line errors, exit codes.

Most tests call the click command in-process (CliRunner); three run a real process where the
process itself is what is tested (what `--help` imports; how fast is a benchmark), a run with plugins, exit
codes including Ctrl-C).
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from iqabench.cli.main import COMMANDS, cli

PLUGINS = Path(__file__).parent / "plugins"
HEAVY = ("numpy", "pandas", "pydantic", "torch")


def invoke(*args: str):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def one_line_error(result) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("iqabench: error"), result.stderr
    return result.stderr


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# -- true processes ------------------------------------------------------------------------------

def test_help_imports_nothing_heavy():
    probe = textwrap.dedent(f"""
        import json, sys
        from iqabench.cli.main import main
        codes = [main(["--help"]), main([])]
        codes += [main([name, "--help"]) for name in {list(COMMANDS)!r}]
        codes += [main(["list", name, "--help"]) for name in ("methods", "datasets", "splits")]
        print(json.dumps({{"codes": codes, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["heavy"] == [], f"--help imported {found['heavy']}"
    assert set(found["codes"]) == {0}
    # how fast is benchmarks/bench_listing.py's question (a goal, not a test: it depends on the machine)


def test_run_in_a_process_with_plugins_and_global_options_on_both_sides(tiny_root, tmp_path):
    results = tmp_path / "r"
    out = subprocess.run(
        [sys.executable, "-m", "iqabench.cli.main", "--plugin", str(PLUGINS / "tiny_dataset_plugin.py"),
         "--data-root", str(tiny_root), "run", "--method", "slow-sharpness", "--dataset", "tiny", "--split", "all",
         "--no-progress", "--plugin", str(PLUGINS / "slow_method.py"), "--results", str(results)],
        capture_output=True, text=True, timeout=300, env=_env())
    assert out.returncode == 0, out.stderr
    [metrics_file] = list(results.rglob("metrics.json"))
    metrics = json.loads(metrics_file.read_text())
    assert metrics["method"] == "slow-sharpness" and metrics["n"] == 36 and metrics["n_failed"] == 0
    assert f"SRCC {metrics['srcc']:.4f}" in out.stdout


def _signal_masks(pid: int) -> dict:
    """Each thread's pending, blocked, ignored and caught signal masks, from /proc (Linux)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            lines = (task / "status").read_text().splitlines()
        except OSError:
            continue
        out[task.name] = " ".join(line.replace("\t", "") for line in lines
                                  if line.startswith(("Name", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")))
    return out


def test_exit_codes_of_a_process_including_ctrl_c(tiny_root, tmp_path):
    base = [sys.executable, "-m", "iqabench.cli.main", "--plugin", str(PLUGINS / "tiny_dataset_plugin.py"),
            "--plugin", str(PLUGINS / "slow_method.py")]
    assert subprocess.run(base, capture_output=True, env=_env()).returncode == 0
    usage = subprocess.run(base + ["run", "--dataset", "tiny"], capture_output=True, text=True, env=_env())
    assert usage.returncode == 2 and "Missing option '--method'" in usage.stderr and "Traceback" not in usage.stderr
    bad = subprocess.run(base + ["run", "--method", "slow-sharpness", "--dataset", "nowhere"], capture_output=True,
                         text=True, env=_env(), cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("iqabench: error: ") and "nowhere" in bad.stderr
    # Ctrl-C in the middle of a run: 130, the resume message, no traceback
    log = tmp_path / "scored.log"
    # a shell's background job (`(cmd &)`, nohup) starts with SIGINT ignored, and a child inherits that; with a
    # handler here the child starts with the default instead, as from a terminal
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    proc = subprocess.Popen(base + ["run", "--method", "slow-sharpness", "--dataset", "tiny", "--split", "all",
                                    "--data-root", str(tiny_root), "--results", str(tmp_path / "r"), "--no-progress",
                                    "-o", "delay=2", "-o", f"log={log}"],  # 70 s left after the first image
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**_env(), "PYTHONFAULTHANDLER": "1"})  # SIGABRT prints every thread's stack
    signal.signal(signal.SIGINT, previous)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 1):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # say where it was, not only that it did not stop
            masks = _signal_masks(proc.pid)
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"still running 60 s after SIGINT; signal masks {masks}; its threads at SIGABRT:\n{err[-6000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; everything saved so far is kept" in err and "Traceback" not in err


def _records(results):
    return [line for path in results.rglob("predictions*.jsonl") for line in path.read_text().splitlines()]


def test_sigterm_is_handled_like_ctrl_c_with_its_own_exit_status(tiny_root, tmp_path):
    base = [sys.executable, "-m", "iqabench.cli.main", "--plugin", str(PLUGINS / "tiny_dataset_plugin.py"),
            "--plugin", str(PLUGINS / "slow_method.py")]
    results = tmp_path / "r"
    args = ["run", "--method", "slow-sharpness", "--dataset", "tiny", "--split", "all", "--data-root", str(tiny_root),
            "--results", str(results), "--no-progress"]
    # 2 s per image: after the first record is saved the run has 70 s to go, whatever the machine's load
    proc = subprocess.Popen(base + args + ["-o", "delay=2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not _records(results):  # the known point: a record saved
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["iqabench: terminated (SIGTERM); everything saved so far is kept, rerun the "
                                        "same command to resume"], err
    kept = [json.loads(line) for line in _records(results)]  # every saved record whole
    assert 1 <= len(kept) < 36 and not list(results.rglob("metrics.json"))  # stopped mid-run, records kept
    assert all(r["error"] is None and r["score"] is not None for r in kept)


# -- the root command ----------------------------------------------------------------------------

def test_bare_iqabench_prints_the_help_and_succeeds():
    result = invoke()
    assert result.exit_code == 0
    assert "Commands:" in result.stdout
    for name in COMMANDS:
        assert f"\n  {name} " in result.stdout
    listing = invoke("list")
    assert listing.exit_code == 0
    assert all(f"\n  {name} " in listing.stdout for name in ("methods", "datasets", "splits"))


def test_version_comes_from_the_installed_metadata():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"iqabench {importlib.metadata.version('iqabench')}"


@pytest.mark.parametrize("command", [*COMMANDS, "list methods", "list datasets", "list splits"])
def test_every_command_help_has_an_example(command):
    result = invoke(*command.split(), "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and "  iqabench " in result.stdout.split("Example", 1)[1]
    for option in ("--plugin", "--results", "--data-root", "--quiet", "--verbose"):
        if command != "list":
            assert option in result.stdout, (command, option)


def test_unknown_command_suggests_the_close_one():
    assert "did you mean 'run'" in one_line_error(invoke("runn"))


# -- global options before or after the subcommand --------------------------------------------------

def _probe_plugin(tmp_path: Path) -> tuple[Path, str]:
    """A plugin file that registers a copy of `tiny` under a fresh name."""
    name = f"probe-{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"probe_{name[6:]}.py"
    path.write_text(textwrap.dedent(f"""
        import dataclasses
        from iqabench import registry
        registry.datasets.register({name!r}, dataclasses.replace(registry.datasets.get("tiny"), name={name!r}))
    """))
    return path, name


@pytest.mark.parametrize("where", ["before", "after", "both"])
def test_global_options_before_or_after_the_subcommand(tmp_path, where, scratch_registry):
    plugin, name = _probe_plugin(tmp_path)
    data_root = tmp_path / f"data-{where}"
    globals_ = ["--plugin", plugin, "--data-root", data_root]
    args = {"before": [*globals_, "datasets"], "after": ["datasets", *globals_],
            # the same plugin named on both sides is imported once; the later --data-root wins
            "both": ["--plugin", plugin, "--data-root", tmp_path / "other", "datasets", *globals_]}[where]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith(name + " "))
    assert "built on first use under" in line and str(data_root / "tiny") in line
    missing = tmp_path / f"results-{where}"
    args = ["--results", missing, "report"] if where == "before" else ["report", "--results", missing]
    if where == "both":
        args = ["--results", tmp_path / "other", "report", "--results", missing]
    assert str(missing) in one_line_error(invoke(*args))


def test_results_that_is_a_file_is_a_one_line_error(tmp_path):
    afile = tmp_path / "results.txt"
    afile.write_text("not a folder")
    assert f"--results {afile}: is a file" in one_line_error(invoke("--results", afile, "datasets"))
    assert f"--results {afile}: is a file" in one_line_error(invoke("report", "--results", afile))


@pytest.mark.parametrize("flags,level", [((), logging.INFO), (("-q",), logging.WARNING), (("-v",), logging.DEBUG)])
def test_quiet_and_verbose_set_the_iqabench_log_level(tmp_path, flags, level):
    result = invoke(*flags, "datasets", "--data-root", tmp_path)
    assert result.exit_code == 0
    logger = logging.getLogger("iqabench")
    assert logger.level == level
    assert sum(type(h).__name__ == "_StderrHandler" for h in logger.handlers) == 1  # configured once


def test_quiet_and_verbose_together_are_refused(tmp_path):
    assert "contradict" in one_line_error(invoke("-q", "datasets", "-v", "--data-root", tmp_path))


# -- validation at the edge ------------------------------------------------------------------------

@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--limit", "0"), ("--seed", "-1")])
def test_out_of_range_numbers_are_refused_before_any_work(tmp_path, flag, value):
    err = one_line_error(invoke("run", "--method", "slow-sharpness", "--dataset", "tiny", flag, value,
                                "--results", tmp_path / "r"))
    assert flag in err and "not in the range" in err
    assert not (tmp_path / "r").exists()


def test_bad_option_pairs_are_one_line(tmp_path):
    err = one_line_error(invoke("run", "--method", "slow-sharpness", "--dataset", "tiny", "-o", "delay",
                                "--results", tmp_path / "r"))
    assert "'delay'" in err and "key=value" in err
    err = one_line_error(invoke("train", "--method", "brisque-svr", "--dataset", "synthetic", "-o", "c_gird=[1]",
                                "--data-root", tmp_path, "--results", tmp_path / "r"))
    assert "c_gird" in err
    # a JSON typo is said to be one, with where it is, before any method reads the value
    typo = '{"test_y_channel": false,}'
    err = one_line_error(invoke("run", "--method", "pyiqa:piqe", "--dataset", "synthetic", "-o",
                                f"metric_options={typo}", "--data-root", tmp_path, "--results", tmp_path / "r"))
    where = typo.index(",}") + 1  # the '}' where a property name was expected
    assert "metric_options" in err and "is not valid JSON" in err and f"at position {where} " in err
    assert "valid dictionary" not in err
    assert not (tmp_path / "r").exists()
    from iqabench.options import parse_option_pairs

    assert parse_option_pairs(["path=/data/x{1}.png", "name=plain"]) == {"path": "/data/x{1}.png", "name": "plain"}


def test_unknown_method_is_one_line_with_a_suggestion(tmp_path):
    err = one_line_error(invoke("run", "--method", "brisque-svm", "--dataset", "synthetic", "--data-root", tmp_path,
                                "--results", tmp_path / "r"))
    assert "did you mean brisque-svr" in err


def test_a_misspelt_name_among_several_fails_before_the_first_run(tiny_root, tmp_path):
    err = one_line_error(invoke("run", "--method", "slow-sharpness,slow-sharpnes", "--dataset", "tiny",
                                "--split", "all", "--data-root", tiny_root, "--results", tmp_path / "r"))
    assert "slow-sharpnes'" in err
    assert not list((tmp_path / "r").rglob("predictions.jsonl"))


def test_run_missing_weights_fails_in_one_line(tiny_root, tmp_path):
    err = one_line_error(invoke("run", "--method", "niqe", "--dataset", "tiny", "--split", "all",
                                "--data-root", tiny_root, "--results", tmp_path / "r"))
    assert "needs weight file" in err and "put it in" in err


def test_missing_dataset_explains_the_layout(tmp_path):
    err = one_line_error(invoke("run", "--method", "piqe", "--dataset", "koniq10k", "--data-root", tmp_path,
                                "--results", tmp_path / "r"))
    assert "koniq10k_distributions_sets.csv" in err and "published at" in err
    listing = invoke("datasets", "--data-root", tmp_path)
    assert listing.exit_code == 0
    assert "missing" in listing.stdout and "built on first use" in listing.stdout


# -- several runs, splits, re-scoring -------------------------------------------------------------

def test_comma_and_repeated_method_give_one_run_each_and_one_table(tiny_root, tmp_path):
    results = tmp_path / "r"
    result = invoke("run", "--method", "slow-sharpness", "--method", "pyiqa:entropy", "--dataset", "tiny",
                    "--split", "all", "--no-progress", "--data-root", tiny_root, "--results", results)
    assert result.exit_code == 0, result.stderr
    metrics = {m["method"]: m for m in (json.loads(p.read_text()) for p in results.rglob("metrics.json"))}
    assert set(metrics) == {"slow-sharpness", "pyiqa:entropy"}
    assert all(m["n"] == 36 for m in metrics.values())
    table = result.stdout[result.stdout.index("method  "):].splitlines()
    assert table[0].split() == ["method", "dataset", "split/part", "n", "scored", "missing", "failed", "status",
                                "SRCC", "PLCC", "RMSE"]
    rows = {line.split()[0]: line.split() for line in table[2:]}
    assert set(rows) == set(metrics)
    for name, m in metrics.items():
        assert rows[name][3:8] == ["36", "36", "0", "0", "complete"] and rows[name][8] == f"{m['srcc']:.4f}"
    # a smoke test (--limit) is listed with its status, and no numbers in the table
    smoke = invoke("run", "--method", "slow-sharpness,pyiqa:entropy", "--dataset", "tiny", "--split", "all",
                   "--limit", "8", "--no-progress", "--data-root", tiny_root, "--results", tmp_path / "smoke")
    assert smoke.exit_code == 0, smoke.stderr
    table = smoke.stdout[smoke.stdout.index("method  "):].splitlines()
    assert all(line.split()[3:] == ["8", "8", "0", "0", "smoke-test", "-", "-", "-"] for line in table[2:4])
    assert "smoke test (--limit 8): not a result" in smoke.stdout


def test_n_split_protocol_runs_each_seed_and_reports_the_median(tiny_root, tmp_path):
    import statistics

    results = tmp_path / "r"
    result = invoke("run", "--method", "slow-sharpness", "--dataset", "tiny", "--split", "ratio80-0-20-seed{1..3}",
                    "--data-root", tiny_root, "--results", results, "--no-progress")
    assert result.exit_code == 0, result.stderr
    srcc = [json.loads(p.read_text())["srcc"] for p in sorted(results.rglob("metrics.json"))]
    assert len(srcc) == 3
    assert f"median SRCC over 3 splits: {statistics.median(srcc):.4f}" in result.stdout
    report = invoke("report", "--results", results)
    assert report.exit_code == 0, report.stderr
    assert "median over 3 split(s), seeds 1-3" in report.stdout


def test_every_cell_is_checked_before_the_first_runs(tiny_root, tmp_path):
    """A misspelt method and a missing dataset among four cells: one line each, nothing run, exit 2;
    --keep-going runs the one cell that can run and names the three it skipped."""
    results = tmp_path / "r"
    common = ("--method", "slow-sharpness,no-such-method", "--dataset", "tiny,no-such-set", "--split", "all",
              "--no-progress", "--data-root", tiny_root, "--results", results)
    refused = invoke("run", *common)
    assert refused.exit_code == 2
    lines = refused.stderr.splitlines()
    assert [line for line in lines if "no-such-method" in line and line.startswith("iqabench: cannot run 2 cells")]
    assert [line for line in lines if line.startswith("iqabench: cannot run slow-sharpness on no-such-set")]
    assert lines[-1].startswith("iqabench: error: 3 of 4 cells cannot run") and len(lines) == 3
    assert not list(results.rglob("metrics.json"))  # not even the cell that could run
    going = invoke("run", *common, "--keep-going")
    assert going.exit_code == 2
    [metrics] = [json.loads(p.read_text()) for p in results.rglob("metrics.json")]
    assert (metrics["method"], metrics["dataset"], metrics["n_scored"]) == ("slow-sharpness", "tiny", 36)
    skipped = going.stdout[going.stdout.index("skipped 3 of 4 cells:"):].splitlines()[1:]
    assert [line.split(":")[0].strip() for line in skipped] == [
        "slow-sharpness on no-such-set split all", "no-such-method on tiny split all",
        "no-such-method on no-such-set split all"]


def test_missing_weights_of_one_cell_stop_the_command_before_any_run(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = invoke("run", "--method", "softmax-owl2,softmax-llava", "--dataset", "tiny", "--split", "all",
                    "-o", "backend_path=iqabench-test/never-downloaded-model", "--no-progress",
                    "--data-root", tiny_root, "--results", tmp_path / "r")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all("never-downloaded-model" in line for line in lines[:2]), lines
    assert lines[-1].startswith("iqabench: error: 2 of 2 cells cannot run")
    assert not (tmp_path / "r" / "runs").exists()


def test_split_median_pools_only_the_seeds_of_one_protocol_and_part(tiny_root, tmp_path):
    """Two splits of one protocol pool; a second batch size of one split, another protocol and
    another part are listed beside the median, never pooled into it."""
    import statistics

    results = tmp_path / "r"
    common = ("--method", "slow-sharpness", "--dataset", "tiny", "--data-root", tiny_root, "--results", results,
              "--no-progress")
    assert invoke("run", *common, "--split", "ratio60-20-20-seed{1..2}").exit_code == 0
    assert invoke("run", *common, "--split", "ratio60-20-20-seed1", "--batch-size", "4").exit_code == 0
    assert invoke("run", *common, "--split", "ratio70-0-30-seed1").exit_code == 0
    assert invoke("run", *common, "--split", "ratio60-20-20-seed2", "--part", "val").exit_code == 0
    folders = sorted(p.parent for p in results.rglob("metrics.json"))
    assert len(folders) == 5
    scored = invoke("score", *folders)
    assert scored.exit_code == 0, scored.stderr
    runs = [(json.loads((f / "metrics.json").read_text()), json.loads((f / "manifest.json").read_text()))
            for f in folders]
    pooled = [m["srcc"] for m, manifest in runs
              if m["split"].startswith("ratio60") and m["part"] == "test" and manifest["batch_size"] == 1]
    assert len(pooled) == 2
    medians = [line for line in scored.stdout.splitlines() if "median SRCC" in line]
    assert medians == [f"median SRCC over 2 splits: {statistics.median(pooled):.4f}"]
    out = scored.stdout
    assert "runs of 3 split protocols or parts (ratio60-20-20/test, ratio60-20-20/val, ratio70-0-30/test)" in out
    assert "ratio60-20-20/test: 2 settings of the method" in out and "not another split" in out


def test_score_recomputes_metrics_from_saved_predictions(tiny_root, tmp_path):
    results = tmp_path / "r"
    assert invoke("run", "--method", "slow-sharpness", "--dataset", "tiny", "--split", "all", "--no-progress",
                  "--data-root", tiny_root, "--results", results).exit_code == 0
    [metrics_file] = list(results.rglob("metrics.json"))
    before = json.loads(metrics_file.read_text())
    label = "slow-sharpness | tiny all/test | n=36 scored=36 missing=0 failed=0"
    metrics_file.unlink()
    result = invoke("score", metrics_file.parent)
    assert result.exit_code == 0, result.stderr
    after = json.loads(metrics_file.read_text())
    assert after["srcc"] == before["srcc"] and after["n"] == before["n"] == 36
    assert f"{label} | complete | SRCC {before['srcc']:.4f}" in result.stdout
    assert "not a run folder" in one_line_error(invoke("score", tmp_path))


def test_score_prints_a_partial_run_as_partial_never_as_a_result(tiny_root, tmp_path):
    results = tmp_path / "r"
    for split in ("all", "byref-ratio34-33-33-seed0"):
        assert invoke("run", "--method", "slow-sharpness", "--dataset", "tiny", "--split", split, "--no-progress",
                      "--data-root", tiny_root, "--results", results).exit_code == 0
    full, cut = sorted((p.parent for p in results.rglob("metrics.json")), key=lambda d: "all-" not in str(d))
    records = (cut / "predictions.jsonl").read_text().splitlines()
    (cut / "predictions.jsonl").write_text("\n".join(records[:5]) + "\n")  # as if stopped after 5 images
    result = invoke("score", full, cut)
    assert result.exit_code == 0, result.stderr
    partial = json.loads((cut / "metrics.json").read_text())
    assert partial["status"] == "partial" and partial["n_scored"] == 5
    n, missing = partial["n"], partial["n"] - 5
    head = next(line for line in result.stdout.splitlines() if line.startswith("slow-sharpness | tiny byref"))
    assert head.endswith(f"| n={n} scored=5 missing={missing} failed=0 | partial: not a result, rerun the same "
                         f"command to score the {missing} missing image(s)")
    assert "SRCC" not in head  # its numbers only on the next line, which says they cover the scored images
    assert f"over the 5 scored image(s) only: SRCC {partial['srcc']:.4f}" in result.stdout
    table = result.stdout[result.stdout.index("method  "):].splitlines()
    assert table[0].split() == ["method", "dataset", "split/part", "n", "scored", "missing", "failed", "status",
                                "SRCC", "PLCC", "RMSE"]
    rows = {line.split()[2].split("-")[0]: line.split() for line in table[2:] if line.startswith("slow-")}
    assert rows["all/test"][3:8] == ["36", "36", "0", "0", "complete"] and rows["all/test"][8] != "-"
    assert rows["byref"][3:] == [str(n), "5", str(missing), "0", "partial", "-", "-", "-"]
    assert "1 run(s) not complete: shown with their status, left out of every median" in result.stdout


# -- describing methods and splits ------------------------------------------------------------------

def test_options_lists_types_defaults_and_aliases():
    result = invoke("options", "slow-sharpness")
    assert result.exit_code == 0, result.stderr
    delay = next(line for line in result.stdout.splitlines() if line.strip().startswith("delay "))
    assert delay.split()[1:4] == ["float", "default", "0.0"]
    fail_on = next(line for line in result.stdout.splitlines() if line.strip().startswith("fail_on "))
    assert "default []" in fail_on
    piqe = invoke("options", "piqe")
    assert piqe.exit_code == 0, piqe.stderr
    assert piqe.stdout.startswith("pyiqa:piqe ") and "aliases: piqe" in piqe.stdout
    assert "resize_short_side" in piqe.stdout and "default null" in piqe.stdout
    assert "did you mean" in one_line_error(invoke("options", "slow-sharpnes"))


def test_options_prints_the_help_written_under_each_field():
    """The string under a field is its help; a field redeclared without one has none (as pydantic reads them)."""
    from iqabench.cli.options_cmd import field_help
    from iqabench.methods.dog_iqa import DogIqaOptions, JudgeOptions

    result = invoke("options", "dog-iqa")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    judge = next(i for i, line in enumerate(lines) if line.strip().startswith("judge "))
    assert lines[judge + 1].strip().startswith("The MLLM judge's backend options (backend, backend_path,")
    assert field_help(DogIqaOptions)["judge_mode"].startswith("generate: the paper's parsed answer")
    inherited = field_help(JudgeOptions)
    assert inherited["revision"] == "the hub revision (commit hash) to load"  # from BackendOptions
    assert "backend" not in inherited  # redeclared in JudgeOptions's body, with no string


def test_list_splits_names_the_default_and_the_computed_forms():
    result = invoke("list", "splits", "tiny")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "default: byref-ratio34-33-33-seed0"
    assert "all" in lines and "byref-ratio{TR}-{VA}-{TE}-seed{S}" in lines
    assert "did you mean" in one_line_error(invoke("list", "splits", "tinny"))


def test_list_splits_shows_committed_sizes_and_sources():
    result = invoke("list", "splits", "agiqa3k")
    assert result.exit_code == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    source = "https://github.com/TianheWu/MLLMs-for-IQA @ b9036ca9fe3a31b9f9d238b072f2fa41175c07e3 : data/AGIQA3K/"
    for name, file in (("seed001-difficult", "AGIQA3K_sampled_difficult.txt"),
                       ("seed001-uniform", "AGIQA3K_sampled_uniform.txt")):
        assert rows[name].split("  ", 1)[1].split() == ["test", "150", *f"{source}{file}".split()]
    assert "train 1789, val 596, test 597" in rows["seed000-vp"]
    # the methods whose recipe runs on a published split by default say so beside the card's default
    assert result.stdout.splitlines()[0] == "default: ratio60-20-20-seed42; vp-llava, vp-owl2: seed000-vp (their recipe's)"
    assert rows["all"] == "all"  # computed forms stay bare names


@pytest.mark.parametrize("dataset, makes, cannot", [
    ("synthetic", ["all", "byref-ratio{TR}-{VA}-{TE}-seed{S}"], ["official"]),  # references, no official parts
    ("koniq10k", ["official", "all"], ["byref-ratio{TR}-{VA}-{TE}-seed{S}"]),  # official parts, no references
    ("tiny", ["all", "byref-ratio{TR}-{VA}-{TE}-seed{S}"], ["official"])])  # a card built in code
def test_list_splits_offers_only_splits_the_dataset_can_make(tiny_root, dataset, makes, cannot):
    result = invoke("list", "splits", dataset, "--data-root", tiny_root)
    assert result.exit_code == 0, result.stderr
    offered = [line.split()[0] for line in result.stdout.splitlines()[1:]]  # a committed split's line adds sizes
    assert set(makes) <= set(offered) and not set(cannot) & set(offered)
    from iqabench import registry
    from iqabench.data import splits

    card = registry.datasets.get(dataset)
    folder = card.locate(tiny_root)
    if folder is not None:  # the data are here: every concrete split offered is one it makes
        table = card.read(folder)
        for name in [n for n in offered if "{" not in n]:
            assert splits.make_split(card.name, table, name).parts["test"], name


def test_list_methods_shows_kind_needs_and_availability():
    result = invoke("list", "methods")
    assert result.exit_code == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line.strip()}
    assert "trainable" in lines["brisque-svr"] and lines["brisque-svr"].rstrip().endswith("yes")
    assert "classic" in lines["piqe"] and lines["piqe"].rstrip().endswith("yes")
    niqe = lines["niqe"]
    assert "no: needs weight file" in niqe and ".mat" in niqe


def test_list_backends_shows_each_family_and_the_methods_it_runs():
    result = invoke("list", "backends")
    assert result.exit_code == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line.strip()}
    assert {"owl2", "llava", "qwen2_5_vl", "internvl", "paligemma", "gemma3", "idefics3"} <= set(rows)
    assert "vp-owl2" in rows["llava"] and "softmax-owl2" in rows["llava"]
    # a family that tiles images runs the image-level presets, never a pixel-space visual prompt
    qwen = rows["qwen2_5_vl"]
    assert "softmax-owl2" in qwen and "vp-owl2" not in qwen and "tiled" in qwen
