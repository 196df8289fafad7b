"""Dataset cards (datasets/<name>/card.toml) read by the generic readers: tiny fake releases of
every dataset built here with the official file formats (csv, xlsx, .mat, whitespace txt), the real
published metadata (when the shared reference folder is beside the checkout), the card files'
own errors, the registry, and the checks every table passes (iqabench.data.card.validate_table)."""
from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.io import savemat

from iqabench import registry
from iqabench.data import formats
from iqabench.data.card import DatasetCard, folder_ignores_case, validate_table
from iqabench.data.splits import make_split
from iqabench.errors import IqaError
from iqabench.locations import shipped_folder

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "reference" / "data"
CARDS = shipped_folder("datasets")
BUILT_IN = {"kadid10k", "koniq10k", "koniq10k-512x384", "agiqa3k", "spaq", "livec", "tid2013", "csiq", "live",
            "synthetic"}
SYNTHETIC = {"kadid10k", "tid2013", "csiq", "live", "synthetic"}

SPAQ_XLSX = "Annotations/MOS and Image attribute scores.xlsx"
LIVEC_NAMES, LIVEC_MOS = "Data/AllImages_release.mat", "Data/AllMOS_release.mat"
# CSIQ's dst_type -> (folder under dst_imgs/, tag in the file name), as the release has them
CSIQ_TYPES = {"noise": ("awgn", "AWGN"), "jpeg": ("jpeg", "JPEG"), "jpeg 2000": ("jpeg2000", "jpeg2000"),
              "fnoise": ("fnoise", "fnoise"), "blur": ("blur", "BLUR"), "contrast": ("contrast", "contrast")}
LIVE_FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))
LIVE_PATHS = [f"{folder}/img{k}.bmp" for folder, count in LIVE_FOLDERS for k in range(1, count + 1)]


def card(name: str) -> DatasetCard:
    return registry.datasets.get(name)


