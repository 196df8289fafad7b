"""What a run reads: a dataset with one split chosen, or a folder of the user's own images.

Each view gives the ids to score, a loader (id -> Sample with its decoded image) and the
`inputs` list a run records in inputs.json; neither reads more than the table until asked.
"""
from __future__ import annotations

import dataclasses
import errno
import functools
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iqabench import registry
from iqabench.api import Sample
from iqabench.data import splits
from iqabench.data.card import DatasetCard
from iqabench.data.columns import Columns, is_missing
from iqabench.data.images import ImageDecodeError, open_rgb
from iqabench.errors import IqaError
from iqabench.io import sha256_file
from iqabench.layout import ResultsLayout

# Table columns a run keeps per image so reports can break results down (synthetic-distortion sets).
BREAKDOWN_COLUMNS = ("ref", "distortion", "level")


@dataclasses.dataclass(frozen=True)
class DatasetView:
    """A dataset read from disk with one split chosen."""

    card: DatasetCard
    folder: Path
    columns: Columns  # id, path, label (+ ref, ref_path, official_set, extras)
    split: splits.Split

    @property
    def name(self) -> str:
        return self.card.name

    @functools.cached_property
    def table(self) -> Any:
        """The validated table as a pandas DataFrame (built on first use: a run reads `columns`)."""
        return self.columns.to_frame()

    def target_of(self) -> Callable[[float], float]:
        """label -> training target: oriented so higher is better, scaled to [0, 1] by the card's range."""
        lo, hi = getattr(self.card, "target_range", None) or self.card.score_range
        span = float(hi) - float(lo)
        if not span > 0:
            raise IqaError(f"dataset {self.card.name}: its label range {lo}..{hi} is empty")
        higher_better = self.card.higher_better
        return lambda y: (y - lo) / span if higher_better else (hi - y) / span

    def loader(self, with_reference: bool = False) -> Callable[[str], Sample]:
        table = self.columns
        has_ref = "ref" in table
        if with_reference and "ref_path" not in table:
            raise IqaError(f"dataset {self.card.name} has no reference images: a full-reference method needs "
                           "a dataset whose card gives them (`iqabench list datasets` marks synthetic-distortion sets)")
        target = self.target_of()

        def open_image(rel: str) -> Any:
            path = self.folder / rel
            try:
                return open_rgb(path)
            except ImageDecodeError as exc:
                raise ImageDecodeError(f"{path}: {exc}") from None

        ids = table["id"]
        path_of = dict(zip(ids, table["path"]))
        label_of = dict(zip(ids, (float(y) for y in table["label"])))
        ref_of = dict(zip(ids, table["ref"])) if has_ref else {}
        ref_path_of = dict(zip(ids, table["ref_path"])) if with_reference else {}

        def load(sample_id: str) -> Sample:
            if sample_id not in label_of:
                raise KeyError(sample_id)
            label = label_of[sample_id]
            sample = Sample(id=sample_id, image=open_image(str(path_of[sample_id])), label=label,
                            ref=str(ref_of[sample_id]) if has_ref else None, target=target(label))
            if with_reference:
                sample.reference = open_image(str(ref_path_of[sample_id]))
            return sample

        return load

    def inputs(self, ids: list[str]) -> list[dict]:
        """What a run reads for each image: its id, file (relative to the dataset folder) and label,
        plus the groups a report breaks results down by (reference, distortion type and level)."""
        table = self.columns
        row_of = {i: k for k, i in enumerate(table["id"])}
        rows = [row_of[i] for i in ids]  # an id not in the table: KeyError, as the DataFrame lookup raised
        paths, labels = table["path"], table["label"]
        out = [{"id": i, "path": str(paths[k]), "label": float(labels[k])} for i, k in zip(ids, rows)]
        for col in (c for c in BREAKDOWN_COLUMNS if c in table):
            values = table[col]
            for item, k in zip(out, rows):
                value = values[k]
                if not is_missing(value):  # this image has no such group
                    item[col] = value.item() if hasattr(value, "item") else value
        return out


# What `--images DIR` picks up (lower-cased suffixes); other files in the folder are not images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm")
IMAGES_DATASET = "images"  # the results layout's dataset slot for folders of one's own images


