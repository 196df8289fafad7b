"""What a run reads: a dataset with one split chosen, or a folder of the user's own images.

Each view gives the ids to score, a loader (id -> Sample with its decoded image) and the
`inputs` list a run records in inputs.json; neither reads more than the table until asked.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iqabench import registry
from iqabench.api import Sample
from iqabench.data import splits
from iqabench.data.card import DatasetCard
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
    table: Any  # pandas DataFrame: id, path, label (+ ref, ref_path, official_set, extras)
    split: splits.Split

    def target_of(self) -> Callable[[float], float]:
        """label -> training target: oriented so higher is better, scaled to [0, 1] by the card's range."""
        lo, hi = getattr(self.card, "target_range", None) or self.card.score_range
        span = float(hi) - float(lo)
        if not span > 0:
            raise IqaError(f"dataset {self.card.name}: its label range {lo}..{hi} is empty")
        higher_better = self.card.higher_better
        return lambda y: (y - lo) / span if higher_better else (hi - y) / span

    def loader(self, with_reference: bool = False) -> Callable[[str], Sample]:
        rows = self.table.set_index("id")
        has_ref = "ref" in rows.columns
        if with_reference and "ref_path" not in rows.columns:
            raise IqaError(f"dataset {self.card.name} has no reference images: a full-reference method needs "
                           "a dataset whose card gives them (`iqabench list datasets` marks synthetic-distortion sets)")
        target = self.target_of()

        def open_image(rel: str) -> Any:
            path = self.folder / rel
            try:
                return open_rgb(path)
            except ImageDecodeError as exc:
                raise ImageDecodeError(f"{path}: {exc}") from None

        # the columns read once as plain dicts: a pandas row lookup per image costs more than the engine
        path_of = dict(zip(rows.index, rows["path"].tolist()))
        label_of = dict(zip(rows.index, rows["label"].astype("float64").tolist()))
        ref_of = dict(zip(rows.index, rows["ref"].tolist())) if has_ref else {}
        ref_path_of = dict(zip(rows.index, rows["ref_path"].tolist())) if with_reference else {}

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
        rows = self.table.set_index("id").loc[list(ids)]  # one vectorised lookup, not one per id
        paths = [str(v) for v in rows["path"].tolist()]
        labels = rows["label"].astype("float64").tolist()
        out = [{"id": i, "path": p, "label": y} for i, p, y in zip(ids, paths, labels)]
        for col in (c for c in BREAKDOWN_COLUMNS if c in rows.columns):
            for item, value in zip(out, rows[col].tolist()):
                if value == value and value is not None:  # NaN: this image has no such group
                    item[col] = value.item() if hasattr(value, "item") else value
        return out


# What `--images DIR` picks up (lower-cased suffixes); other files in the folder are not images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm")
IMAGES_DATASET = "images"  # the results layout's dataset slot for folders of one's own images


@dataclasses.dataclass(frozen=True)
class ImageFolderView:
    """The user's own images (`run --images DIR`): every image file below a folder, found
    recursively by suffix, ids = paths relative to it (sorted); no labels, no split, no references.
    Each file's content hash goes into inputs.json, so a changed folder is another run. A name that
    is not a regular file (a FIFO, a device, a dangling link or a link loop) is that image's recorded
    failure: it is never opened, so it cannot block the run or be read forever."""

    folder: Path
    files: dict[str, str | None]  # id (relative path) -> sha256 prefix of the file; None: see `problems`
    problems: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> why it cannot be read

    @property
    def name(self) -> str:
        return self.folder.resolve().name or "root"

    @property
    def ids(self) -> list[str]:
        return sorted(self.files)

    def loader(self, with_reference: bool = False) -> Callable[[str], Sample]:
        if with_reference:
            raise IqaError(f"--images {self.folder}: a folder of images has no reference images, which "
                           "a full-reference method needs")

        def load(sample_id: str) -> Sample:
            path = self.folder / sample_id
            problem = self.problems.get(sample_id) or _not_regular(path)  # the folder may change after the scan
            if problem:
                raise ImageDecodeError(f"{path}: {problem}")
            try:
                image = open_rgb(path)
            except ImageDecodeError as exc:
                raise ImageDecodeError(f"{path}: {exc}") from None
            return Sample(id=sample_id, image=image)

        return load

    def inputs(self, ids: list[str]) -> list[dict]:
        """What a run reads for each image: its id, file and content hash; `label` is null."""
        return [{"id": i, "path": i, "label": None, "sha256": self.files[i]} for i in ids]


def image_folder(folder: Path) -> ImageFolderView:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise IqaError(f"--images {folder}: {'not a folder' if folder.exists() else 'no such folder'}")
    files: dict[str, str | None] = {}
    problems: dict[str, str] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                path = Path(root) / name
                key = path.relative_to(folder).as_posix()
                problem = _not_regular(path)
                if problem is None:
                    try:
                        files[key] = _sha256_regular(path)
                        continue
                    except _NotRegular as exc:  # swapped for a special file since the stat
                        problem = str(exc)
                files[key], problems[key] = None, problem
    if not files:
        raise IqaError(f"--images {folder}: no image files below it (looked for {', '.join(IMAGE_SUFFIXES)})")
    return ImageFolderView(folder, files, problems)


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
        folder, table = card.load(Path(data_root), accept_out_of_range=True)
    else:
        folder, table = card.load(Path(data_root))
    split = splits.load_or_make(card.name, table, split_name or card.default_split, layout.splits_dir())
    return DatasetView(card, folder, table, split)

