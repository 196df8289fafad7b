"""Hardening, round three (issue 20): data files that would run code or read outside the folders
given, and special files among `--images`. Every refusal is one line naming the file and the problem."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from iqabench import registry
from iqabench.data.card import DatasetCard
from iqabench.errors import IqaError
from iqabench.suite import load_suite

CARD = """name = "{name}"
title = "a test card"
url = "made by the test"
folder_names = {folders}
layout = {layout}
label_name = "mos"
score_range = [0.0, 6.0]
higher_better = true
default_split = "all"
{extra}
[reader]
format = "csv"
id = "{{image}}"
images = {{ folders = ["images"] }}
{reader}
"""


def write_card(folder: Path, name: str = "probe", folders: str = '["probe"]', layout: str = '["mos.csv", "images/"]',
               extra: str = "", reader: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "card.toml"
    path.write_text(CARD.format(name=name, folders=folders, layout=layout, extra=extra, reader=reader))
    return path


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


# -- 1. code runs only where the person at the keyboard asked for it -------------------------------

@pytest.mark.parametrize("builder", ["os:system", "iqabench_probe_module:run", "subprocess:run"])
def test_a_card_naming_an_import_path_as_builder_is_refused_and_nothing_is_imported(builder, tmp_path, monkeypatch):
    (tmp_path / "iqabench_probe_module.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('imported').write_text('ran')\ndef run(*a): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = []
    monkeypatch.setattr("os.system", lambda *a: calls.append(a))
    path = write_card(tmp_path / "card", extra=f'[build]\nbuilder = "{builder}"\n')
    with pytest.raises(IqaError) as exc:
        registry.register_dataset_file(path)
    text = one_line(exc)
    assert text.startswith(f"{path}: [build] builder must be the name of a builder registered") and builder in text
    assert "iqabench.builders" in text
    assert not (tmp_path / "imported").exists() and "iqabench_probe_module" not in sys.modules and not calls


def test_the_embedded_builder_is_registered_by_entry_point_and_its_card_names_it():
    from iqabench.builders.embedded import build

    assert registry.builders.get("synthetic") is build
    assert registry.datasets.get("synthetic").builder == "synthetic"


def suite_file(tmp_path: Path, options: str, method: str = "dog-iqa", column_options: str = "",
               label: str = "Judge") -> Path:
    """A one-cell paper-table suite `s.toml` in `tmp_path` whose row runs `method` with `options`."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "s.toml"
    path.write_text(f"""kind = "paper-table"
title = "t"
source = {{ paper = "p", table = "1" }}
metrics = ["srcc"]
[[columns]]
label = "Tiny"
dataset = "tiny"
split = "all"
[[rows]]
label = "{label}"
method = "{method}"
options = {options}
{column_options}
""")
    return path


@pytest.mark.parametrize("method, options, key", [
    ("dog-iqa", '{ judge = { backend = "owl3-worker", worker_python = "/tmp/evil/python" } }', "judge.worker_python"),
    ("dog-iqa", '{ judge = { trust_remote_code = true, revision = "0123456789abcdef" } }', "judge.trust_remote_code"),
    ("mllm-prompt", '{ backend = "owl3-worker", worker_python = "/bin/sh" }', "worker_python"),
    ("mllm-prompt", '{ trust_remote_code = true, revision = "0123456789abcdef" }', "trust_remote_code"),
])
def test_a_suite_row_may_not_name_an_executable_or_turn_on_remote_code(method, options, key, tmp_path, test_plugins):
    path = suite_file(tmp_path, options, method)
    with pytest.raises(IqaError) as exc:
        load_suite(path)
    text = one_line(exc)
    assert text.startswith(f"{path}: rows[0] (Judge).options") and key in text
    assert "-o" in text and "command line" in text


def test_a_suite_row_may_pin_a_revision_without_remote_code(tmp_path, test_plugins):
    suite = load_suite(suite_file(tmp_path, '{ judge = { revision = "0123456789abcdef" } }'))
    assert suite.spec.rows[0].options["judge"]["revision"] == "0123456789abcdef"


def test_the_same_opt_in_given_with_dash_o_on_the_command_line_is_accepted(tmp_path, test_plugins):
    suite = load_suite(suite_file(tmp_path, '{ backend = "owl3-worker" }', "mllm-prompt"))
    adapted = suite.adapted(options={"worker_python": "/venv/bin/python"})
    assert adapted.spec.rows[0].options["worker_python"] == "/venv/bin/python"