@dataclasses.dataclass(frozen=True)
class ImageFolderView:
    """The user's own images (`run --images DIR`, or one file): every image file below a folder,
    found recursively by suffix, ids = paths relative to it (sorted); no labels, no split. Each
    file's content hash goes into inputs.json, so a changed folder is another run. A name that is
    not a regular file (a FIFO, a device, a dangling link or a link loop) is that image's recorded
    failure: it is never opened, so it cannot block the run or be read forever.
    With references (`-r`, see `with_references`) each image has the reference paired with it by
    name, and the reference's content hash is part of that image's inputs."""

    folder: Path
    files: dict[str, str | None]  # id (relative path) -> sha256 prefix of the file; None: see `problems`
    problems: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> why it cannot be read
    given: Path | None = None  # what the user named (a folder, or one file in `folder`)
    references: ReferencePairs | None = None

    @property
    def name(self) -> str:
        return self.folder.resolve().name or "root"

    @property
    def source(self) -> Path:
        return self.given if self.given is not None else self.folder

    @property
    def ids(self) -> list[str]:
        return sorted(self.files)

    def with_references(self, ref: Path) -> ImageFolderView:
        """This view with each image paired with its reference below `ref` (or `ref` itself, a file)."""
        return dataclasses.replace(self, references=pair_references(self.ids, ref))

    def loader(self, with_reference: bool = False) -> Callable[[str], Sample]:
        refs = self.references
        if with_reference and refs is None:
            raise IqaError(f"--images {self.source}: a full-reference method needs the reference images: "
                           "pass -r REF_DIR (references paired by file name) or -r REF_FILE")

        def load(sample_id: str) -> Sample:
            sample = Sample(id=sample_id, image=_open_regular(self.folder / sample_id, self.problems.get(sample_id)))
            if with_reference:
                sample.reference = refs.open(sample_id)
            return sample

        return load

    def inputs(self, ids: list[str], with_reference: bool = False) -> list[dict]:
        """What a run reads for each image: its id, file and content hash; `label` is null. With
        references: also the reference's file (relative to -r) and its hash, so a changed reference
        is another run."""
        out = [{"id": i, "path": i, "label": None, "sha256": self.files[i]} for i in ids]
        if with_reference and self.references is not None:
            for item in out:
                item.update(self.references.describe(item["id"]))
        return out


@dataclasses.dataclass(frozen=True)
class ReferencePairs:
    """The reference of each image (`run --images ... -r REF`): below a folder, the file with the
    image's relative path and any image suffix, else the one file anywhere below it with the image's
    stem; or one file, the reference of every image. An image with none (or two candidates) is that
    image's recorded failure, with the reason."""

    root: Path  # the folder references are named relative to (the file's folder for one file)
    given: Path
    chosen: dict[str, str]  # image id -> reference (relative to root)
    missing: dict[str, str]  # image id -> why it has no reference
    hashes: dict[str, str | None]  # reference -> sha256 prefix; None: see `problems`
    problems: dict[str, str]  # reference -> why it cannot be read

    def describe(self, sample_id: str) -> dict:
        ref = self.chosen.get(sample_id)
        return {"reference": ref, "reference_sha256": self.hashes.get(ref) if ref is not None else None}

    def open(self, sample_id: str) -> Any:
        ref = self.chosen.get(sample_id)
        if ref is None:
            raise ImageDecodeError(f"{sample_id}: {self.missing[sample_id]}")
        return _open_regular(self.root / ref, self.problems.get(ref), what="reference ")


def pair_references(ids: list[str], ref: Path) -> ReferencePairs:
    ref = Path(ref).expanduser()
    _refuse_control_characters("-r", ref)
    if ref.is_file() or (os.path.lexists(ref) and not ref.is_dir()):  # a broken link: each image's failure
        name = ref.name
        chosen, missing = dict.fromkeys(ids, name), {}
        root, found = ref.parent, {name: _scan_one(ref)}
    elif ref.is_dir():
        root, found = ref, _scan(ref)
        by_path: dict[str, list[str]] = {}
        by_stem: dict[str, list[str]] = {}
        for key in found:
            by_path.setdefault(key.rsplit(".", 1)[0], []).append(key)
            by_stem.setdefault(Path(key).stem, []).append(key)
        chosen, missing = {}, {}
        for sid in ids:
            candidates = by_path.get(sid.rsplit(".", 1)[0]) or by_stem.get(Path(sid).stem) or []
            if len(candidates) == 1:
                chosen[sid] = candidates[0]
            elif candidates:
                missing[sid] = f"more than one reference named {Path(sid).stem}.* in {ref} ({', '.join(sorted(candidates))})"
            else:
                missing[sid] = f"no reference named {Path(sid).stem}.* in {ref}"
    else:
        raise IqaError(f"-r {ref}: no such file or folder")
    used = set(chosen.values())
    hashes = {k: v for k, (v, _) in found.items() if k in used}
    problems = {k: p for k, (_, p) in found.items() if k in used and p}
    return ReferencePairs(root, ref, chosen, missing, hashes, problems)


