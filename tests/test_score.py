"""`iqabench score`: metrics from saved records, and `--words` / `--levels` re-scoring of stored
answer-word logits into a new run folder, checked against a fresh run with those words on a tiny
random model (the fresh run is the independent reference: it scores the images through the model)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from iqabench.cli.main import cli
from iqabench.report.collect import collect
from iqabench.report.identity import identity_of, labels_for
from iqabench.run import RunConfig, run
from iqabench.runs import read_run

LEVELS = ["excellent", "good", "fair", "poor", "bad"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def softmax_runs(tiny_root, tmp_path_factory):
    """A softmax-owl2 run (good,fine / poor,bad) and fresh runs with other words and with levels."""
    from iqabench.models.tiny import tiny_model_path

    base = tmp_path_factory.mktemp("rescore")
    model = tiny_model_path("owl2", base / "models")
    common = dict(method="softmax-owl2", dataset="tiny", data_root=tiny_root, results=base / "r", device="cpu",
                  limit=6, progress=False, n_boot=0)

    def scored(**options):
        result = run(RunConfig(**common, options={"backend_path": model, **options}), on_log=lambda m: None)
        return result.run_dir

    return {"results": base / "r", "first": scored(),
            "words": scored(positive=["high", "fine"], negative=["low"]),
            "levels": scored(levels=LEVELS, weights=[1, 0.75, 0.5, 0.25, 0])}


def scores(run_dir) -> pd.Series:
    return pd.read_csv(run_dir / "predictions.csv").set_index("id")["score"]


@pytest.mark.parametrize("kind, flags", [
    ("words", ["--words", "high,fine/low"]),
    ("levels", ["--levels", ",".join(LEVELS), "--weights", "1,.75,.5,.25,0"])])
def test_rescore_equals_a_fresh_run_with_those_words(softmax_runs, kind, flags):
    first = softmax_runs["first"]
    result = invoke("score", first, *flags, "--quiet")
    assert result.exit_code == 0, result.stderr
    [target] = [line.split(" -> ", 1)[1] for line in result.stdout.splitlines() if line.startswith("re-scored")]
    new = read_run(target)
    assert new.run_dir.parent == first.parent and new.run_dir != first  # a new run of the same column
    rescored, fresh = scores(new.run_dir), scores(softmax_runs[kind])
    assert len(rescored) == 6 and set(rescored.index) == set(fresh.index)
    assert (rescored - fresh[rescored.index]).abs().max() < 1e-5
    assert (rescored - scores(first)[rescored.index]).abs().max() > 1e-4  # other words, other scores
    assert new.status == "complete" and new.state == "smoke test"  # as its source: a --limit run
    assert new.rescored_from["run_dir"] == str(first)
    assert new.metrics["rescored_from"]["key"] == read_run(first).key
    assert new.fingerprint["rescored"] == {k: v for k, v in new.rescored_from.items() if k not in ("run_dir", "key")}

    again = invoke("score", first, *flags, "--quiet")  # the same re-scoring finds its folder: nothing is added
    assert again.exit_code == 0 and f"-> {target}" in again.stdout
    assert sum(1 for _ in (new.run_dir / "predictions.jsonl").open()) == 6


def test_a_rescored_run_is_its_own_report_row(softmax_runs):
    invoke("score", softmax_runs["first"], "--words", "high,fine/low", "--quiet")
    first = read_run(softmax_runs["first"])
    runs = [r for r in collect(softmax_runs["results"])
            if r.run_dir == first.run_dir or (r.rescored_from or {}).get("positive") == ["high", "fine"]]
    assert len(runs) == 2
    labels = labels_for(identity_of(r) for r in runs)
    assert sorted(labels.values()) == ["softmax-owl2 (not re-scored)",
                                       "softmax-owl2 (re-scored with words high,fine/low)"]


def test_rescoring_errors_are_one_line(softmax_runs, tiny_root, tmp_path):
    first = softmax_runs["first"]
    for flags, message in ((["--words", "good,fine"], "expected POSITIVE"),
                           (["--words", "good/"], "an empty name"),
                           (["--levels", "good,bad"], "go together"),
                           (["--levels", "good,bad", "--weights", "1"], "2 level(s) but 1 weight(s)"),
                           (["--levels", "good,bad", "--weights", "1,x"], "expected numbers"),
                           (["--words", "good/bad", "--levels", "a,b", "--weights", "1,0"], "give one way"),
                           (["--words", "superb/bad"], "no stored logit for superb")):
        result = invoke("score", first, *flags)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, (flags, result.stderr)
        assert message in result.stderr, (flags, result.stderr)
    plain = run(RunConfig(method="slow-sharpness", dataset="tiny", data_root=tiny_root, results=tmp_path / "r",
                          limit=3, progress=False, n_boot=0), on_log=lambda m: None)
    result = invoke("score", plain.run_dir, "--words", "good/bad")
    assert result.exit_code == 2 and "has no stored word_logits" in result.stderr


def test_score_refuses_inputs_that_do_not_match_their_hash(softmax_runs, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(softmax_runs["first"], copy)
    inputs = json.loads((copy / "inputs.json").read_text())
    inputs["images"][0]["label"] += 1.0  # a label edited by hand: the saved metrics would lie
    (copy / "inputs.json").write_text(json.dumps(inputs))
    result = invoke("score", copy)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "inputs.json: the images listed do not match the hash stored with them" in result.stderr
