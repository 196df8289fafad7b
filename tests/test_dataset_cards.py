"""Dataset cards read from official release layouts: the real KonIQ-10k and AGIQA-3k metadata
(when the shared reference folder is beside the checkout), and tiny fake releases of every
other dataset built here with the same file formats (csv, xlsx, .mat, whitespace txt)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.io import savemat

from iqabench.data import formats
from iqabench.data.card import DatasetCard
from iqabench.data.releases import agiqa3k, csiq, kadid10k, koniq10k, live, livec, spaq, tid2013
from iqabench.data.splits import make_split
from iqabench.errors import IqaError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "reference" / "data"
ALL_MODULES = (kadid10k, koniq10k, agiqa3k, spaq, livec, tid2013, csiq, live)
SYNTHETIC = {"kadid10k", "tid2013", "csiq", "live"}


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
                 ).to_excel(folder / spaq.METADATA, index=False, engine="openpyxl")
    return folder


def fake_livec(root: Path) -> Path:
    folder = root / "ChallengeDB_release"
    names = [f"t{i}.bmp" for i in range(1, 8)] + [f"{i}.bmp" for i in range(100, 110)]
    for n in names:
        write_image(folder / "Images" / ("trainingImages" if n.startswith("t") else "") / n)
    (folder / "Data").mkdir(parents=True)
    savemat(folder / livec.NAMES, {"AllImages_release": cell_array(names)})
    savemat(folder / livec.MOS, {"AllMOS_release": np.linspace(3.4, 92.4, len(names))[None, :]})
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
        for dst_idx, kind in enumerate(csiq.DISTORTIONS, start=1):
            subdir, tag = csiq.DISTORTIONS[kind]
            write_image(folder / "dst_imgs" / subdir / f"{ref}.{tag}.1.png")
            # the workbook stores numeric image names as numbers
            written = "jpeg2000" if kind == "jpeg 2000" and idx % 2 else kind  # both spellings occur
            rows.append({"image": int(ref) if ref.isdigit() else ref, "dst_idx": dst_idx, "dst_type": written,
                         "dst_lev": 1, "dmos_std": 0.05, "dmos": round(0.05 * dst_idx + 0.01 * idx, 3)})
    with pd.ExcelWriter(folder / csiq.METADATA, engine="openpyxl") as writer:
        pd.DataFrame({"note": ["see all_by_image"]}).to_excel(writer, sheet_name="readme", index=False)
        # the release's table does not start at A1
        pd.DataFrame(rows).to_excel(writer, sheet_name=csiq.SHEET, index=False, startrow=2, startcol=1)
    return folder


def fake_live(root: Path) -> Path:
    folder = root / "databaserelease2"
    folder.mkdir(parents=True)
    refs = [f"ref{i:02d}.bmp" for i in range(29)]
    refnames = [refs[i % 29] for i in range(live.TOTAL)]
    orgs = np.zeros(live.TOTAL)
    orgs[::5] = 1  # every fifth entry is a reference shown among the distorted images
    dmos = np.where(orgs == 1, 0.0, np.linspace(10, 90, live.TOTAL))
    savemat(folder / "dmos.mat", {"dmos": dmos[None, :], "orgs": orgs[None, :]})
    savemat(folder / "refnames_all.mat", {"refnames_all": cell_array(refnames, row=True)})
    for rel in live.image_paths()[:3] + ["fastfading/img174.bmp"]:
        write_image(folder / rel)
    for r in refs:
        write_image(folder / "refimgs" / r)
    return folder


FAKES = {"kadid10k": fake_kadid, "agiqa3k": lambda r: fake_agiqa(r, ""), "spaq": fake_spaq,
         "livec": fake_livec, "tid2013": fake_tid2013, "csiq": fake_csiq, "live": fake_live,
         "koniq10k": lambda r: fake_koniq(r, "1024x768")}


# -- the cards themselves -----------------------------------------------------------------------

def test_every_card_is_complete_and_consistent():
    names = set()
    for module in ALL_MODULES:
        card = module.CARD
        assert isinstance(card, DatasetCard)
        assert card.name not in names
        names.add(card.name)
        assert card.url.startswith("https://") and card.title and card.notes
        assert card.name in card.folder_names or card.name.lower() in {f.lower() for f in card.folder_names}
        assert card.synthetic_distortions == (card.name in SYNTHETIC)
        assert card.default_split.startswith("byref-") == (card.name in SYNTHETIC)
        lo, hi = card.score_range
        assert lo < hi and card.label_scale == hi
    assert names == {"kadid10k", "koniq10k", "agiqa3k", "spaq", "livec", "tid2013", "csiq", "live"}
    assert kadid10k.CARD.higher_better and not csiq.CARD.higher_better and not live.CARD.higher_better
    assert koniq10k.CARD.default_split == "official"
    assert agiqa3k.CARD.default_split == "ratio60-20-20-seed42"
    assert spaq.CARD.default_split == livec.CARD.default_split == "ratio80-10-10-seed42"


@pytest.mark.parametrize("name", sorted(FAKES))
def test_fake_release_reads_with_images_found_and_default_split(tmp_path, name):
    module = {m.CARD.name: m for m in ALL_MODULES}[name]
    FAKES[name](tmp_path)
    folder, table = module.CARD.load(tmp_path)
    assert {"id", "path", "label"} <= set(table.columns)
    assert table["id"].is_unique and table["label"].notna().all()
    lo, hi = module.CARD.score_range
    assert table["label"].between(lo, hi).all()
    if name != "live":  # the LIVE fake writes only a few of its 779 images
        missing = [p for p in table["path"] if not (folder / p).is_file()]
        assert not missing, missing[:3]
    if name in SYNTHETIC:
        assert table["ref"].notna().all()
        assert all((folder / p).is_file() for p in table["ref_path"])
    split = make_split(name, table, module.CARD.default_split)
    assert sorted(sum(split.parts.values(), [])) == sorted(table["id"])
    assert all(split.parts[p] for p in ("train", "test"))


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_by_reference_split_keeps_each_reference_in_one_part(tmp_path, name):
    module = {m.CARD.name: m for m in ALL_MODULES}[name]
    FAKES[name](tmp_path)
    _, table = module.CARD.load(tmp_path)
    split = make_split(name, table, "byref-ratio80-10-10-seed42")
    ref_of = dict(zip(table["id"], table["ref"], strict=True))
    refs = {p: {ref_of[i] for i in ids} for p, ids in split.parts.items()}
    assert refs["train"] and refs["val"] and refs["test"]
    assert not (refs["train"] & refs["val"] or refs["train"] & refs["test"] or refs["val"] & refs["test"])


# -- per-dataset details ------------------------------------------------------------------------

def test_kadid_reference_and_direction(tmp_path):
    fake_kadid(tmp_path, n_refs=2)
    _, table = kadid10k.CARD.load(tmp_path)
    row = table.set_index("id").loc["I02_01_01.png"]
    assert row["ref"] == "I02.png" and row["path"] == "images/I02_01_01.png"
    assert row["ref_path"] == "images/I02.png"
    assert len(table) == 4


def test_koniq_resolution_auto_prefers_1024_and_records_the_choice(tmp_path):
    folder = fake_koniq(tmp_path, "512x384")
    _, table = koniq10k.CARD.load(tmp_path)
    assert set(p.split("/")[0] for p in table["path"]) == {"512x384"}
    assert table["official_set"].value_counts().to_dict() == {"train": 6, "val": 2, "test": 2}
    write_image(folder / "1024x768" / "1000.jpg")
    _, table = koniq10k.CARD.load(tmp_path)
    assert table["path"].iloc[0] == "1024x768/1000.jpg"
    _, forced = koniq10k.CARD_512.load(tmp_path)
    assert forced["path"].iloc[0] == "512x384/1000.jpg"
    assert make_split("k", forced, "official").hash == make_split("k", table, "official").hash


def test_koniq_unknown_set_value_is_refused(tmp_path):
    folder = fake_koniq(tmp_path, "1024x768")
    csv = folder / koniq10k.METADATA
    csv.write_text(csv.read_text().replace(",test\n", ",holdout\n", 1))
    with pytest.raises(IqaError, match="holdout"):
        koniq10k.CARD.load(tmp_path)


def test_agiqa_images_in_a_subfolder_are_found(tmp_path):
    folder = fake_agiqa(tmp_path, "images")
    _, table = agiqa3k.CARD.load(tmp_path)
    assert table["path"].iloc[0] == "images/sd1.5_normal_000.jpg"
    assert (folder / table["path"].iloc[-1]).is_file()


def test_livec_excludes_the_seven_training_images(tmp_path):
    fake_livec(tmp_path)
    _, table = livec.CARD.load(tmp_path)
    assert len(table) == 10 and not table["id"].str.startswith("t").any()
    # labels stay aligned with names after the exclusion
    assert table["label"].iloc[0] == pytest.approx(np.linspace(3.4, 92.4, 17)[7])


def test_tid2013_reference_is_canonical_and_case_is_ignored(tmp_path):
    fake_tid2013(tmp_path, n_refs=3)
    _, table = tid2013.CARD.load(tmp_path)
    row = table.set_index("id").loc["i02_01_1.bmp"]
    assert row["ref"] == "I02"
    assert row["path"] == "distorted_images/I02_01_1.BMP"
    assert row["ref_path"] == "reference_images/I02.BMP"


def test_csiq_maps_types_to_folders_and_numeric_names(tmp_path):
    fake_csiq(tmp_path)
    _, table = csiq.CARD.load(tmp_path)
    assert len(table) == 60
    rows = table.set_index("id")
    assert rows.loc["1600.AWGN.1.png", "path"] == "dst_imgs/awgn/1600.AWGN.1.png"
    assert rows.loc["1600.AWGN.1.png", "ref"] == "1600"
    assert rows.loc["boston.jpeg2000.1.png", "path"] == "dst_imgs/jpeg2000/boston.jpeg2000.1.png"
    assert rows.loc["1600.AWGN.1.png", "label"] == pytest.approx(0.05)


def test_csiq_flattened_distorted_folder_is_found(tmp_path):
    folder = fake_csiq(tmp_path)
    for f in list((folder / "dst_imgs").rglob("*.png")):
        f.rename(folder / "dst_imgs" / f.name)
    _, table = csiq.CARD.load(tmp_path)
    assert all(p.count("/") == 1 and (folder / p).is_file() for p in table["path"])


def test_live_ordering_and_reference_exclusion(tmp_path):
    fake_live(tmp_path)
    _, table = live.CARD.load(tmp_path)
    assert live.TOTAL == 982
    paths = live.image_paths()
    assert paths[0] == "jp2k/img1.bmp" and paths[227] == "jpeg/img1.bmp" and paths[460] == "wn/img1.bmp"
    assert paths[634] == "gblur/img1.bmp" and paths[808] == "fastfading/img1.bmp"
    assert paths[-1] == "fastfading/img174.bmp"
    assert len(table) == 982 - len(range(0, 982, 5))
    assert "jp2k/img1.bmp" not in set(table["id"])  # entry 0 is a reference in the fake
    row = table.set_index("id").loc["jp2k/img2.bmp"]
    assert row["ref"] == "ref01.bmp" and row["ref_path"] == "refimgs/ref01.bmp"
    assert row["label"] == pytest.approx(np.linspace(10, 90, 982)[1])


def test_live_wrong_entry_count_is_refused(tmp_path):
    folder = fake_live(tmp_path)
    savemat(folder / "dmos.mat", {"dmos": np.ones((1, 981)), "orgs": np.zeros((1, 981))})
    with pytest.raises(IqaError, match="981 entries, expected 982"):
        live.CARD.load(tmp_path)


# -- bad inputs, through card.load --------------------------------------------------------------

def test_missing_dataset_names_the_folders_tried(tmp_path):
    with pytest.raises(IqaError, match="kadid10k: not found .*KADID-10k.*dmos.csv"):
        kadid10k.CARD.load(tmp_path)


def test_missing_column_is_listed(tmp_path):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,score", "I01_01_01.png,I01.png,4.5"])
    with pytest.raises(IqaError, match=r"dmos.csv: missing column\(s\) dmos; found dist_img, ref_img, score"):
        kadid10k.CARD.load(tmp_path)


def test_non_utf8_csv_is_refused_naming_the_file(tmp_path):
    folder = fake_kadid(tmp_path, n_refs=1)
    (folder / "dmos.csv").write_bytes("dist_img,ref_img,dmos,var\nI01_01_01_é.png,I01.png,4.5,0.1\n".encode("latin-1"))
    with pytest.raises(IqaError, match=r"dmos.csv: not UTF-8 text \(byte 0xe9"):
        kadid10k.CARD.load(tmp_path)


def test_utf8_bom_is_accepted(tmp_path):
    folder = fake_kadid(tmp_path, n_refs=1)
    text = (folder / "dmos.csv").read_text()
    (folder / "dmos.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert len(kadid10k.CARD.load(tmp_path)[1]) == 2


def test_nan_label_is_refused(tmp_path):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,4.5,0.1",
                               "I01_02_01.png,I01.png,,0.1"])
    with pytest.raises(IqaError, match="empty or non-numeric label, first 'I01_02_01.png'"):
        kadid10k.CARD.load(tmp_path)


def test_duplicate_id_is_refused(tmp_path):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,4.5,0.1",
                               "I01_01_01.png,I01.png,4.4,0.1"])
    with pytest.raises(IqaError, match="duplicate image id"):
        kadid10k.CARD.load(tmp_path)


def test_path_escaping_the_data_root_is_refused(tmp_path):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,dmos,var", "../../../etc/passwd,I01.png,4.5,0.1"])
    with pytest.raises(IqaError, match="escapes the dataset folder"):
        kadid10k.CARD.load(tmp_path)


def test_spaq_workbook_without_mos_column(tmp_path):
    folder = fake_spaq(tmp_path)
    pd.DataFrame({"Image name": ["00001.jpg"], "Score": [50.0]}).to_excel(folder / spaq.METADATA, index=False)
    with pytest.raises(IqaError, match="no header row with column\\(s\\) MOS"):
        spaq.CARD.load(tmp_path)


def test_csiq_missing_sheet_lists_the_sheets(tmp_path):
    folder = fake_csiq(tmp_path)
    pd.DataFrame({"image": [1600]}).to_excel(folder / csiq.METADATA, sheet_name="Sheet1", index=False)
    with pytest.raises(IqaError, match="no sheet 'all_by_image'; sheets: Sheet1"):
        csiq.CARD.load(tmp_path)


def test_csiq_unknown_distortion_type(tmp_path):
    folder = fake_csiq(tmp_path)
    pd.DataFrame({"image": [1600], "dst_idx": [1], "dst_type": ["rain"], "dst_lev": [1], "dmos_std": [0.1],
                  "dmos": [0.2]}).to_excel(folder / csiq.METADATA, sheet_name=csiq.SHEET, index=False)
    with pytest.raises(IqaError, match="unknown dst_type 'rain'"):
        csiq.CARD.load(tmp_path)


def test_not_an_xlsx_file(tmp_path):
    folder = fake_spaq(tmp_path)
    (folder / spaq.METADATA).write_text("Image name,MOS\n")
    with pytest.raises(IqaError, match="not a readable .xlsx workbook"):
        spaq.CARD.load(tmp_path)


def test_mat_missing_variable_lists_what_is_there(tmp_path):
    folder = fake_livec(tmp_path)
    savemat(folder / livec.MOS, {"mos": np.ones((1, 17))})
    with pytest.raises(IqaError, match=r"AllMOS_release.mat: missing variable\(s\) AllMOS_release; the file holds mos"):
        livec.CARD.load(tmp_path)


def test_mat_length_mismatch(tmp_path):
    folder = fake_livec(tmp_path)
    savemat(folder / livec.MOS, {"AllMOS_release": np.ones((1, 16))})
    with pytest.raises(IqaError, match="16 scores for 17 image names"):
        livec.CARD.load(tmp_path)


def test_mat_v73_is_refused_with_the_fix(tmp_path):
    folder = fake_livec(tmp_path)
    # a v7.3 file starts with a 128-byte MATLAB header whose version field is 0x0200 (then HDF5)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    (folder / livec.NAMES).write_bytes(header + b"\x00" * 512)
    with pytest.raises(IqaError, match=r"AllImages_release.mat: MATLAB v7.3 .*save\(file, '-v7'\)"):
        livec.CARD.load(tmp_path)


def test_mat_garbage_is_refused(tmp_path):
    folder = fake_livec(tmp_path)
    (folder / livec.NAMES).write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(IqaError, match="AllImages_release.mat: not a readable .mat file"):
        livec.CARD.load(tmp_path)


def test_mat_cell_of_numbers_is_not_names(tmp_path):
    folder = fake_livec(tmp_path)
    savemat(folder / livec.NAMES, {"AllImages_release": np.arange(17.0)[:, None]})
    with pytest.raises(IqaError, match="'AllImages_release' is not a cell array of strings"):
        livec.CARD.load(tmp_path)


def test_live_missing_refnames_file(tmp_path):
    folder = fake_live(tmp_path)
    (folder / "refnames_all.mat").unlink()
    with pytest.raises(IqaError, match="refnames_all.mat: file not found"):
        live.CARD.load(tmp_path)


def test_whitespace_txt_bad_line_and_bad_number(tmp_path):
    folder = fake_tid2013(tmp_path, n_refs=2)
    txt = folder / "mos_with_names.txt"
    txt.write_text("5.1 i01_01_1.bmp\n\n4.0 i01_02_1.bmp extra\n")
    with pytest.raises(IqaError, match="mos_with_names.txt: line 3 has 3 field"):
        tid2013.CARD.load(tmp_path)
    txt.write_text("5.1 i01_01_1.bmp\nfive i01_02_1.bmp\n")
    with pytest.raises(IqaError, match="mos 'five' is not a number \\(record 2\\)"):
        tid2013.CARD.load(tmp_path)
    txt.write_text("5.1 cat.bmp\n")
    with pytest.raises(IqaError, match="'cat.bmp' is not of the form"):
        tid2013.CARD.load(tmp_path)


def test_empty_csv(tmp_path):
    (tmp_path / "x.csv").write_bytes(b"")
    with pytest.raises(IqaError, match="x.csv: empty file"):
        formats.read_csv(tmp_path / "x.csv")


# -- the real published metadata ----------------------------------------------------------------

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} not present")


@needs_shared
def test_real_koniq_metadata(tmp_path):
    (tmp_path / "koniq10k").mkdir()
    shutil.copy(SHARED_DATA / "koniq10k_distributions_sets.csv", tmp_path / "koniq10k")
    _, table = koniq10k.CARD.load(tmp_path)
    assert len(table) == 10_073
    split = make_split("koniq10k", table, koniq10k.CARD.default_split)
    assert {p: len(ids) for p, ids in split.parts.items()} == {"train": 7058, "val": 1000, "test": 2015}
    assert 0 <= table["label"].min() < 10 and 80 < table["label"].max() <= 100
    assert table["path"].str.startswith("1024x768/").all()


@needs_shared
def test_real_agiqa_metadata(tmp_path):
    (tmp_path / "AGIQA-3K").mkdir()
    shutil.copy(SHARED_DATA / "agiqa3k-data.csv", tmp_path / "AGIQA-3K" / "data.csv")
    _, table = agiqa3k.CARD.load(tmp_path)
    assert len(table) == 2982
    assert table["label"].min() == pytest.approx(0.0, abs=1e-6)
    assert table["label"].max() == pytest.approx(4.49, abs=0.01)
    split = make_split("agiqa3k", table, agiqa3k.CARD.default_split)
    assert {p: len(ids) for p, ids in split.parts.items()} == {"train": 1789, "val": 596, "test": 597}
    # seeded: the same name gives the same membership
    assert make_split("agiqa3k", table, agiqa3k.CARD.default_split).hash == split.hash


def test_empty_image_name_is_refused_with_its_row(tmp_path):
    fake_kadid(tmp_path, rows=["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,4.5,0.1", ",I01.png,4.4,0.1"])
    with pytest.raises(IqaError, match="dmos.csv: empty dist_img in data row 2"):
        kadid10k.CARD.load(tmp_path)