def write_image(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".png": "PNG", ".bmp": "BMP"}[path.suffix.lower()]
    Image.new("RGB", (8, 6), (value, 255 - value, value // 2)).save(path, fmt)


def cell_array(names: list[str], row: bool = False) -> np.ndarray:
    """A MATLAB cell array of strings as scipy.io.savemat writes it (object ndarray)."""
    arr = np.empty((1, len(names)) if row else (len(names), 1), dtype=object)
    for i, n in enumerate(names):
        arr.flat[i] = n
    return arr


# -- fake official releases ---------------------------------------------------------------------

def fake_kadid(root: Path, n_refs: int = 10, n_types: int = 2, rows: list[str] | None = None) -> Path:
    folder = root / "kadid10k"
    lines = ["dist_img,ref_img,dmos,var"]
    for r in range(1, n_refs + 1):
        write_image(folder / "images" / f"I{r:02d}.png")
        for t in range(1, n_types + 1):
            name = f"I{r:02d}_{t:02d}_01.png"
            write_image(folder / "images" / name, 10 * t)
            lines.append(f"{name},I{r:02d}.png,{1 + (r + t) % 40 / 10:.2f},0.5")
    (folder / "dmos.csv").write_text("\n".join(rows if rows is not None else lines) + "\n")
    return folder


def fake_koniq(root: Path, resolution: str) -> Path:
    folder = root / "koniq10k"
    folder.mkdir(parents=True)
    lines = ["image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set"]
    for i, part in enumerate(["training"] * 6 + ["validation"] * 2 + ["test"] * 2):
        lines.append(f"{1000 + i}.jpg,0,0,0.5,0.5,0,100,{40 + i},0.5,{part}")
        write_image(folder / resolution / f"{1000 + i}.jpg")
    (folder / "koniq10k_distributions_sets.csv").write_text("\n".join(lines) + "\n")
    return folder


def fake_agiqa(root: Path, subdir: str) -> Path:
    folder = root / "AGIQA-3K"
    names = [f"sd1.5_normal_{i:03d}.jpg" for i in range(10)]
    for n in names:
        write_image(folder / subdir / n)
    pd.DataFrame({"name": names, "prompt": "a cat", "adj1": "", "adj2": "", "style": "",
                  "mos_quality": np.linspace(0.5, 4.4, 10), "std_quality": 0.3,
                  "mos_align": 2.0, "std_align": 0.2}).to_csv(folder / "data.csv", index=False)
    return folder


def fake_spaq(root: Path) -> Path:
    folder = root / "SPAQ"
    names = [f"{i:05d}.jpg" for i in range(1, 11)]
    for n in names:
        write_image(folder / "TestImage" / n)
    (folder / "Annotations").mkdir(parents=True)
    pd.DataFrame({"Image name": names, "MOS": np.linspace(2, 96, 10), "Brightness": 50.0,
                  "Colorfulness": 50.0, "Contrast": 50.0, "Noisiness": 50.0, "Sharpness": 50.0}
                 ).to_excel(folder / SPAQ_XLSX, index=False, engine="openpyxl")
    return folder


def fake_livec(root: Path) -> Path:
    folder = root / "ChallengeDB_release"
    names = [f"t{i}.bmp" for i in range(1, 8)] + [f"{i}.bmp" for i in range(100, 110)]
    for n in names:
        write_image(folder / "Images" / ("trainingImages" if n.startswith("t") else "") / n)
    (folder / "Data").mkdir(parents=True)
    savemat(folder / LIVEC_NAMES, {"AllImages_release": cell_array(names)})
    savemat(folder / LIVEC_MOS, {"AllMOS_release": np.linspace(3.4, 92.4, len(names))[None, :]})
    savemat(folder / "Data/AllStdDev_release.mat", {"AllStdDev_release": np.ones((1, len(names)))})
    return folder


def fake_tid2013(root: Path, n_refs: int = 10) -> Path:
    folder = root / "tid2013"
    lines = []
    for r in range(1, n_refs + 1):
        write_image(folder / "reference_images" / f"I{r:02d}.BMP")
        for t in (1, 2):
            name = f"i{r:02d}_{t:02d}_1.bmp"
            # the release stores some files in upper case: the listed name must still be found
            write_image(folder / "distorted_images" / (name.upper() if r == 2 else name))
            lines.append(f"{(r * t) % 7 + 0.25:.5f} {name}")
    (folder / "mos_with_names.txt").write_text("\n".join(lines) + "\n")
    (folder / "mos_std.txt").write_text("\n".join("0.1" for _ in lines) + "\n")
    return folder


CSIQ_REFS = ["1600", "aerial_city", "boston", "bridge", "butter_flower", "cactus", "child_swimming",
             "couple", "fisher", "flower"]


def fake_csiq(root: Path) -> Path:
    folder = root / "CSIQ"
    rows = []
    for idx, ref in enumerate(CSIQ_REFS):
        write_image(folder / "src_imgs" / f"{ref}.png")
        for dst_idx, kind in enumerate(CSIQ_TYPES, start=1):
            subdir, tag = CSIQ_TYPES[kind]
            write_image(folder / "dst_imgs" / subdir / f"{ref}.{tag}.1.png")
            # the workbook stores numeric image names as numbers
            written = "jpeg2000" if kind == "jpeg 2000" and idx % 2 else kind  # both spellings occur
            rows.append({"image": int(ref) if ref.isdigit() else ref, "dst_idx": dst_idx, "dst_type": written,
                         "dst_lev": 1, "dmos_std": 0.05, "dmos": round(0.05 * dst_idx + 0.01 * idx, 3)})
    with pd.ExcelWriter(folder / "csiq.DMOS.xlsx", engine="openpyxl") as writer:
        pd.DataFrame({"note": ["see all_by_image"]}).to_excel(writer, sheet_name="readme", index=False)
        # the release's table does not start at A1
        pd.DataFrame(rows).to_excel(writer, sheet_name="all_by_image", index=False, startrow=2, startcol=1)
    return folder


def fake_live(root: Path) -> Path:
    folder = root / "databaserelease2"
    folder.mkdir(parents=True)
    refs = [f"ref{i:02d}.bmp" for i in range(29)]
    refnames = [refs[i % 29] for i in range(len(LIVE_PATHS))]
    orgs = np.zeros(len(LIVE_PATHS))
    orgs[::5] = 1  # every fifth entry is a reference shown among the distorted images
    dmos = np.where(orgs == 1, 0.0, np.linspace(10, 90, len(LIVE_PATHS)))
    savemat(folder / "dmos.mat", {"dmos": dmos[None, :], "orgs": orgs[None, :]})
    savemat(folder / "refnames_all.mat", {"refnames_all": cell_array(refnames, row=True)})
    for rel in LIVE_PATHS[:3] + ["fastfading/img174.bmp"]:
        write_image(folder / rel)
    for r in refs:
        write_image(folder / "refimgs" / r)
    return folder


def fake_synthetic(root: Path) -> Path:
    """labels.csv as iqabench.builders.embedded writes it, with images (the real build takes a minute)."""
    folder = root / "synthetic"
    rows = []
    for r, ref in enumerate(("sk_astronaut", "sk_coffee", "sk_camera", "sk_coins", "pyiqa_I04")):
        write_image(folder / "refs" / f"{ref}.png")
        for d, dist in enumerate(("jpeg", "white_noise")):
            for level in (1, 2):
                name = f"{ref}__{dist}__{level}.png"
                write_image(folder / "images" / name, 20 * level)
                rows.append({"dist_img": f"images/{name}", "ref_img": f"refs/{ref}.png", "distortion": dist,
                             "level": level, "fsim": round(0.9 - 0.1 * level - 0.01 * d - 0.001 * r, 6)})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder


FAKES = {"kadid10k": fake_kadid, "agiqa3k": lambda r: fake_agiqa(r, ""), "spaq": fake_spaq,
         "livec": fake_livec, "tid2013": fake_tid2013, "csiq": fake_csiq, "live": fake_live,
         "koniq10k": lambda r: fake_koniq(r, "1024x768"), "koniq10k-512x384": lambda r: fake_koniq(r, "512x384"),
         "synthetic": fake_synthetic}


# -- the cards themselves -----------------------------------------------------------------------

def test_every_built_in_card_is_a_complete_toml_file_and_registered():
    files = sorted(CARDS.glob("*/card.toml"))
    assert {f.parent.name for f in files} == BUILT_IN
    for path in files:
        c = DatasetCard.from_toml(path)
        assert c.name == path.parent.name and registry.datasets.get(c.name).name == c.name
        assert c.title and c.notes and (c.url.startswith("https://") or c.name == "synthetic")
        assert c.name.lower() in {f.lower() for f in c.folder_names} or c.name == "koniq10k-512x384"
        assert c.synthetic_distortions == (c.name in SYNTHETIC)
        assert c.default_split.startswith("byref-") == (c.name in SYNTHETIC)
        assert c.score_range[0] < c.score_range[1] and c.target_range[0] < c.target_range[1]
        assert not c.notes.startswith("\n") and "\\" not in c.notes
        for alias in c.aliases:
            assert registry.datasets.get(alias).name == c.name
    # seed 000 trains on KADID dmos/5, KonIQ MOS/100, AGIQA mos_quality/5
    assert card("kadid10k").score_range == (1.0, 5.0) and card("kadid10k").target_range == (0.0, 5.0)
    assert card("koniq10k").target_range == (0.0, 100.0) and card("agiqa3k").target_range == (0.0, 5.0)
    assert card("live").target_range == (0.0, 100.0)  # its accepted range is wider (DMOS beyond 0-100)
    assert card("kadid10k").higher_better and not card("csiq").higher_better and not card("live").higher_better
    assert card("koniq10k").default_split == "official"
    assert card("agiqa3k").default_split == "ratio60-20-20-seed42"
    assert card("spaq").default_split == card("livec").default_split == "ratio80-10-10-seed42"
    assert card("synthetic").builder == "synthetic"  # a name registered under iqabench.builders
    assert card("kadid").name == "kadid10k" and card("clive").name == "livec"


@pytest.mark.parametrize("name", sorted(FAKES))
def test_fake_release_reads_with_images_found_and_default_split(tmp_path, name):
    FAKES[name](tmp_path)
    folder, table = card(name).load(tmp_path)
    assert {"id", "path", "label"} <= set(table.columns)
    assert table["id"].is_unique and table["label"].notna().all()
    lo, hi = card(name).score_range
    assert table["label"].between(lo, hi).all()
    if name != "live":  # the LIVE fake writes only a few of its 779 images
        missing = [p for p in table["path"] if not (folder / p).is_file()]
        assert not missing, missing[:3]
    if name in SYNTHETIC:
        assert table["ref"].notna().all()
        assert all((folder / p).is_file() for p in table["ref_path"])
    split = make_split(name, table, card(name).default_split)
    assert sorted(sum(split.parts.values(), [])) == sorted(table["id"])
    assert all(split.parts[p] for p in ("train", "test"))


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_by_reference_split_keeps_each_reference_in_one_part(tmp_path, name):
    FAKES[name](tmp_path)
    _, table = card(name).load(tmp_path)
    ratio = "34-33-33" if name == "synthetic" else "80-10-10"  # the synthetic fake has 5 references
    split = make_split(name, table, f"byref-ratio{ratio}-seed42")
    ref_of = dict(zip(table["id"], table["ref"], strict=True))
    refs = {p: {ref_of[i] for i in ids} for p, ids in split.parts.items()}
    assert refs["train"] and refs["val"] and refs["test"]
    assert not (refs["train"] & refs["val"] or refs["train"] & refs["test"] or refs["val"] & refs["test"])


# -- per-dataset details ------------------------------------------------------------------------

def test_kadid_reference_direction_and_distortion_from_the_name(tmp_path):
    fake_kadid(tmp_path, n_refs=2)
    _, table = card("kadid10k").load(tmp_path)
    row = table.set_index("id").loc["I02_01_01.png"]
    assert row["ref"] == "I02.png" and row["path"] == "images/I02_01_01.png"
    assert row["ref_path"] == "images/I02.png"
    assert row["distortion"] == "gaussian_blur" and row["level"] == 1
    assert set(table["distortion"]) == {"gaussian_blur", "lens_blur"}
    assert len(table) == 4


def test_kadid_renamed_file_keeps_its_row_without_a_distortion(tmp_path):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,4.5,0.1",
                               "my_copy.png,I01.png,3.5,0.1"])
    _, table = card("kadid10k").load(tmp_path)
    rows = table.set_index("id")
    assert rows.loc["my_copy.png", "label"] == 3.5 and pd.isna(rows.loc["my_copy.png", "distortion"])
    assert rows.loc["I01_01_01.png", "distortion"] == "gaussian_blur"


