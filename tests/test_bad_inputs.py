"""A corpus of bad inputs, built here, through the real dataset readers and `iqabench run`.

Image-level problems end as a recorded per-image failure (predictions.csv `error`, metrics
`n_failed`) while the run goes on; odd but valid images (CMYK, 16-bit, palette, alpha, grey,
wrong extension) decode to the right 8-bit RGB and are scored. Dataset-level problems stop the
CLI with exit code 2 and one line naming the file and the problem, never a traceback.
"""
from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from iqabench.api import RunContext
from iqabench.cli.main import main
from iqabench.data.images import open_rgb
from iqabench.methods.dog_iqa_judge import parse_answer

KONIQ_META = "koniq10k_distributions_sets.csv"


# -- building bad files ------------------------------------------------------------------------

def write_png(path: Path, width: int, height: int, bit_depth: int, color_type: int, raw: bytes) -> None:
    """A PNG written by hand (PIL cannot write 16-bit RGB, nor a header that lies about its size)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def textured(seed: int, size: int = 48, blur: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    if blur:
        from PIL import ImageFilter

        img = img.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(img)


def jpeg_bytes(arr: np.ndarray, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def build_corpus(images: Path) -> dict[str, str | None]:
    """Write the image corpus; returns file name -> None (must be scored) or the expected error."""
    images.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}
    for i in range(8):  # ordinary images, so the run has metrics
        Image.fromarray(textured(i, blur=i % 4)).save(images / f"good{i}.png")
        expected[f"good{i}.png"] = None
    base = textured(100)
    full = jpeg_bytes(base)
    (images / "truncated.jpg").write_bytes(full[: len(full) // 2])
    expected["truncated.jpg"] = "corrupt image"
    (images / "empty.jpg").write_bytes(b"")
    expected["empty.jpg"] = "empty file (0 bytes)"
    (images / "cmyk.jpg").write_bytes(jpeg_bytes(base, "CMYK"))
    expected["cmyk.jpg"] = None
    Image.fromarray((textured(101)[..., 0].astype(np.uint16) * 257)).save(images / "grey16.png")
    expected["grey16.png"] = None
    rgb16 = textured(102).astype(">u2") * 257
    write_png(images / "rgb16.png", 48, 48, 16, 2, b"".join(b"\x00" + row.tobytes() for row in rgb16))
    expected["rgb16.png"] = None
    Image.fromarray(textured(103)).convert("P", palette=Image.Palette.ADAPTIVE).save(images / "palette.png")
    expected["palette.png"] = None
    Image.fromarray(textured(104)).convert("P", palette=Image.Palette.ADAPTIVE).save(images / "palette_transparent.png",
                                                                                       transparency=0)
    expected["palette_transparent.png"] = None
    rgba = np.dstack([textured(105), np.full((48, 48), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(images / "alpha.png")
    expected["alpha.png"] = None
    Image.fromarray(textured(106)).convert("LA").save(images / "grey_alpha.png")
    expected["grey_alpha.png"] = None
    (images / "grey.jpg").write_bytes(jpeg_bytes(textured(107), "L"))
    expected["grey.jpg"] = None
    Image.fromarray(np.full((1, 1, 3), 90, np.uint8)).save(images / "one_pixel.png")
    expected["one_pixel.png"] = "non-finite"  # this method's gradient of a 1x1 image is undefined
    # 40000 x 40000 declared in the header, a few bytes of data: refused before decoding
    write_png(images / "bomb.png", 40000, 40000, 1, 0, b"\x00" * 64)
    expected["bomb.png"] = "decompression bomb"
    buf = io.BytesIO()
    Image.fromarray(textured(108)).save(buf, "PNG")
    (images / "png_named.jpg").write_bytes(buf.getvalue())
    expected["png_named.jpg"] = None
    (images / "text_named.png").write_text("this is not an image\n")
    expected["text_named.png"] = "not a readable image"
    expected["missing.jpg"] = "file not found"  # listed in the metadata, absent on disk
    return expected


def koniq_root(tmp: Path, rows: list[dict] | str | bytes, images: bool = False) -> tuple[Path, Path]:
    """A data root holding a KonIQ-10k-shaped release with the given metadata rows (or raw text)."""
    folder = tmp / "koniq10k"
    (folder / "1024x768").mkdir(parents=True, exist_ok=True)
    meta = folder / KONIQ_META
    if isinstance(rows, bytes):
        meta.write_bytes(rows)
    elif isinstance(rows, str):
        meta.write_text(rows)
    else:
        pd.DataFrame(rows).to_csv(meta, index=False)
    return tmp, meta


# -- image-level problems: recorded failures, the run goes on -------------------------------------

def test_bad_images_are_recorded_failures_and_the_run_goes_on(tmp_path, capsys):
    root = tmp_path / "data"
    expected = build_corpus(root / "koniq10k" / "1024x768")
    rows = [{"image_name": name, "MOS": 10.0 + 80.0 * i / len(expected), "set": "test"}
            for i, name in enumerate(expected)]
    koniq_root(root, rows)
    code = main(["run", "--method", "slow-sharpness", "--dataset", "koniq10k", "--split", "all",
                 "--data-root", str(root), "--results", str(tmp_path / "res"), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err
    run_dir = next((tmp_path / "res").glob("runs/koniq10k/all-test/*/"))
    preds = pd.read_csv(run_dir / "predictions.csv").set_index("id")
    assert sorted(preds.index) == sorted(expected)
    for name, problem in expected.items():
        error = preds.loc[name, "error"]
        if problem is None:
            assert pd.isna(error) and np.isfinite(preds.loc[name, "score"]), (name, error)
        else:
            assert problem in error, (name, error)
            assert pd.isna(preds.loc[name, "score"])
            if not error.startswith("score:"):  # decode failures name the file
                assert error.startswith("decode: ") and str(root / "koniq10k" / "1024x768" / name) in error
            assert "\n" not in error
    metrics = json.loads((run_dir / "metrics.json").read_text())
    n_bad = sum(p is not None for p in expected.values())
    assert metrics["n"] == len(expected) and metrics["n_failed"] == n_bad and metrics["n_missing"] == 0
    assert metrics["failures_by_kind"] == {"decode": n_bad - 1, "score": 1}
    assert metrics["srcc"] is not None and f"failed={n_bad}" in out


def test_odd_formats_decode_to_the_right_8bit_rgb(tmp_path):
    images = tmp_path / "images"
    build_corpus(images)
    base = textured(100).astype(int)
    cmyk = np.asarray(open_rgb(images / "cmyk.jpg"), dtype=int)
    assert np.abs(cmyk - base).mean() < 12  # JPEG loss only, no inverted or swapped channels
    grey16 = np.asarray(open_rgb(images / "grey16.png"))
    assert np.array_equal(grey16[..., 0], textured(101)[..., 0]) and np.array_equal(grey16[..., 0], grey16[..., 2])
    assert np.array_equal(np.asarray(open_rgb(images / "rgb16.png")), textured(102))
    alpha = np.asarray(open_rgb(images / "alpha.png"), dtype=int)
    on_white = (textured(105).astype(int) * 128 + 255 * 127 + 127) // 255
    assert np.abs(alpha - on_white).max() <= 1  # composited on white, not alpha dropped
    transparent = open_rgb(images / "palette_transparent.png")
    assert transparent.mode == "RGB" and (np.asarray(transparent) == 255).all(axis=-1).any()
    for name in ("palette.png", "grey_alpha.png", "grey.jpg", "png_named.jpg", "one_pixel.png"):
        img = open_rgb(images / name)
        assert img.mode == "RGB" and np.asarray(img).dtype == np.uint8
    assert np.array_equal(np.asarray(open_rgb(images / "png_named.jpg")), textured(108))


def test_an_image_smaller_than_the_visual_prompt_is_scored_after_the_model_resize(tmp_path):
    """vp methods resize every image to the model's size first, so a 1x1 or 5x3 image meets a
    prompt larger than itself only on the resized canvas: it is scored like any other image."""
    import torch
    import transformers  # noqa: F401
    torch.set_num_threads(1)
    from iqabench.api import Sample
    from iqabench.methods.visual_prompt import PromptConfig, VisualPrompt, save_prompt_file
    from iqabench.methods.vp_owl2 import VpLlava
    from iqabench.models.tiny_llava import build_tiny_llava

    model = build_tiny_llava(tmp_path / "llava", seed=3)
    prompt_file = tmp_path / "prompt.safetensors"
    save_prompt_file(prompt_file, VisualPrompt(PromptConfig("padding", 20, 56), seed=1).state_dict(), {})
    method = VpLlava(VpLlava.Options(backend_path=str(model), vp_size=20, prompt_path=str(prompt_file)))
    method.setup(RunContext())
    sizes = [(1, 1), (5, 3), (3, 40), (19, 19), (64, 48)]
    samples = [Sample(f"{w}x{h}", Image.fromarray(textured(i, 64)[:h, :w]), 1.0) for i, (w, h) in enumerate(sizes)]
    scores = method.score(samples)
    assert len(scores) == len(sizes) and all(np.isfinite(scores)) and all(0.0 <= s <= 1.0 for s in scores)
    assert scores == pytest.approx([method.score([s])[0] for s in samples], abs=1e-6)
    # a prompt that cannot fit the model's own image size is a one-line error, before any scoring
    from iqabench.errors import IqaError

    too_big = VpLlava(VpLlava.Options(backend_path=str(model), vp_size=30, prompt_path=str(prompt_file)))
    with pytest.raises(IqaError, match="padding of 30 px does not fit a 56 px image"):
        too_big.setup(RunContext())


def test_a_judge_answer_without_a_number_is_the_papers_fallback():
    # Dog-IQA's parser: no usable number -> None; the judge then scores the paper's level 1 and
    # counts it (parse_failures per image and in metrics.json runtime; test_dog_iqa_method runs
    # this on a tiny real judge whose vocabulary has no digits).
    for answer in ("", None, "Good.", "The quality is excellent", "NaN", "seven", "-", "0", "8", "5.5"):
        assert parse_answer(answer, 7) is None, answer
    assert parse_answer("Score: 6/7", 7) == 6 and parse_answer("[3]", 7) == 3


# -- dataset-level problems: exit code 2, one line naming the file ---------------------------------

GOOD_ROWS = [{"image_name": f"im{i}.jpg", "MOS": 20.0 + i, "set": "test"} for i in range(4)]


def _cli_error(root: Path, results: Path, capsys, dataset: str = "koniq10k") -> str:
    code = main(["run", "--method", "slow-sharpness", "--dataset", dataset, "--split", "all", "--data-root", str(root),
                 "--results", str(results), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("iqabench: error: "), err
    return lines[0]


DATASET_CASES = {
    "nan_mos": (GOOD_ROWS[:2] + [{"image_name": "bad.jpg", "MOS": float("nan"), "set": "test"}],
                "empty MOS in data row 3 (image 'bad.jpg')"),
    "text_mos": ("image_name,MOS,set\nim0.jpg,20,test\nbad.jpg,good,test\n",
                 "MOS 'good' is not a number (data row 2, image 'bad.jpg')"),
    "empty_mos": ("image_name,MOS,set\nim0.jpg,20,test\nbad.jpg,,test\n", "empty MOS in data row 2 (image 'bad.jpg')"),
    "inf_mos": ("image_name,MOS,set\nim0.jpg,20,test\nbad.jpg,inf,test\n", "bad.jpg"),
    "mos_out_of_range": ("image_name,MOS,set\nim0.jpg,20,test\nbad.jpg,250,test\n",
                         "label 250 of image 'bad.jpg' is outside the card's score range [0, 100]"),
    "negative_mos": ("image_name,MOS,set\nim0.jpg,20,test\nbad.jpg,-3,test\n", "outside the card's score range"),
    "excel_trailing_commas": ("image_name,MOS,set\nim0.jpg,20,test\n,,\nbad.jpg,,test\n", "data row"),
    "empty_set_cell": ("image_name,MOS,set\nim0.jpg,20,test\nbad.jpg,30,\n", "empty set in data row 2"),
    "duplicate_ids": (GOOD_ROWS + [GOOD_ROWS[1]], "duplicate image id(s), first 'im1.jpg'"),
    "path_escapes": (GOOD_ROWS + [{"image_name": "../../../outside.jpg", "MOS": 1.0, "set": "test"}],
                     "escapes the dataset folder"),
    "missing_column": ("image_name,mos_z,set\nim0.jpg,20,test\n", "MOS"),
    "wrong_columns": ("a,b,c\n1,2,3\n", "image_name"),
    "not_utf8": ("image_name,MOS,set\ncaf\xe9.jpg,20,test\n".encode("latin-1"), "not UTF-8"),
    "empty_metadata": (b"", "empty file"),
    "header_only": ("image_name,MOS,set\n", "no rows"),
}


@pytest.mark.parametrize("case", sorted(DATASET_CASES))
def test_bad_metadata_is_one_line_naming_the_file(case, tmp_path, capsys):
    rows, problem = DATASET_CASES[case]
    root, meta = koniq_root(tmp_path / "data", rows)
    line = _cli_error(root, tmp_path / "res", capsys)
    assert str(meta) in line and problem in line, line


def test_symlinked_image_folder_is_not_an_escape(tmp_path, capsys):
    elsewhere = tmp_path / "other_disk" / "1024x768"
    elsewhere.mkdir(parents=True)
    for row in GOOD_ROWS:
        Image.fromarray(textured(len(row["image_name"]) + int(row["MOS"]))).save(elsewhere / row["image_name"], "JPEG")
    root = tmp_path / "data"
    (root / "koniq10k").mkdir(parents=True)
    pd.DataFrame(GOOD_ROWS).to_csv(root / "koniq10k" / KONIQ_META, index=False)
    (root / "koniq10k" / "1024x768").symlink_to(elsewhere, target_is_directory=True)
    code = main(["run", "--method", "slow-sharpness", "--dataset", "koniq10k", "--split", "all",
                 "--data-root", str(root),
                 "--results", str(tmp_path / "res"), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "failed=0" in out


def test_missing_dataset_is_one_line_with_the_expected_layout(tmp_path, capsys):
    line = _cli_error(tmp_path / "empty_root", tmp_path / "res", capsys)
    assert "koniq10k: not found" in line and KONIQ_META in line and str(tmp_path / "empty_root") in line


@pytest.mark.parametrize("content, problem", [
    ("picture,score,ref\na.png,1,x\n", "missing column(s) mos, image; found picture, score, ref"),
    ("image,mos,ref\ncaf\xe9.png,1,x\n".encode("latin-1"), "not UTF-8 text (byte 0xe9"),
])
def test_a_plugin_reader_failing_is_still_one_line(content, problem, tmp_path, capsys):
    """A plugin's card built in code reads through the same generic readers: one line naming the file."""
    folder = tmp_path / "data" / "tiny"
    (folder / "images").mkdir(parents=True)
    meta = folder / "mos.csv"
    meta.write_bytes(content if isinstance(content, bytes) else content.encode())
    line = _cli_error(tmp_path / "data", tmp_path / "res", capsys, dataset="tiny")
    assert str(meta) in line and problem in line, line