def image_folder(path: Path) -> ImageFolderView:
    """The images below a folder, or one image file (its id is its name)."""
    path = Path(path).expanduser()
    _refuse_control_characters("--images", path)
    if path.is_file() or (os.path.lexists(path) and not path.is_dir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise IqaError(f"--images {path}: not an image file name (looked for {', '.join(IMAGE_SUFFIXES)})")
        sha, problem = _scan_one(path)
        return ImageFolderView(path.parent, {path.name: sha}, {path.name: problem} if problem else {}, given=path)
    if not path.is_dir():
        raise IqaError(f"--images {path}: no such file or folder")
    found = _scan(path)
    if not found:
        raise IqaError(f"--images {path}: no image files below it (looked for {', '.join(IMAGE_SUFFIXES)})")
    return ImageFolderView(path, {k: sha for k, (sha, _) in found.items()},
                           {k: p for k, (_, p) in found.items() if p}, given=path)


def _scan(folder: Path) -> dict[str, tuple[str | None, str | None]]:
    """Every image file below `folder` (hidden ones left out): relative path -> (hash, problem)."""
    found = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                path = Path(root) / name
                found[path.relative_to(folder).as_posix()] = _scan_one(path)
    return found


def _scan_one(path: Path) -> tuple[str | None, str | None]:
    """(sha256 prefix, None) for a regular file; (None, why not) for anything else, never opened."""
    problem = _not_regular(path)
    if problem is None:
        try:
            return _sha256_regular(path), None
        except _NotRegular as exc:  # swapped for a special file since the stat
            problem = str(exc)
    return None, problem


def _open_regular(path: Path, known_problem: str | None, what: str = "") -> Any:
    problem = known_problem or _not_regular(path)  # the folder may change after the scan
    if problem:
        raise ImageDecodeError(f"{what}{path}: {problem}")
    try:
        return open_rgb(path)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{what}{path}: {exc}") from None


def _refuse_control_characters(flag: str, path: Path) -> None:
    """The folder's own name names the run (results folder, report): it may not hold control
    characters. Names of the images below it may: every file written keeps them (JSON escapes them,
    predictions.csv quotes them)."""
    bad = sorted({c for c in path.name if ord(c) < 32 or ord(c) == 127})
    if bad:
        raise IqaError(f"{flag} {str(path)!r}: its name holds control characters "
                       f"({', '.join(repr(c) for c in bad)}); rename it")


class _NotRegular(Exception):
    pass


def _not_regular(path: Path) -> str | None:
    """Why `path` is not a regular file to read (looked at with stat, never opened), or None."""
    try:
        mode = os.stat(path).st_mode  # follows links: a link to a regular file is read
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        if os.path.islink(path):
            return f"dangling symbolic link (to {os.readlink(path)})"
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a special file")
    return f"not a regular file ({kind}); not read"


def _sha256_regular(path: Path) -> str:
    """sha256_file, opened without blocking and checked to be a regular file before a byte is read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _NotRegular("not a regular file (it changed while the folder was read); not read")
    return sha256_file(fd)  # the descriptor just checked (open() takes it, and closes it)


def load_dataset(name: str, data_root: Path, split_name: str | None, layout: ResultsLayout,
                 accept_out_of_range: bool = False) -> DatasetView:
    card: DatasetCard = registry.datasets.get(name)
    if accept_out_of_range:
        folder, table = card.load_columns(Path(data_root), accept_out_of_range=True)
    else:
        folder, table = card.load_columns(Path(data_root))
    split = splits.load_or_make(card.name, table, split_name or card.default_split, layout.splits_dir())
    few = few_test_images(card, split, default=split_name is None)
    if few and (card.name, split.name) not in _WARNED:
        _WARNED.add((card.name, split.name))  # once per process: a command checks and runs a cell twice
        print(f"iqabench: warning: {few}", file=sys.stderr)
    return DatasetView(card, folder, table, split)


FEW_TEST_IMAGES = 10  # below this many test images a correlation says little
_WARNED: set[tuple[str, str]] = set()


def few_test_images(card: DatasetCard, split: splits.Split, default: bool) -> str | None:
    """A warning when the split's test part is too small for its correlations to mean anything."""
    n = len(split.parts.get("test", []))
    if not 0 < n < FEW_TEST_IMAGES:
        return None
    which = f"the card's default split {split.name}" if default else f"split {split.name}"
    return (f"{card.name}: {which} leaves only {n} test image(s) (of {sum(map(len, split.parts.values()))}); "
            f"correlations on fewer than {FEW_TEST_IMAGES} images mean little: choose a split with a larger "
            "test part (--split, e.g. ratio50-0-50-seed42), or set the card's default_split")