def test_koniq_resolution_auto_prefers_1024_and_records_the_choice(tmp_path):
    folder = fake_koniq(tmp_path, "512x384")
    _, table = card("koniq10k").load(tmp_path)
    assert set(p.split("/")[0] for p in table["path"]) == {"512x384"}
    assert table["official_set"].value_counts().to_dict() == {"train": 6, "val": 2, "test": 2}
    write_image(folder / "1024x768" / "1000.jpg")
    _, table = card("koniq10k").load(tmp_path)
    assert table["path"].iloc[0] == "1024x768/1000.jpg"
    _, forced = card("koniq10k-512x384").load(tmp_path)
    assert forced["path"].iloc[0] == "512x384/1000.jpg"
    assert make_split("k", forced, "official").hash == make_split("k", table, "official").hash


def test_koniq_unknown_set_value_is_refused(tmp_path):
    folder = fake_koniq(tmp_path, "1024x768")
    csv = folder / "koniq10k_distributions_sets.csv"
    csv.write_text(csv.read_text().replace(",test\n", ",holdout\n", 1))
    with pytest.raises(IqaError, match=r"koniq10k_distributions_sets.csv: unknown set 'holdout' in data row 9; "
                                       r"known: training, validation, test"):
        card("koniq10k").load(tmp_path)


def test_koniq_empty_set_cell_names_the_row(tmp_path):
    folder = fake_koniq(tmp_path, "1024x768")
    csv = folder / "koniq10k_distributions_sets.csv"
    csv.write_text(csv.read_text().replace(",validation\n", ",\n", 1))
    with pytest.raises(IqaError, match=r"^\S*koniq10k_distributions_sets.csv: empty set in data row 7$"):
        card("koniq10k").load(tmp_path)


def test_agiqa_images_in_a_subfolder_are_found(tmp_path):
    folder = fake_agiqa(tmp_path, "images")
    _, table = card("agiqa3k").load(tmp_path)
    assert table["path"].iloc[0] == "images/sd1.5_normal_000.jpg"
    assert (folder / table["path"].iloc[-1]).is_file()


def test_livec_excludes_the_seven_training_images(tmp_path):
    fake_livec(tmp_path)
    _, table = card("livec").load(tmp_path)
    assert len(table) == 10 and not table["id"].str.startswith("t").any()
    # labels stay aligned with names after the exclusion
    assert table["label"].iloc[0] == pytest.approx(np.linspace(3.4, 92.4, 17)[7])