# -- 2. every path a card names stays inside --data-root and the dataset folder ---------------------

def write_release(folder: Path) -> Path:
    """A two-image release with mos.csv, enough to load."""
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i in range(2):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / "images" / f"{i}.png")
    (folder / "mos.csv").write_text("image,mos\n0.png,1.0\n1.png,2.0\n")
    return folder


@pytest.mark.parametrize("key, card_args, named", [
    ("folder_names", dict(folders='["/abs/elsewhere"]'), "/abs/elsewhere"),
    ("folder_names", dict(folders='["../elsewhere"]'), "../elsewhere"),
    ("folder_names", dict(folders='["probe/../../elsewhere"]'), "probe/../../elsewhere"),
    ("layout", dict(layout='["../../mos.csv", "images/"]'), "../../mos.csv"),
    ("[reader].file", dict(reader='file = "../../x.csv"'), "../../x.csv"),
    ("[reader].file", dict(reader='file = "/etc/passwd"'), "/etc/passwd"),
])
def test_a_card_naming_a_path_outside_the_folders_given_is_refused(key, card_args, named, tmp_path):
    # the data it points at exists and is readable: only the card's refusal keeps it from being scored
    write_release(tmp_path / "elsewhere")
    path = write_card(tmp_path / "cards", **card_args)
    with pytest.raises(IqaError) as exc:
        registry.register_dataset_file(path)
    text = one_line(exc)
    assert text.startswith(f"{path}: {key}") and repr(named) in text and "must stay inside" in text


def test_a_symlinked_dataset_folder_under_the_data_root_is_still_read(tmp_path):
    release = write_release(tmp_path / "disk2" / "probe-release")
    root = tmp_path / "root"
    root.mkdir()
    (root / "probe").symlink_to(release, target_is_directory=True)
    card = DatasetCard.from_toml(write_card(tmp_path / "cards", folders='["probe"]'))
    folder, table = card.load(root)
    assert folder == root / "probe" and sorted(table["id"]) == ["0.png", "1.png"]


# -- 5. --images: only regular files are hashed or read ---------------------------------------------

PLUGIN = Path(__file__).parent / "plugins" / "slow_method.py"


def test_special_files_among_images_are_recorded_failures_and_never_opened(tmp_path):
    import json
    import os
    import subprocess

    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.new("RGB", (16, 16), (60 * i, 90, 30)).save(images / f"good{i}.png")
    os.mkfifo(images / "x.png")  # opening it for reading blocks until a writer comes: never
    (images / "zero.png").symlink_to("/dev/zero")  # read forever
    (images / "dangling.png").symlink_to(images / "gone.png")
    (images / "loop.png").symlink_to(images / "loop.png")
    results = tmp_path / "r"
    code = ("import sys; from iqabench.cli.main import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "--plugin", str(PLUGIN), "run", "--method", "slow-sharpness",
                           "--images", str(images), "--results", str(results), "--no-progress"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    (run_dir,) = [p.parent for p in results.glob("runs/*/*/*/manifest.json")]
    by_id = {r["id"]: r for r in map(json.loads, (run_dir / "predictions.jsonl").read_text().splitlines())}
    assert sorted(by_id) == ["dangling.png", "good0.png", "good1.png", "loop.png", "x.png", "zero.png"]
    assert all(by_id[f"good{i}.png"]["score"] is not None for i in range(2))
    expected = {"x.png": "not a regular file (a FIFO)", "zero.png": "not a regular file (a device)",
                "dangling.png": "dangling symbolic link", "loop.png": "symbolic link loop"}
    for name, problem in expected.items():
        assert by_id[name]["score"] is None and problem in by_id[name]["error"], by_id[name]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["n"], metrics["n_scored"], metrics["n_failed"]) == (6, 2, 4)
    inputs = {r["id"]: r for r in json.loads((run_dir / "inputs.json").read_text())["images"]}
    assert inputs["x.png"]["sha256"] is None and len(inputs["good0.png"]["sha256"]) == 16


# -- every field of a card or a suite that names a file, a folder or a program ----------------------
# test_every_card_and_suite_field_naming_a_path_is_classified walks the card, reader and suite schemas:
# a new field whose name says it names a file must be added here, with what keeps it in bounds.

