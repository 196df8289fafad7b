"""`iqabench import`: published per-image outputs become run folders.

The reference for the real files is the Q-Bench authors' own printed table (their
leaderboards/IQA_outputs/eval.ipynb, KonIQ-10k column): LLaVA-v1.5 0.448/0.460, mPLUG-Owl 0.409/0.427.
The small cases are checked against scipy on the numbers the test wrote itself."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import pearsonr, spearmanr

from iqabench.cli.main import cli
from iqabench.errors import IqaError
from iqabench.imports import ImportConfig, import_outputs
from iqabench.imports.matching import discordant_pairs
from iqabench.report.collect import collect
from iqabench.runs import read_run

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "reference" / "data"
QBENCH = SHARED_DATA / "qbench-a3"
needs_shared = pytest.mark.skipif(not QBENCH.is_dir(), reason=f"{QBENCH} not present")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def tiny_table(tiny_root):
    from iqabench import registry

    return registry.datasets.get("tiny").load(tiny_root)[1]


def write_qbench(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) for r in rows))  # back to back, `}{`, as Q-Bench writes them
    return path


def test_qbench_file_becomes_a_run_with_the_authors_formula(tiny_root, tmp_path):
    table = tiny_table(tiny_root)
    rng = np.random.default_rng(0)
    ids = table["id"].tolist()
    kept = ids[:-2]  # two images of the set are not in the file
    rows = [{"img_path": f"somewhere/{i}", "gt_score": float(y) / 2,  # another scale (0-3), exactly the same order
             "logit_good": float(rng.normal(16, 1)), "logit_poor": float(rng.normal(14, 1))}
            for i, y in zip(kept, table.set_index("id").loc[kept, "label"])]
    rows.append({"img_path": "not-an-image.png", "gt_score": 3.0, "logit_good": 1.0, "logit_poor": 2.0})
    source = write_qbench(tmp_path / "model_x" / "tiny.json", rows)
    logs = []
    cfg = ImportConfig(file=source, dataset="tiny", data_root=tiny_root, results=tmp_path / "r", n_boot=50)
    result = import_outputs(cfg, on_log=logs.append)
    assert len(logs) == 1 and "1 of 35 id(s) are not images of tiny" in logs[0] and "'not-an-image.png'" in logs[0]

    # the authors' formula, written out plainly
    expected = {i: math.exp(r["logit_good"] / 100) / (math.exp(r["logit_good"] / 100) + math.exp(r["logit_poor"] / 100))
                for i, r in zip(kept, rows)}
    run = read_run(result.run_dir)
    assert run.manifest["method_kind"] == "imported" and run.method == "qbench:model_x"
    assert run.imported["sha256"] == __import__("hashlib").sha256(source.read_bytes()).hexdigest()
    assert run.imported["not_in_file"] == 2 and run.imported["unmatched"]["count"] == 1
    preds = run.predictions()
    assert preds.n_failed == 2 and sorted(preds.ids) == sorted(kept)
    assert np.allclose(preds.scores, [expected[i] for i in preds.ids], rtol=0, atol=1e-12)
    card_labels = table.set_index("id").loc[preds.ids, "label"].to_numpy()
    assert np.array_equal(preds.labels, card_labels)  # the card's labels by default
    assert result.metrics["srcc"] == pytest.approx(spearmanr(preds.scores, card_labels)[0], abs=1e-12)
    assert result.metrics["plcc_raw"] == pytest.approx(pearsonr(preds.scores, card_labels)[0], abs=1e-12)
    # the file's labels are a monotone map of the card's: full agreement, no pair ordered differently
    agreement = run.imported["label_agreement"]
    assert agreement["srcc"] == pytest.approx(1.0) and agreement["discordant_pairs"] == 0
    assert agreement["file_range"][1] <= 3.0
    # the stored logits re-score like any softmax run's
    assert set(json.loads((run.run_dir / "predictions.jsonl").read_text().splitlines()[0])["word_logits"]) == {"good", "poor"}

    # again: the same folder, nothing added
    again = import_outputs(cfg, on_log=lambda m: None)
    assert again.run_dir == result.run_dir
    assert len((run.run_dir / "predictions.jsonl").read_text().splitlines()) == len(ids)

    # against the file's own labels: another row, the file's numbers
    own = import_outputs(ImportConfig(**{**cfg.__dict__, "labels": "file"}), on_log=lambda m: None)
    assert own.run_dir != result.run_dir
    file_run = read_run(own.run_dir)
    gt = {i: r["gt_score"] for i, r in zip(kept, rows)}
    assert np.allclose(file_run.predictions().labels, [gt[i] for i in file_run.predictions().ids])
    assert file_run.manifest["label_range"][1] <= 3.0


def test_csv_import_and_the_problems_a_user_can_cause(tiny_root, tmp_path):
    table = tiny_table(tiny_root)
    scores = {i: float(k) for k, i in enumerate(table["id"])}
    plain = tmp_path / "mine.csv"
    plain.write_text("id,score\n" + "".join(f"{i},{s}\n" for i, s in scores.items()))
    result = import_outputs(ImportConfig(file=plain, dataset="tiny", data_root=tiny_root, results=tmp_path / "r",
                                         split="byref-ratio34-33-33-seed0", part="test", n_boot=0),
                            on_log=lambda m: None)
    run = read_run(result.run_dir)
    assert run.method == "mine" and run.part == "test" and run.imported["outside_part"] == 36 - run.n
    assert dict(zip(run.predictions().ids, run.predictions().scores)) == {i: scores[i] for i in run.predictions().ids}
    with pytest.raises(IqaError, match="carries no labels of its own"):
        import_outputs(ImportConfig(file=plain, dataset="tiny", data_root=tiny_root, results=tmp_path / "r",
                                    labels="file"), on_log=lambda m: None)
    broken = tmp_path / "m" / "broken.json"
    broken.parent.mkdir()
    broken.write_text('{"img_path": "a.png", "logit_good": 1, "logit_poor": 2}{"img_path": "b.png", "logit_')
    out = invoke("--results", tmp_path / "r", "--data-root", tiny_root, "import", broken, "--dataset", "tiny")
    assert out.exit_code == 2 and out.stderr.count("\n") == 1
    assert str(broken) in out.stderr and "record 2 is not valid JSON" in out.stderr
    stranger = write_qbench(tmp_path / "m" / "other.json", [{"img_path": "x.png", "logit_good": 1, "logit_poor": 2}])
    out = invoke("--results", tmp_path / "r", "--data-root", tiny_root, "import", stranger, "--dataset", "tiny")
    assert out.exit_code == 2 and "none of its 1 image id(s) is an image of tiny" in out.stderr


def test_discordant_pairs_equal_a_plain_loop():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 6, 300).astype(float), rng.integers(0, 6, 300).astype(float)
    plain_d = sum(1 for i in range(300) for j in range(i + 1, 300) if (a[i] - a[j]) * (b[i] - b[j]) < 0)
    plain_c = sum(1 for i in range(300) for j in range(i + 1, 300) if (a[i] - a[j]) * (b[i] - b[j]) > 0)
    assert discordant_pairs(a, b, chunk=64) == (plain_d, plain_c)


@needs_shared
def test_qbench_koniq_outputs_give_the_published_table(tmp_path):
    data = tmp_path / "data" / "koniq10k"
    data.mkdir(parents=True)
    shutil.copy(SHARED_DATA / "koniq10k_distributions_sets.csv", data)
    files = [QBENCH / "llava_v1.5" / "koniq.json", QBENCH / "mplug_owl" / "koniq.json"]
    common = ["--results", tmp_path / "r", "--data-root", tmp_path / "data", "import", *files, "--dataset", "koniq10k"]
    as_published = invoke(*common, "--labels", "file")
    assert as_published.exit_code == 0, as_published.output
    beside_ours = invoke(*common)
    assert beside_ours.exit_code == 0, beside_ours.output
    published = {"qbench:llava_v1.5": (0.448, 0.460), "qbench:mplug_owl": (0.409, 0.427)}
    found = {}
    for run in collect(tmp_path / "r"):
        assert run.usable and run.n == 10_073 and run.predictions().n_failed == 0
        found[(run.method, run.imported["labels"])] = (round(run.metric("srcc"), 3), round(run.metric("plcc_raw"), 3))
        agreement = run.imported["label_agreement"]
        assert 0.99 < agreement["srcc"] < 1 and agreement["discordant_pairs"] > 0  # another scale, not another order
    assert {m: found[(m, "file")] for m in published} == published
    # side by side in a report, with a significance test between the two (card labels: comparable)
    report = invoke("--results", tmp_path / "r", "report", "--no-plots")
    assert report.exit_code == 0, report.output
    assert "qbench:llava\\_v1.5 (labels=card)" in report.output and "qbench:mplug\\_owl (labels=card)" in report.output
    import csv

    with open(tmp_path / "r" / "report" / "significance.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    tested = [r for r in rows if r["metric"] == "srcc" and r["n"] == "10073"
              and {r["method_a"], r["method_b"]} == {"qbench:llava_v1.5 (labels=card)", "qbench:mplug_owl (labels=card)"}]
    assert len(tested) == 1 and float(tested[0]["p_bootstrap"]) < 0.05


CG_CARD = """\
name = "cgtest"
title = "test-only metadata of 6,000 computer-graphics images"
url = "written by the test"
folder_names = ["cgtest"]
layout = ["cg.csv"]
label_name = "mos"
score_range = [0.0, 5.0]
higher_better = true
default_split = "all"