def test_tid2013_reference_is_canonical_and_case_is_ignored(tmp_path):
    fake_tid2013(tmp_path, n_refs=3)
    _, table = card("tid2013").load(tmp_path)
    row = table.set_index("id").loc["i02_01_1.bmp"]
    assert row["ref"] == "I02"
    assert row["path"] == "distorted_images/I02_01_1.BMP"
    assert row["ref_path"] == "reference_images/I02.BMP"
    assert row["distortion"] == "additive_gaussian_noise" and row["level"] == 1


def test_exact_spelling_wins_over_a_case_variant(tmp_path):
    folder = fake_tid2013(tmp_path, n_refs=1)
    write_image(folder / "distorted_images" / "I01_01_1.BMP")  # both spellings on a case-sensitive disk
    if folder_ignores_case(folder, folder / "mos_with_names.txt"):
        pytest.skip("this file system ignores case: two spellings cannot coexist")
    _, table = card("tid2013").load(tmp_path)
    assert table.set_index("id").loc["i01_01_1.bmp", "path"] == "distorted_images/i01_01_1.bmp"


def test_csiq_maps_types_to_folders_and_numeric_names(tmp_path):
    fake_csiq(tmp_path)
    _, table = card("csiq").load(tmp_path)
    assert len(table) == 60
    rows = table.set_index("id")
    assert rows.loc["1600.AWGN.1.png", "path"] == "dst_imgs/awgn/1600.AWGN.1.png"
    assert rows.loc["1600.AWGN.1.png", "ref"] == "1600"
    assert rows.loc["1600.AWGN.1.png", "ref_path"] == "src_imgs/1600.png"
    assert rows.loc["boston.jpeg2000.1.png", "path"] == "dst_imgs/jpeg2000/boston.jpeg2000.1.png"
    assert rows.loc["1600.AWGN.1.png", "label"] == pytest.approx(0.05)
    assert rows.loc["boston.jpeg2000.1.png", "distortion"] == "jpeg 2000"  # alias jpeg2000 -> canonical


def test_csiq_flattened_distorted_folder_is_found(tmp_path):
    folder = fake_csiq(tmp_path)
    for f in list((folder / "dst_imgs").rglob("*.png")):
        f.rename(folder / "dst_imgs" / f.name)
    _, table = card("csiq").load(tmp_path)
    assert all(p.count("/") == 1 and (folder / p).is_file() for p in table["path"])


def test_csiq_missing_file_falls_back_to_the_release_layout(tmp_path):
    folder = fake_csiq(tmp_path)
    (folder / "dst_imgs" / "blur" / "cactus.BLUR.1.png").unlink()
    _, table = card("csiq").load(tmp_path)
    assert table.set_index("id").loc["cactus.BLUR.1.png", "path"] == "dst_imgs/blur/cactus.BLUR.1.png"


def test_live_ordering_and_reference_exclusion(tmp_path):
    fake_live(tmp_path)
    _, table = card("live").load(tmp_path)
    assert len(table) == 982 - len(range(0, 982, 5))
    ids = set(table["id"])
    assert "jp2k/img1.bmp" not in ids  # entry 0 is a reference in the fake
    assert {"jpeg/img2.bmp", "wn/img2.bmp", "gblur/img3.bmp", "fastfading/img174.bmp"} <= ids
    assert "jpeg/img234.bmp" not in ids and "jp2k/img228.bmp" not in ids
    row = table.set_index("id").loc["jp2k/img2.bmp"]
    assert row["ref"] == "ref01.bmp" and row["ref_path"] == "refimgs/ref01.bmp" and row["distortion"] == "jp2k"
    assert row["label"] == pytest.approx(np.linspace(10, 90, 982)[1])
    # entry 228 (0-based 227) is jpeg/img1.bmp; entry 461 wn/img1.bmp; entry 982 fastfading/img174.bmp
    labels = table.set_index("id")["label"]
    assert labels["jpeg/img2.bmp"] == pytest.approx(np.linspace(10, 90, 982)[228])
    assert labels["fastfading/img174.bmp"] == pytest.approx(90.0)


def test_live_wrong_entry_count_is_refused(tmp_path):
    folder = fake_live(tmp_path)
    savemat(folder / "dmos.mat", {"dmos": np.ones((1, 981)), "orgs": np.zeros((1, 981))})
    with pytest.raises(IqaError, match=r"dmos.mat: dmos has 981 entries, expected 982 \(jp2k 227, jpeg 233"):
        card("live").load(tmp_path)


def test_synthetic_card_reads_the_embedded_layout(tmp_path):
    folder = fake_synthetic(tmp_path)
    _, table = card("synthetic").load(tmp_path)
    assert len(table) == 20
    row = table.set_index("id").loc["sk_coffee__white_noise__2.png"]
    assert row["path"] == "images/sk_coffee__white_noise__2.png"
    assert row["ref"] == "sk_coffee.png" and row["ref_path"] == "refs/sk_coffee.png"
    assert row["distortion"] == "white_noise" and row["level"] == 2
    assert row["label"] == pytest.approx(0.9 - 0.2 - 0.01 - 0.001)
    assert table["level"].dtype.kind == "i"
    assert (folder / row["ref_path"]).is_file()


def test_builder_is_looked_up_only_when_the_dataset_is_built(tmp_path):
    text = (CARDS / "synthetic" / "card.toml").read_text()
    path = tmp_path / "card.toml"
    path.write_text(text.replace('builder = "synthetic"', 'builder = "no-such-builder"'))
    c = DatasetCard.from_toml(path)  # reading the card looks nothing up
    assert c.build is not None and card("kadid10k").build is None
    with pytest.raises(IqaError, match=r"card.toml: \[build\] builder: unknown dataset builder 'no-such-builder'.*"
                                       r"Known: .*synthetic"):
        c.load(tmp_path / "root")


# -- bad inputs, through card.load --------------------------------------------------------------

def test_missing_dataset_names_the_folders_tried(tmp_path):
    with pytest.raises(IqaError, match="kadid10k: not found .*KADID-10k.*dmos.csv"):
        card("kadid10k").load(tmp_path)


