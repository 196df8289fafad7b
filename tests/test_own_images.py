"""Scoring one's own images as pyiqa's command does (issue 21 item 8, issue 20 item 5): one file or
a folder; `-r` references for full-reference metrics, paired by name and part of the run's
identity; per-image scores on stdout (`--format table|jsonl|csv`); file names with control
characters kept in every file written; broken links among the references are that image's failure.

Scores are checked against pyiqa itself called on the same files (its own loader, not ours)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFilter

from iqabench.cli.main import cli

ODD = ["tab\tname.png", "cr\rname.png", "nl\nname.png"]  # control characters in file names


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """img/: three blurred noise images (one in a subfolder, one whose reference is missing) and
    ref/: their references, one with another suffix (a.bmp for a.png)."""
    root = tmp_path_factory.mktemp("own")
    (root / "img" / "sub").mkdir(parents=True)
    (root / "ref").mkdir()
    rng = np.random.default_rng(3)
    for name, ref_name, radius in (("a.png", "a.bmp", 1), ("sub/b.png", "b.png", 2), ("lonely.png", None, 3)):
        ref = Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8"))
        ref.filter(ImageFilter.GaussianBlur(radius)).save(root / "img" / name)
        if ref_name:
            ref.save(root / "ref" / ref_name)
    return root


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def pyiqa_score(metric: str, *paths: Path) -> float:
    import pyiqa

    return float(pyiqa.create_metric(metric, device="cpu")(*[str(p) for p in paths]))


def only_run(results: Path, method: str = "*") -> Path:
    (manifest,) = results.glob(f"runs/images/*/{method}-*/manifest.json")
    return manifest.parent


def jsonl(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_a_single_file_is_scored_as_pyiqa_scores_it(photos, tmp_path):
    results = tmp_path / "r"
    got = invoke("run", "--method", "piqe", "--images", photos / "img" / "a.png", "--results", results,
                 "--no-progress", "--format", "jsonl")
    assert got.exit_code == 0, got.stderr
    (row,) = map(json.loads, got.stdout.splitlines())  # stdout holds the rows alone
    assert row["id"] == "a.png" and row["error"] is None
    assert row["score"] == pytest.approx(pyiqa_score("piqe", photos / "img" / "a.png"), abs=1e-6)
    manifest = json.loads((only_run(results) / "manifest.json").read_text())
    assert manifest["images_folder"] == str(photos / "img" / "a.png") and manifest["n_images"] == 1


def test_a_reference_folder_pairs_by_name_and_an_unpaired_image_is_its_failure(photos, tmp_path):
    results = tmp_path / "r"
    got = invoke("run", "--method", "ssim", "--images", photos / "img", "-r", photos / "ref",
                 "--results", results, "--no-progress", "--format", "table")
    assert got.exit_code == 0, got.stderr
    by_id = jsonl(only_run(results) / "predictions.jsonl")
    assert by_id["a.png"]["score"] == pytest.approx(pyiqa_score("ssim", photos / "img" / "a.png",
                                                                photos / "ref" / "a.bmp"), abs=1e-6)
    assert by_id["sub/b.png"]["score"] == pytest.approx(pyiqa_score("ssim", photos / "img" / "sub" / "b.png",
                                                                    photos / "ref" / "b.png"), abs=1e-6)
    assert by_id["lonely.png"]["score"] is None and "no reference named lonely.*" in by_id["lonely.png"]["error"]
    inputs = {r["id"]: r for r in json.loads((only_run(results) / "inputs.json").read_text())["images"]}
    assert inputs["a.png"]["reference"] == "a.bmp" and len(inputs["a.png"]["reference_sha256"]) == 16
    table = got.stdout[got.stdout.index("pyiqa:ssim:"):].splitlines()
    assert table[1].split() == ["id", "score", "error"] and len(table) == 5
    assert table[2].split()[:2] == ["a.png", f"{by_id['a.png']['score']:.6g}"]


def test_one_reference_file_is_every_images_reference(photos, tmp_path):
    ref = photos / "ref" / "b.png"
    got = invoke("run", "--method", "ssim", "--images", photos / "img", "--ref", ref, "--results", tmp_path / "r",
                 "--no-progress", "--format", "csv")
    assert got.exit_code == 0, got.stderr
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(got.stdout, newline=""))}
    assert sorted(rows) == ["a.png", "lonely.png", "sub/b.png"] and all(not r["error"] for r in rows.values())
    for sid, row in rows.items():
        assert float(row["score"]) == pytest.approx(pyiqa_score("ssim", photos / "img" / sid, ref), abs=1e-6)


def test_the_references_content_is_part_of_the_runs_identity(photos, tmp_path):
    refs = tmp_path / "ref"
    refs.mkdir()
    for p in (photos / "ref").iterdir():
        (refs / p.name).write_bytes(p.read_bytes())
    results = tmp_path / "r"
    args = ("run", "--method", "ssim", "--images", photos / "img", "-r", refs, "--results", results, "--no-progress")
    assert invoke(*args).exit_code == 0
    Image.new("RGB", (32, 32), (9, 9, 9)).save(refs / "b.png")  # another reference, same name
    assert invoke(*args).exit_code == 0
    runs = sorted(results.glob("runs/images/*/*/manifest.json"))
    assert len(runs) == 2  # a second run, not "0 to score" with the old reference's scores
    # a no-reference method ignores -r: the same run as without it
    assert invoke("run", "--method", "piqe", "--images", photos / "img", "-r", refs, "--results", results,
                  "--no-progress").exit_code == 0
    assert "0 to score" in invoke("run", "--method", "piqe", "--images", photos / "img", "--results", results,
                                  "--no-progress").stdout


@pytest.mark.parametrize("args, says", [
    (("--method", "ssim"), "pass -r REF_DIR"),  # full-reference without references
    (("--method", "piqe", "--dataset", "tiny", "-r", "x"), "-r/--ref gives the references of --images"),
    (("--method", "ssim", "-r", "nowhere"), "-r nowhere: no such file or folder"),
])
def test_full_reference_mistakes_are_one_line(photos, tmp_path, args, says):
    if "--dataset" not in args:
        args = (*args, "--images", photos / "img")
    got = invoke("run", *args, "--results", tmp_path / "r")
    assert got.exit_code == 2 and "Traceback" not in got.stderr
    assert [line for line in got.stderr.splitlines() if line.strip()][-1].count(says) == 1, got.stderr
    assert not (tmp_path / "r" / "runs").exists()


def test_control_characters_in_names_round_trip_through_every_file_written(photos, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    refs = tmp_path / "odd-ref"
    refs.mkdir()
    source = Image.open(photos / "img" / "a.png")
    for name in ODD:
        source.save(folder / name)
        source.save(refs / name)
    results = tmp_path / "r"
    for fmt in ("jsonl", "csv"):
        got = invoke("run", "--method", "ssim", "--images", folder, "-r", refs, "--results", results,
                     "--no-progress", "--format", fmt)
        assert got.exit_code == 0, got.stderr
        rows = (list(map(json.loads, got.stdout.splitlines())) if fmt == "jsonl"
                else list(csv.DictReader(io.StringIO(got.stdout, newline=""))))
        assert sorted(r["id"] for r in rows) == sorted(ODD)
        assert all(float(r["score"]) == pytest.approx(1.0) for r in rows)  # each image is its own reference
    run_dir = only_run(results)
    with open(run_dir / "predictions.csv", newline="", encoding="utf-8") as handle:
        assert sorted(r["id"] for r in csv.DictReader(handle)) == sorted(ODD)
    assert sorted(jsonl(run_dir / "predictions.jsonl")) == sorted(ODD)
    assert sorted(r["id"] for r in json.loads((run_dir / "inputs.json").read_text())["images"]) == sorted(ODD)
    assert invoke("score", run_dir).exit_code == 0  # the run reads back as written
    table = invoke("run", "--method", "ssim", "--images", folder, "-r", refs, "--results", results,
                   "--no-progress", "--format", "table").stdout
    assert "cr\\rname.png" in table and "nl\\nname.png" in table and "\r" not in table
    report = invoke("report", "--results", results, "--out", tmp_path / "rep")
    assert report.exit_code == 0, report.stderr


def test_a_folder_whose_own_name_holds_a_control_character_is_refused_by_name(tmp_path):
    folder = tmp_path / "bad\nfolder"
    folder.mkdir()
    Image.new("RGB", (32, 32)).save(folder / "x.png")
    got = invoke("run", "--method", "piqe", "--images", folder, "--results", tmp_path / "r")
    assert got.exit_code == 2 and got.stderr.count("\n") == 1 and "control characters ('\\n')" in got.stderr


def test_broken_links_among_images_and_references_are_that_images_failure(photos, tmp_path):
    folder, refs = tmp_path / "img", tmp_path / "ref"
    folder.mkdir()
    refs.mkdir()
    for name in ("good.png", "badref.png", "loopref.png"):
        (folder / name).write_bytes((photos / "img" / "a.png").read_bytes())
    (refs / "good.png").write_bytes((photos / "ref" / "a.bmp").read_bytes())
    (refs / "badref.png").symlink_to(refs / "gone.png")
    (refs / "loopref.png").symlink_to(refs / "loopref.png")
    (folder / "dangling.png").symlink_to(folder / "gone.png")
    results = tmp_path / "r"
    got = invoke("run", "--method", "ssim", "--images", folder, "-r", refs, "--results", results, "--no-progress")
    assert got.exit_code == 0, got.stderr
    by_id = jsonl(only_run(results) / "predictions.jsonl")
    assert by_id["good.png"]["score"] is not None
    assert "reference" in by_id["badref.png"]["error"] and "dangling symbolic link" in by_id["badref.png"]["error"]
    assert "symbolic link loop" in by_id["loopref.png"]["error"]
    assert "dangling symbolic link" in by_id["dangling.png"]["error"]
    # a dangling link given as the one file is that file's failure too, not a refusal
    got = invoke("run", "--method", "piqe", "--images", folder / "dangling.png", "--results", tmp_path / "r2",
                 "--no-progress", "--format", "jsonl")
    assert got.exit_code == 0, got.stderr
    (row,) = map(json.loads, got.stdout.splitlines())
    assert row["score"] is None and "dangling symbolic link" in row["error"]
    got = invoke("run", "--method", "ssim", "--images", folder / "good.png", "-r", refs / "badref.png",
                 "--results", tmp_path / "r3", "--no-progress", "--format", "jsonl")
    assert got.exit_code == 0, got.stderr
    (row,) = map(json.loads, got.stdout.splitlines())
    assert row["score"] is None and "reference" in row["error"] and "dangling symbolic link" in row["error"]


def test_format_prints_a_dataset_runs_images_with_their_labels(tiny_root, tmp_path):
    got = invoke("run", "--method", "slow-sharpness", "--dataset", "tiny", "--data-root", tiny_root,
                 "--results", tmp_path / "r", "--no-progress", "--format", "csv")
    assert got.exit_code == 0, got.stderr
    rows = list(csv.DictReader(io.StringIO(got.stdout, newline="")))
    (run_dir,) = [p.parent for p in (tmp_path / "r").glob("runs/*/*/*/manifest.json")]
    inputs = json.loads((run_dir / "inputs.json").read_text())["images"]
    assert [r["id"] for r in rows] == [r["id"] for r in inputs]  # inputs.json's order, every image
    assert [float(r["label"]) for r in rows] == [r["label"] for r in inputs]
    saved = jsonl(run_dir / "predictions.jsonl")
    assert all(float(r["score"]) == saved[r["id"]]["score"] for r in rows)