CARD_PATH_FIELDS = {
    # attacked below through the card loader: a path leaving the folder given is refused
    "DatasetCard.folder_names": "attack", "DatasetCard.layout": "attack", "ReaderSpec.file": "attack",
    "ReaderSpec.variables": "attack", "FilesSpec.folders": "attack", "FilesSpec.name": "attack",
    "FilesSpec.fallback": "attack",
    "ReaderSpec.images": "a FilesSpec (its fields are walked)", "ReaderSpec.refs": "a FilesSpec (its fields are walked)",
    "DatasetCard.reader": "a ReaderSpec (its fields are walked)",
    # code: an entry-point name, never an import path (test_a_card_naming_an_import_path_as_builder_...)
    "DatasetCard.builder": "an entry point of iqabench.builders",
    # set by the loader to the card file itself, for messages; a card cannot choose it
    "DatasetCard.source": "the card file", "ReaderSpec.source": "the card file",
    "DatasetCard.label_name": "a column name", "DatasetCard.name": "the card's name: letters, digits, '.', '_', '-'",
}
SUITE_PATH_FIELDS = {
    # method options: option files are taken relative to the suite's folder and must stay inside it
    # (tests/test_hardening4.py), and options that run code are refused from a file (section 1 above)
    "Row.options": "method options", "Row.column_options": "method options",
    "Row.source": "text: where the published numbers come from", "SuiteFile.source": "a Source (walked)",
    "Source.where": "text: page or section", "Row.needs": "text: what the user must give with -o",
}
_PATH_NAME = re.compile(r"(^|_)(path|file|files|folder|folders|dir|layout|python|builder|name|names|fallback|variables|"
                        r"images|refs|reader|options|source|where|needs|program|command)$")


def _path_fields(cls) -> set[str]:
    import dataclasses

    names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else list(cls.model_fields)
    return {f"{cls.__name__}.{n}" for n in names if _PATH_NAME.search(n)}


def test_every_card_and_suite_field_naming_a_path_is_classified():
    from iqabench.data.readers.spec import FilesSpec, ReaderSpec
    from iqabench.suite import spec

    card = _path_fields(DatasetCard) | _path_fields(ReaderSpec) | _path_fields(FilesSpec)
    assert card == set(CARD_PATH_FIELDS), (sorted(card - set(CARD_PATH_FIELDS)), sorted(set(CARD_PATH_FIELDS) - card))
    models = [spec.SuiteFile, spec.Row, spec.Column, spec.Protocol, spec.TrainSource, spec.Source]
    suite = set().union(*map(_path_fields, models))
    assert suite == set(SUITE_PATH_FIELDS), (sorted(suite - set(SUITE_PATH_FIELDS)),
                                             sorted(set(SUITE_PATH_FIELDS) - suite))


CARD_ATTACKS = {  # one card per attacked field, each pointing at readable data outside the dataset folder
    "DatasetCard.folder_names": dict(folders='["../elsewhere"]'),
    "DatasetCard.layout": dict(layout='["../elsewhere/mos.csv", "images/"]'),
    "ReaderSpec.file": dict(reader='file = "../elsewhere/mos.csv"'),
    "ReaderSpec.variables": dict(images='{ folders = ["images"] }\nformat = "mat"',
                                 reader='variables = { mos = "../elsewhere/x.mat" }'),
    "FilesSpec.folders": dict(images='{ folders = ["../elsewhere/images"] }'),
    "FilesSpec.name": dict(images='{ folders = ["images"], name = "../../elsewhere/images/{image}" }'),
    "FilesSpec.fallback": dict(images='{ folders = ["images"], fallback = "../elsewhere/images/{image}" }'),
}


@pytest.mark.parametrize("field", [k for k, v in CARD_PATH_FIELDS.items() if v == "attack"])
def test_each_card_field_naming_a_path_refuses_one_outside_the_folder_given(field, tmp_path):
    attack = dict(CARD_ATTACKS[field])
    root = tmp_path / "root"
    write_release(root / "probe")
    write_release(root / "elsewhere")  # the data exists and is readable: only the refusal keeps it out
    for image in (root / "probe" / "images").iterdir():
        image.unlink()  # inside the dataset folder nothing is left to find
    images = attack.pop("images", None)
    path = write_card(tmp_path / "cards", **attack)
    text = path.read_text()
    if images is not None:
        text = text.replace('images = { folders = ["images"] }', f"images = {images}")
        if 'format = "mat"' in text:
            text = text.replace('format = "csv"\n', "")
    path.write_text(text)
    with pytest.raises(IqaError) as exc:
        DatasetCard.from_toml(path).load(root)
    message = one_line(exc)
    assert "elsewhere" in message and ("must stay inside" in message or "escapes the dataset folder" in message), message