def test_missing_column_is_listed(tmp_path):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,score", "I01_01_01.png,I01.png,4.5"])
    with pytest.raises(IqaError, match=r"dmos.csv: missing column\(s\) dmos; found dist_img, ref_img, score"):
        card("kadid10k").load(tmp_path)


def test_non_utf8_csv_is_refused_naming_the_file(tmp_path):
    folder = fake_kadid(tmp_path, n_refs=1)
    (folder / "dmos.csv").write_bytes("dist_img,ref_img,dmos,var\nI01_01_01_é.png,I01.png,4.5,0.1\n".encode("latin-1"))
    with pytest.raises(IqaError, match=r"dmos.csv: not UTF-8 text \(byte 0xe9"):
        card("kadid10k").load(tmp_path)


def test_utf8_bom_is_accepted(tmp_path):
    folder = fake_kadid(tmp_path, n_refs=1)
    text = (folder / "dmos.csv").read_text()
    (folder / "dmos.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert len(card("kadid10k").load(tmp_path)[1]) == 2


def test_image_without_a_label_is_refused(tmp_path):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,4.5,0.1",
                               "I01_02_01.png,I01.png,,0.1"])
    with pytest.raises(IqaError, match=r"dmos.csv: empty dmos in data row 2 \(image 'I01_02_01.png'\)"):
        card("kadid10k").load(tmp_path)


def test_label_that_is_not_a_number_is_refused(tmp_path):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,NA,0.1"])
    with pytest.raises(IqaError, match=r"dmos.csv: dmos 'NA' is not a number \(data row 1, image 'I01_01_01.png'\)"):
        card("kadid10k").load(tmp_path)


def test_trailing_comma_rows_are_not_data(tmp_path):
    fake_kadid(tmp_path, n_refs=1, rows=["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,4.5,0.1",
                                         "I01_02_01.png,I01.png,4.4,0.1", ",,,", ",,,", " , ,,"])
    _, table = card("kadid10k").load(tmp_path)
    assert table["id"].tolist() == ["I01_01_01.png", "I01_02_01.png"]


def test_comma_row_between_data_rows_is_still_an_error(tmp_path):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,4.5,0.1", ",,,",
                               "I01_02_01.png,I01.png,4.4,0.1"])
    with pytest.raises(IqaError, match="dmos.csv: empty dist_img in data row 2"):
        card("kadid10k").load(tmp_path)


def test_empty_image_name_is_refused_with_its_row(tmp_path):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,4.5,0.1", ",I01.png,4.4,0.1"])
    with pytest.raises(IqaError, match="dmos.csv: empty dist_img in data row 2"):
        card("kadid10k").load(tmp_path)


def test_duplicate_id_is_refused(tmp_path):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,4.5,0.1",
                               "I01_01_01.png,I01.png,4.4,0.1"])
    with pytest.raises(IqaError, match="duplicate image id"):
        card("kadid10k").load(tmp_path)


def test_two_spellings_of_one_path_are_refused(tmp_path):
    folder = fake_agiqa(tmp_path, "")
    pd.DataFrame({"name": ["sd1.5_normal_000.jpg", "./sd1.5_normal_000.jpg"], "mos_quality": [1.0, 2.0]}
                 ).to_csv(folder / "data.csv", index=False)
    with pytest.raises(IqaError, match=r"data.csv: two rows name the same image file: "
                                       r"'sd1.5_normal_000.jpg' and 'sd1.5_normal_000.jpg'"):
        card("agiqa3k").load(tmp_path)


def test_paths_are_normalised(tmp_path):
    table = pd.DataFrame({"id": ["a", "b"], "path": ["./img/a.png", "img\\sub\\..\\b.png"], "label": [1.0, 2.0]})
    out = validate_table(table, tmp_path, tmp_path / "m.csv")
    assert out["path"].tolist() == ["img/a.png", "img/b.png"]
    same = pd.DataFrame({"id": ["a", "b"], "path": ["img/a.png", "img\\a.png"], "label": [1.0, 2.0]})
    with pytest.raises(IqaError, match=r"m.csv: two rows name the same image file: 'img/a.png' and 'img/a.png'"):
        validate_table(same, tmp_path, tmp_path / "m.csv")


def test_names_differing_only_in_case_collide_on_a_case_insensitive_disk(tmp_path):
    table = pd.DataFrame({"id": ["a", "b"], "path": ["img/A.png", "img/a.png"], "label": [1.0, 2.0]})
    with pytest.raises(IqaError, match=r"m.csv: two rows name the same image file: 'img/A.png' and 'img/a.png'"):
        validate_table(table, tmp_path, tmp_path / "m.csv", case_insensitive=True)
    assert len(validate_table(table, tmp_path, tmp_path / "m.csv", case_insensitive=False)) == 2


def test_case_sensitivity_probe_sees_this_disk(tmp_path):
    probe = tmp_path / "Meta.csv"
    probe.write_text("x")
    expected = (tmp_path / "mETA.CSV").exists()  # what the disk does, asked directly
    assert folder_ignores_case(tmp_path, probe) == expected
    # the probe decides collisions when validate_table is not told
    table = pd.DataFrame({"id": ["a", "b"], "path": ["A.png", "a.png"], "label": [1.0, 2.0]})
    if expected:
        with pytest.raises(IqaError, match="same image file"):
            validate_table(table, tmp_path, probe)
    else:
        assert len(validate_table(table, tmp_path, probe)) == 2


@pytest.mark.parametrize("value", ["inf", "-inf"])
def test_infinite_label_is_refused_even_when_out_of_range_is_accepted(tmp_path, value):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,4.5,0.1",
                               f"I01_02_01.png,I01.png,{value},0.1"])
    for accept in (False, True):
        with pytest.raises(IqaError, match=rf"dmos.csv: label {value} of image 'I01_02_01.png' is not finite"):
            card("kadid10k").load(tmp_path, accept_out_of_range=accept)