[reader]
format = "csv"
file = "cg.csv"
id = "{name}"
images = { folders = ["images"] }
"""


def test_cgiqa_is_scored_as_the_notebook_does_the_mean_of_its_two_halves(tmp_path, scratch_registry):
    """Q-Bench's eval.ipynb scores cgi.json as the mean of the SRCCs (PLCCs) of records [:3000] and
    [3000:6000]; the importer records that number beside the whole file's (here they differ)."""
    data = tmp_path / "data" / "cgtest"
    data.mkdir(parents=True)
    rng = np.random.default_rng(3)
    mos = rng.uniform(0, 5, 6000)
    (data / "cg.csv").write_text("name,mos\n" + "".join(f"cg{i:04d}.png,{y:.4f}\n" for i, y in enumerate(mos)))
    (tmp_path / "card.toml").write_text(CG_CARD)
    scratch_registry.register_dataset_file(tmp_path / "card.toml")
    # the two halves rate on other levels (as two sub-sets would): the whole file's SRCC is lower
    good = np.where(np.arange(6000) < 3000, 10.0, 60.0) + 30 * mos / 5 + rng.normal(0, 8, 6000)
    rows = [{"img_path": f"CGIQA-6k/cg{i:04d}.png", "gt_score": float(round(y, 4)), "logit_good": float(g),
             "logit_poor": 20.0} for i, (y, g) in enumerate(zip(mos, good))]
    source = write_qbench(tmp_path / "model_y" / "cgi.json", rows)
    result = invoke("--results", tmp_path / "r", "--data-root", tmp_path / "data", "import", source,
                    "--dataset", "cgtest", "--labels", "file")
    assert result.exit_code == 0, result.output

    def softmax(a, b, temperature=100):  # the notebook's, as written there
        a /= temperature
        b /= temperature
        return np.exp(a) / (np.exp(a) + np.exp(b))

    d1, d2 = rows[:3000], rows[3000:6000]
    s = spearmanr([float(di["gt_score"]) for di in d1], [softmax(di["logit_good"], di["logit_poor"]) for di in d1])[0]
    p = pearsonr([float(di["gt_score"]) for di in d1], [softmax(di["logit_good"], di["logit_poor"]) for di in d1])[0]
    s += spearmanr([float(di["gt_score"]) for di in d2], [softmax(di["logit_good"], di["logit_poor"]) for di in d2])[0]
    p += pearsonr([float(di["gt_score"]) for di in d2], [softmax(di["logit_good"], di["logit_poor"]) for di in d2])[0]
    s, p = s / 2, p / 2
    run = read_run(next((tmp_path / "r" / "runs").rglob("manifest.json")).parent)
    published = run.imported["as_published"]
    assert published["srcc"] == pytest.approx(s, abs=1e-12) and published["plcc_raw"] == pytest.approx(p, abs=1e-12)
    assert [(b["records"], b["n"]) for b in published["blocks"]] == [([1, 3000], 3000), ([3001, 6000], 3000)]
    assert run.manifest["identity"]["imported"]["blocks"] == [[0, 3000], [3000, 6000]]
    assert "records 1-3000 and 3001-6000" in run.imported["formula_text"]
    assert f"as published (mean over record blocks, as Q-Bench's eval.ipynb): SRCC {s:.4f}" in result.output
    whole = run.metrics["srcc"]
    assert whole < s - 0.05  # the whole file's number is another one, and it stays the run's metric