def test_extreme_aspect_images_are_not_upscaled_whole_and_pixels_are_unchanged():
    """A shorter-side resize would turn 2 x 20000 into 448 x 4.5M pixels; the central band keeps it small
    and gives the same output as preprocessing the whole image."""
    import numpy as np
    from PIL import Image

    from iqabench.models.preprocess import central_band, square_image

    rng = np.random.default_rng(0)
    wide = Image.fromarray(rng.integers(0, 255, (20, 400, 3), dtype=np.uint8))
    assert central_band(wide).size == (160, 20)
    full = square_image(wide.copy(), 28, "crop")  # 400/20 = 20 > 8: banded inside too
    reference = wide.resize((int(400 * 28 / 20), 28), Image.BICUBIC)
    left = (reference.size[0] - 28) // 2
    reference = reference.crop((left, 0, left + 28, 28))
    assert np.abs(np.asarray(full, dtype=int) - np.asarray(reference, dtype=int)).max() <= 1
    huge = Image.new("RGB", (2, 20000))
    assert square_image(huge, 28, "crop").size == (28, 28)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_a_non_finite_label_in_a_mat_file_is_one_line(value, tmp_path, capsys):
    """LIVE Challenge's labels come from a .mat file: inf or NaN there is named like a CSV's."""
    from scipy.io import savemat

    folder = tmp_path / "data" / "ChallengeDB_release"
    names = [f"{100 + i}.bmp" for i in range(5)]
    for i, name in enumerate(names):
        (folder / "Images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(textured(i, 16)).save(folder / "Images" / name, "BMP")
    (folder / "Data").mkdir()
    cells = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        cells[i, 0] = name
    mos = np.array([[30.0, 40.0, value, 60.0, 70.0]])
    savemat(folder / "Data" / "AllImages_release.mat", {"AllImages_release": cells})
    savemat(folder / "Data" / "AllMOS_release.mat", {"AllMOS_release": mos})
    line = _cli_error(tmp_path / "data", tmp_path / "res", capsys, dataset="livec")
    assert str(folder / "Data" / "AllMOS_release.mat") in line and "102.bmp" in line, line


def test_accept_out_of_range_is_the_explicit_way_to_take_a_wider_scale(tmp_path, capsys):
    """MOS 250 on KonIQ's 0-100 scale is refused; --accept-out-of-range takes it (e.g. a re-scaled release)."""
    root = tmp_path / "data"
    folder = root / "koniq10k" / "1024x768"
    folder.mkdir(parents=True)
    rows = []
    for i in range(6):
        Image.fromarray(textured(i)).save(folder / f"im{i}.jpg", "JPEG")
        rows.append({"image_name": f"im{i}.jpg", "MOS": 20.0 + 40.0 * i, "set": "test"})
    pd.DataFrame(rows).to_csv(root / "koniq10k" / KONIQ_META, index=False)
    line = _cli_error(root, tmp_path / "res", capsys)
    assert "label 140 of image 'im3.jpg' is outside the card's score range [0, 100] (3 such row(s))" in line, line
    assert "accept out-of-range labels explicitly" in line  # the message says it can be accepted
    code = main(["run", "--method", "slow-sharpness", "--dataset", "koniq10k", "--split", "all",
                 "--data-root", str(root),
                 "--results", str(tmp_path / "res"), "--no-progress", "--accept-out-of-range"])
    out, err = capsys.readouterr()
    assert code == 0, err
    run_dir = next((tmp_path / "res").glob("runs/koniq10k/all-test/*/"))
    labels = [json.loads(line)["label"] for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert sorted(labels) == [20.0, 60.0, 100.0, 140.0, 180.0, 220.0]