def test_label_outside_the_score_range_needs_an_explicit_override(tmp_path):
    fake_kadid(tmp_path, n_refs=1, rows=["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,4.5,0.1",
                                         "I01_02_01.png,I01.png,0.5,0.1", "I01_03_01.png,I01.png,5.5,0.1"])
    with pytest.raises(IqaError, match=r"dmos.csv: label 0.5 of image 'I01_02_01.png' is outside the card's score "
                                       r"range \[1, 5\] \(2 such row\(s\)\)"):
        card("kadid10k").load(tmp_path)
    _, table = card("kadid10k").load(tmp_path, accept_out_of_range=True)
    assert table["label"].tolist() == [4.5, 0.5, 5.5]


def test_path_escaping_the_data_root_is_refused(tmp_path):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,dmos,var", "../../../etc/passwd,I01.png,4.5,0.1"])
    with pytest.raises(IqaError, match="escapes the dataset folder"):
        card("kadid10k").load(tmp_path)


def test_spaq_workbook_without_mos_column(tmp_path):
    folder = fake_spaq(tmp_path)
    pd.DataFrame({"Image name": ["00001.jpg"], "Score": [50.0]}).to_excel(folder / SPAQ_XLSX, index=False)
    with pytest.raises(IqaError, match="no header row with column\\(s\\) MOS"):
        card("spaq").load(tmp_path)


def test_csiq_missing_sheet_lists_the_sheets(tmp_path):
    folder = fake_csiq(tmp_path)
    pd.DataFrame({"image": [1600]}).to_excel(folder / "csiq.DMOS.xlsx", sheet_name="Sheet1", index=False)
    with pytest.raises(IqaError, match="no sheet 'all_by_image'; sheets: Sheet1"):
        card("csiq").load(tmp_path)


def test_csiq_unknown_distortion_type(tmp_path):
    folder = fake_csiq(tmp_path)
    pd.DataFrame({"image": [1600], "dst_idx": [1], "dst_type": ["rain"], "dst_lev": [1], "dmos_std": [0.1],
                  "dmos": [0.2]}).to_excel(folder / "csiq.DMOS.xlsx", sheet_name="all_by_image", index=False)
    with pytest.raises(IqaError, match="csiq.DMOS.xlsx: unknown dst_type 'rain' in data row 1; known: noise, jpeg"):
        card("csiq").load(tmp_path)


def test_not_an_xlsx_file(tmp_path):
    folder = fake_spaq(tmp_path)
    (folder / SPAQ_XLSX).write_text("Image name,MOS\n")
    with pytest.raises(IqaError, match="not a readable .xlsx workbook"):
        card("spaq").load(tmp_path)


def test_mat_missing_variable_lists_what_is_there(tmp_path):
    folder = fake_livec(tmp_path)
    savemat(folder / LIVEC_MOS, {"mos": np.ones((1, 17))})
    with pytest.raises(IqaError, match=r"AllMOS_release.mat: missing variable\(s\) AllMOS_release; the file holds mos"):
        card("livec").load(tmp_path)


def test_mat_length_mismatch(tmp_path):
    folder = fake_livec(tmp_path)
    savemat(folder / LIVEC_MOS, {"AllMOS_release": np.ones((1, 16))})
    with pytest.raises(IqaError, match=r"AllMOS_release.mat: AllMOS_release has 16 entries, but AllImages_release "
                                       r"in \S+AllImages_release.mat has 17"):
        card("livec").load(tmp_path)


def test_mat_v73_is_refused_with_the_fix(tmp_path):
    folder = fake_livec(tmp_path)
    # a v7.3 file starts with a 128-byte MATLAB header whose version field is 0x0200 (then HDF5)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    (folder / LIVEC_NAMES).write_bytes(header + b"\x00" * 512)
    with pytest.raises(IqaError, match=r"AllImages_release.mat: MATLAB v7.3 .*save\(file, '-v7'\)"):
        card("livec").load(tmp_path)


def test_mat_garbage_is_refused(tmp_path):
    folder = fake_livec(tmp_path)
    (folder / LIVEC_NAMES).write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(IqaError, match="AllImages_release.mat: not a readable .mat file"):
        card("livec").load(tmp_path)


def test_mat_cell_of_numbers_is_not_names(tmp_path):
    folder = fake_livec(tmp_path)
    savemat(folder / LIVEC_NAMES, {"AllImages_release": np.arange(17.0)[:, None]})
    with pytest.raises(IqaError, match="'AllImages_release' is not a cell array of strings"):
        card("livec").load(tmp_path)


def test_live_missing_refnames_file(tmp_path):
    folder = fake_live(tmp_path)
    (folder / "refnames_all.mat").unlink()
    with pytest.raises(IqaError, match="refnames_all.mat: file not found"):
        card("live").load(tmp_path)


def test_whitespace_txt_bad_line_and_bad_number(tmp_path):
    folder = fake_tid2013(tmp_path, n_refs=2)
    txt = folder / "mos_with_names.txt"
    txt.write_text("5.1 i01_01_1.bmp\n\n4.0 i01_02_1.bmp extra\n")
    with pytest.raises(IqaError, match="mos_with_names.txt: line 3 has 3 field"):
        card("tid2013").load(tmp_path)
    txt.write_text("5.1 i01_01_1.bmp\nfive i01_02_1.bmp\n")
    with pytest.raises(IqaError, match=r"mos 'five' is not a number \(line 2, image 'i01_02_1.bmp'\)"):
        card("tid2013").load(tmp_path)
    txt.write_text("5.1 cat.bmp\n")
    with pytest.raises(IqaError, match=r"mos_with_names.txt: 'cat.bmp' in line 1 is not of the form iNN_TT_L.bmp"):
        card("tid2013").load(tmp_path)


def test_empty_csv(tmp_path):
    (tmp_path / "x.csv").write_bytes(b"")
    with pytest.raises(IqaError, match="x.csv: empty file"):
        formats.read_csv(tmp_path / "x.csv")


# -- card files: their own mistakes are one line naming the file --------------------------------

def kadid_toml(tmp_path: Path, old: str = "", new: str = "") -> Path:
    text = (CARDS / "kadid10k" / "card.toml").read_text()
    assert old in text
    path = tmp_path / "card.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, message", [
    ('label_name = "dmos"', 'label_name = "dmos"\nlabel_scale = 5.0', r"card.toml: unknown key 'label_scale'"),
    ('default_split = "byref-ratio80-10-10-seed42"\n', "", r"card.toml: missing key 'default_split'"),
    ('format = "csv"', 'format = "parquet"', r"card.toml: \[reader\] unknown format 'parquet' \(known: csv, xlsx"),
    ('id = "{dist_img}"', 'id = "{dist_img}"\ncolumn = "x"', r"card.toml: \[reader\]: unknown key 'column' \(did you mean 'columns'\?\)"),
    ('format = "csv"', 'format = "csv"\nsheet = "x"', r"key 'sheet' does not apply to format 'csv'"),
    ('lookup = "case-insensitive" }\nrefs', 'lookup = "fuzzy" }\nrefs',
     r"\[reader\].images.lookup: unknown value 'fuzzy'"),
    ('extras = { distortion = "{kind}"', 'extras = { distortion = "{kind.label}"',
     r"reads kind.label, but the entries"),
    ('score_range = [1.0, 5.0]', 'score_range = [5.0, 1.0]', r"card.toml: score_range must be \[low, high\]"),
    ("pattern = '(?i)I", "pattern = '(?i)I(", r"\[reader\].match\[0\].pattern: bad regular expression"),
    ('higher_better = true', 'higher_better = "yes"', r"card.toml: higher_better: Input should be a valid boolean \(got 'yes'\)"),
    ('name = "kadid10k"', 'name = "kadid10k', r"card.toml: not a valid TOML file"),
])
def test_card_file_mistakes_are_one_line_naming_the_file(tmp_path, old, new, message):
    path = kadid_toml(tmp_path, old, new)
    with pytest.raises(IqaError, match=message) as err:
        DatasetCard.from_toml(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_template_naming_a_missing_column_says_so(tmp_path):
    path = kadid_toml(tmp_path, 'ref = "{ref_img}"', 'ref = "{reference}"')
    c = DatasetCard.from_toml(path)
    fake_kadid(tmp_path / "root", n_refs=1)
    with pytest.raises(IqaError, match=r"dmos.csv: missing column\(s\) reference; found dist_img, ref_img, dmos"):
        c.load(tmp_path / "root")


# -- the registry -------------------------------------------------------------------------------

@pytest.fixture
def scratch_registry(scratch_registry):
    """The datasets registry as it is, restored after the test (conftest's scratch_registry)."""
    return scratch_registry.datasets


def test_a_plugin_registers_its_own_card_file_with_aliases(tmp_path, scratch_registry):
    path = kadid_toml(tmp_path, 'name = "kadid10k"\n', 'name = "my-kadid"\n')
    path.write_text(path.read_text().replace('aliases = ["kadid-10k", "kadid"]', 'aliases = ["mykadid"]'))
    registry.register_dataset_file(path)
    registry.register_dataset_file(path)  # a plugin imported twice: no clash with itself
    assert scratch_registry.get("mykadid").name == "my-kadid" and "my-kadid" in scratch_registry.names()
    fake_kadid(tmp_path / "root", n_refs=1)
    assert len(scratch_registry.get("mykadid").load(tmp_path / "root")[1]) == 2


def test_a_card_built_in_code_registers_and_clashes_are_refused(tmp_path, scratch_registry):
    c = DatasetCard(name="code-card", title="t", url="u", folder_names=("cc",), layout=("m.csv",), label_name="y",
                    score_range=(0, 1), higher_better=True, default_split="all", aliases=("cc-alias",),
                    reader={"format": "csv", "id": "{x}"})
    registry.register_dataset(c)
    assert scratch_registry.get("cc-alias") is c
    (tmp_path / "cc").mkdir()
    (tmp_path / "cc" / "m.csv").write_text("x,y\na.png,0.5\n")
    assert scratch_registry.get("code-card").load(tmp_path)[1]["path"].tolist() == ["a.png"]
    clash = r"dataset 'kadid10k' is registered twice \(\S+kadid10k/card.toml and \S+/card.toml\)"
    with pytest.raises(IqaError, match=clash):
        registry.register_dataset(DatasetCard.from_toml(kadid_toml(tmp_path)))
    with pytest.raises(IqaError, match="alias 'live' is the name of another dataset"):
        registry.register_dataset(DatasetCard(name="x2", title="t", url="u", folder_names=("x",), layout=("m.csv",),
                                              label_name="y", score_range=(0, 1), higher_better=True,
                                              default_split="all", aliases=("live",), reader={"format": "csv",
                                                                                              "id": "{x}"}))


def test_entry_point_target_naming_a_card_resolves(scratch_registry):
    # what a third-party `iqabench.datasets` entry point gives the registry: "module:attr"
    scratch_registry.register("tiny-again", "iqabench_plugin_tiny_dataset_plugin:TINY_CARD")
    assert scratch_registry.get("tiny-again").name == "tiny"


def test_shipped_card_named_unlike_its_folder_is_refused(tmp_path, monkeypatch):
    (tmp_path / "other").mkdir()
    kadid_toml(tmp_path / "other")
    fresh = registry.Registry("dataset", "no.such.group", registry._is_dataset, load_file=registry._load_card,
                              shipped=lambda: [("other", tmp_path / "other" / "card.toml")])
    with pytest.raises(IqaError, match=r"other/card.toml: declares name 'kadid10k', but its folder registers it as "
                                       r"'other'"):
        fresh.get("other")


# -- the real published metadata ----------------------------------------------------------------

needs_shared = pytest.mark.needs_shared_data  # skips, or fails under IQABENCH_REQUIRE_SHARED=1


@needs_shared
def test_real_koniq_metadata(tmp_path):
    (tmp_path / "koniq10k").mkdir()
    shutil.copy(SHARED_DATA / "koniq10k_distributions_sets.csv", tmp_path / "koniq10k")
    _, table = card("koniq10k").load(tmp_path)
    assert len(table) == 10_073
    split = make_split("koniq10k", table, card("koniq10k").default_split)
    assert {p: len(ids) for p, ids in split.parts.items()} == {"train": 7058, "val": 1000, "test": 2015}
    assert 0 <= table["label"].min() < 10 and 80 < table["label"].max() <= 100
    assert table["path"].str.startswith("1024x768/").all()


@needs_shared
def test_real_agiqa_metadata(tmp_path):
    (tmp_path / "AGIQA-3K").mkdir()
    shutil.copy(SHARED_DATA / "agiqa3k-data.csv", tmp_path / "AGIQA-3K" / "data.csv")
    _, table = card("agiqa3k").load(tmp_path)
    assert len(table) == 2982
    assert table["label"].min() == pytest.approx(0.0, abs=1e-6)
    assert table["label"].max() == pytest.approx(4.49, abs=0.01)
    split = make_split("agiqa3k", table, card("agiqa3k").default_split)
    assert {p: len(ids) for p, ids in split.parts.items()} == {"train": 1789, "val": 596, "test": 597}
    # seeded: the same name gives the same membership
    assert make_split("agiqa3k", table, card("agiqa3k").default_split).hash == split.hash


@needs_shared
def test_real_kadid_metadata(tmp_path):
    (tmp_path / "kadid10k").mkdir()
    shutil.copy(SHARED_DATA / "kadid10k-dmos.csv", tmp_path / "kadid10k" / "dmos.csv")
    _, table = card("kadid10k").load(tmp_path)
    assert len(table) == 10_125 and table["ref"].nunique() == 81
    assert table["distortion"].nunique() == 25 and table["distortion"].notna().all()
    assert table["level"].value_counts().to_dict() == {lv: 2025 for lv in range(1, 6)}
    assert table["label"].min() == pytest.approx(1.0) and table["label"].max() == pytest.approx(4.93)
    split = make_split("kadid10k", table, card("kadid10k").default_split)
    assert sum(len(ids) for ids in split.parts.values()) == 10_125


@needs_shared
def test_real_tid2013_metadata_against_its_own_mixed_case_files(tmp_path):
    folder = tmp_path / "tid2013"
    (folder / "distorted_images").mkdir(parents=True)
    (folder / "reference_images").mkdir()
    shutil.copy(SHARED_DATA / "tid2013-mos_with_names.txt", folder / "mos_with_names.txt")
    (folder / "mos_std.txt").write_text("")
    names = formats.read_whitespace_table(folder / "mos_with_names.txt", ("mos", "name"))["name"].tolist()
    for n in names:  # stored in lower case, whatever case the list uses
        (folder / "distorted_images" / n.lower()).touch()
    for r in range(1, 26):
        (folder / "reference_images" / f"I{r:02d}.BMP").touch()
    _, table = card("tid2013").load(tmp_path)
    assert len(table) == 3000 and table["id"].tolist() == names
    assert all((folder / p).is_file() for p in table["path"]) and all((folder / p).is_file() for p in table["ref_path"])
    assert table["ref"].nunique() == 25 and table["distortion"].nunique() == 24
    assert 0.2 < table["label"].min() and table["label"].max() < 7.3


@needs_shared
def test_real_livec_metadata(tmp_path):
    shutil.copytree(SHARED_DATA / "livec-Data", tmp_path / "ChallengeDB_release" / "Data")
    _, table = card("livec").load(tmp_path)
    assert len(table) == 1162 and not table["id"].str.fullmatch(r"t\d+\.bmp").any()
    assert table["path"].str.startswith("Images/").all()
    assert 3.0 < table["label"].min() < 4.0 and 92.0 < table["label"].max() < 93.0


def test_the_readme_names_every_required_card_field_and_documents_every_field():
    from iqabench.data.card import CardFile
    from iqabench.locations import shipped_folder

    readme = (shipped_folder("datasets") / "README.md").read_text()
    required = readme.split("Required in every card:", 1)[1].split(";", 1)[0]
    named = set(re.findall(r"`\[?([a-z_]+)\]?`", required))
    assert named == {n for n, f in CardFile.model_fields.items() if f.is_required()}
    table = readme.split("## Card fields", 1)[1].split("## ", 1)[0]
    for field in CardFile.model_fields:
        assert f"`{field}`" in table or f"`[{field}]" in table, field


def test_label_cells_read_as_pandas_to_numeric_reads_them():
    """validate_table parses labels without pandas (card.label_number); pandas' to_numeric is the reference."""
    from iqabench.data.card import label_number

    cells = ["3.5", " 4 ", "1e3", "-2.5E-2", ".5", "5.", "+7", "inf", "-inf", "nan", "NaN", "Infinity",
             "", "  ", "abc", "1_000", "1,5", "0x10", "3.5.1", "--1", 2, 2.25, None, float("nan")]
    ours = [label_number(c) for c in cells]
    reference = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").astype(float).tolist()
    for cell, a, b in zip(cells, ours, reference):
        assert (a == b) or (math.isnan(a) and math.isnan(b)), (cell, a, b)
