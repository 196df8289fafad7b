"""A dataset card: where a dataset's files are in its official release, and what its labels mean.

Cards are data: `datasets/<name>/card.toml` (read by `DatasetCard.from_toml`), whose `[reader]`
table parameterises a generic reader (iqabench.data.readers). A plugin may also build a card in
Python, with `reader` either such a table (a dict) or a function folder -> table.
"""
from __future__ import annotations

import dataclasses
import math
import os
import posixpath
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Mapping

import pydantic

from iqabench import validation
from iqabench.data.columns import Columns
from iqabench.data.readers import ReaderSpec, parse_reader, read_table
from iqabench.data.readers.spec import stays_inside
from iqabench.errors import IqaError
from iqabench.validation import Strict

if TYPE_CHECKING:  # pandas is imported only for whoever asks for a DataFrame (data/columns.py)
    import pandas as pd

# The columns every reader returns; `ref`, `ref_path` and `official_set` may be absent.
TABLE_COLUMNS = ("id", "path", "label")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_Text = Annotated[str, pydantic.StringConstraints(min_length=1)]


class BuildTable(Strict):
    builder: str  # a builder registered under the entry-point group iqabench.builders


class CardFile(Strict):
    """A card.toml as written: structure and types. What the values mean (the name, the ranges,
    the [reader] table) is checked when the DatasetCard is made, for cards built in Python too."""

    name: str
    title: str
    url: str
    folder_names: list[_Text]
    layout: list[_Text]
    label_name: str
    score_range: list[float]
    higher_better: bool
    default_split: str
    reader: dict[str, Any]
    aliases: list[_Text] = []
    synthetic_distortions: bool = False
    notes: str = ""
    label_method: str | None = None
    target_range: list[float] | None = None
    build: BuildTable | None = None


@dataclasses.dataclass(frozen=True)
class DatasetCard:
    name: str
    title: str
    url: str  # where the dataset is published
    folder_names: tuple[str, ...]  # folder names tried under the data root
    layout: tuple[str, ...]  # files and folders the official release holds; the first is the metadata file
    label_name: str  # the column the labels come from, as published
    score_range: tuple[float, float]  # labels outside it are refused unless accepted explicitly
    higher_better: bool
    default_split: str
    reader: Any  # a ReaderSpec (from a [reader] table or a dict), or a function folder -> table
    synthetic_distortions: bool = False  # split by reference image by default
    notes: str = ""
    # the registered method whose scores are the labels (a computed label, e.g. a full-reference metric):
    # that method scoring this set scores the labels' own definition, and reports warn of it
    label_method: str | None = None
    aliases: tuple[str, ...] = ()
    target_range: tuple[float, float] | None = None  # training targets scale from it; not given: score_range
    # A builder's registered name (entry-point group `iqabench.builders`), or a function building the dataset.
    # Never an import path: a data file must not choose which code runs.
    builder: str | Callable[..., None] | None = None
    source: Path | None = dataclasses.field(default=None, compare=False)  # the card file, for messages

    def __post_init__(self) -> None:
        where = str(self.source) if self.source is not None else f"dataset card {self.name!r}"
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise IqaError(f"{where}: name {self.name!r} must be letters, digits, '.', '_' or '-'")
        for key in ("folder_names", "layout", "aliases"):
            set_(key, tuple(getattr(self, key)))
        set_("notes", self.notes.strip())
        if not self.folder_names or not self.layout:
            raise IqaError(f"{where}: folder_names and layout must not be empty")
        # A card is data: it may not send the harness to read or build outside the folders the user gave.
        for key, inside in (("folder_names", "--data-root"), ("layout", "the dataset folder")):
            for rel in getattr(self, key):
                if not stays_inside(rel):
                    raise IqaError(f"{where}: {key}: {rel!r} must stay inside {inside} (a path relative to it)")
        set_("score_range", _range(self.score_range, where, "score_range"))
        set_("target_range", _range(self.target_range, where, "target_range") if self.target_range is not None
             else self.score_range)
        if isinstance(self.reader, Mapping):
            set_("reader", parse_reader(self.reader, where, self.layout[0], self.label_name))
        elif not callable(self.reader) and not isinstance(self.reader, ReaderSpec):
            raise IqaError(f"{where}: reader must be a [reader] table or a function folder -> table")
        if self.builder is not None and not callable(self.builder) and not (
                isinstance(self.builder, str) and _NAME.fullmatch(self.builder)):
            raise IqaError(f"{where}: [build] builder must be the name of a builder registered under the entry-point "
                           f"group iqabench.builders, not an import path: {self.builder!r}")

    # -- construction from a file -------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: Path | str) -> "DatasetCard":
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise IqaError(f"{path}: dataset card not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise IqaError(f"{path}: not a valid TOML file ({exc})") from None
        spec = validation.validate(CardFile, data, str(path), validation.toml_place)
        fields = spec.model_dump(exclude={"build", "reader"})
        return cls(**fields, reader=data["reader"], builder=spec.build.builder if spec.build else None, source=path)

    # -- finding and reading ------------------------------------------------------------------------
    def locate(self, data_root: Path) -> Path | None:
        """The dataset folder under `data_root`, or None when no candidate holds the layout."""
        for folder in self.folder_names:
            candidate = Path(data_root) / folder
            if all((candidate / item).exists() for item in self.required_files()):
                return candidate
        return None

    def required_files(self) -> tuple[str, ...]:
        # The first layout entry is the metadata file; image folders may vary between releases.
        return self.layout[:1]

    def describe_missing(self, data_root: Path) -> str:
        tried = ", ".join(str(Path(data_root) / f) for f in self.folder_names)
        return (f"{self.name}: not found (looked in {tried}); expected layout: "
                f"{'; '.join(self.layout)}; published at {self.url}")

    @property
    def build(self) -> Callable[..., None] | None:
        """`build(folder, progress=True)` for datasets the project makes itself, else None.
        The builder is looked up in the registry (and its module imported) only when called."""
        if self.builder is None:
            return None
        if callable(self.builder):
            return self.builder

        def build(folder: Path, *args: Any, **kwargs: Any) -> None:
            from iqabench import registry

            try:
                builder = registry.builders.get(self.builder)
            except IqaError as exc:
                raise IqaError(f"{self.source or self.name}: [build] builder: {exc}") from None
            return builder(folder, *args, **kwargs)

        return build

    def metadata_file(self, folder: Path) -> Path:
        """The file the labels come from (named in messages about labels)."""
        spec_file = getattr(self.reader, "file", None)
        return Path(folder) / (spec_file or self.layout[0])

    def read(self, folder: Path) -> Columns:
        """The table as the reader gives it, before validation (a card's own reader may return a DataFrame)."""
        if callable(self.reader):
            table = self.reader(Path(folder))
            return table if isinstance(table, Columns) else Columns.from_frame(table)
        return read_table(self.reader, Path(folder))

    def load(self, data_root: Path, accept_out_of_range: bool = False) -> tuple[Path, pd.DataFrame]:
        """`load_columns`, with the table as a pandas DataFrame."""
        folder, table = self.load_columns(data_root, accept_out_of_range)
        return folder, table.to_frame()

    def load_columns(self, data_root: Path, accept_out_of_range: bool = False) -> tuple[Path, Columns]:
        """Find (building it when the card says how) and read the dataset, validating the table.

        Raises IqaError naming the file. Labels outside the card's `score_range` are refused unless
        `accept_out_of_range` is True (for a release whose scale differs from the published one, say);
        non-finite labels are refused always."""
        if self.build is not None and self.locate(data_root) is None:
            self.build(Path(data_root) / self.folder_names[0])
        folder = self.locate(data_root)
        if folder is None:
            raise IqaError(self.describe_missing(data_root))
        source = self.metadata_file(folder)
        try:
            table = self.read(folder)
        except IqaError:
            raise
        except (KeyError, ValueError, UnicodeDecodeError, OSError) as exc:
            raise IqaError(f"{source}: cannot read ({type(exc).__name__}: {exc})") from exc
        return folder, validate_table(table, folder, source, score_range=self.score_range,
                                      accept_out_of_range=accept_out_of_range)


def _range(value: Any, where: str, key: str) -> tuple[float, float]:
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
    if not ok or not value[0] < value[1]:
        raise IqaError(f"{where}: {key} must be [low, high] with low < high, got {value!r}")
    return float(value[0]), float(value[1])



# -- validation ---------------------------------------------------------------------------------------
def validate_table(table: Columns | pd.DataFrame, folder: Path, source: Path,
                   score_range: tuple[float, float] | None = None, accept_out_of_range: bool = False,
                   case_insensitive: bool | None = None) -> Columns | pd.DataFrame:
    """Reject what would corrupt results: missing columns, empty, NaN or infinite labels, labels
    outside `score_range` (unless `accept_out_of_range`), duplicate ids, two rows naming one image
    file, and paths that leave the dataset folder. Ids come back as text, labels as floats and paths
    normalised (`./a\\b.png` -> `a/b.png`), in the kind of table given (Columns or a DataFrame).
    `case_insensitive` says whether the folder's file system ignores case (None: probe)."""
    columns = table if isinstance(table, Columns) else Columns.from_frame(table)
    checked = _validated(columns, folder, source, score_range, accept_out_of_range, case_insensitive)
    return checked if isinstance(table, Columns) else checked.to_frame()


def _validated(table: Columns, folder: Path, source: Path, score_range, accept_out_of_range: bool,
               case_insensitive: bool | None) -> Columns:
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise IqaError(f"{source}: missing column(s) {', '.join(missing)}")
    if table.empty:
        raise IqaError(f"{source}: no rows")
    ids = [str(v) for v in table["id"]]
    labels = [label_number(v) for v in table["label"]]
    bad = [i for i, y in zip(ids, labels) if math.isnan(y)]
    if bad:
        raise IqaError(f"{source}: {len(bad)} row(s) with an empty or non-numeric label, first {bad[0]!r}")
    infinite = [(i, y) for i, y in zip(ids, labels) if math.isinf(y)]
    if infinite:
        raise IqaError(f"{source}: label {infinite[0][1]} of image {infinite[0][0]!r} is not finite "
                       f"({len(infinite)} such row(s))")
    if score_range is not None and not accept_out_of_range:
        lo, hi = score_range
        outside = [k for k, y in enumerate(labels) if y < lo or y > hi]
        if outside:
            first = outside[0]
            raise IqaError(f"{source}: label {labels[first]:g} of image {ids[first]!r} is outside "
                           f"the card's score range [{lo:g}, {hi:g}] ({len(outside)} such row(s)); "
                           "accept out-of-range labels explicitly to use them (--accept-out-of-range)")
    seen_ids: set[str] = set()
    dup = [i for i in ids if i in seen_ids or seen_ids.add(i)]
    if dup:
        raise IqaError(f"{source}: duplicate image id(s), first {dup[0]!r} ({len(dup)} in all)")
    paths = [normalise_path(p) for p in table["path"]]
    changed = {"id": ids, "label": labels, "path": paths}
    if "ref_path" in table.columns:
        changed["ref_path"] = [None if p is None else normalise_path(p) for p in table["ref_path"]]
    if case_insensitive is None:
        case_insensitive = folder_ignores_case(folder, source)
    seen: dict[str, str] = {}
    for path in paths:
        key = path.casefold() if case_insensitive else path
        if key in seen:
            raise IqaError(f"{source}: two rows name the same image file: {seen[key]!r} and {path!r}")
        seen[key] = path
    # Checked on the text of the paths (".." and absolute paths), not through symlinks: a user may
    # link an image folder to another disk, and that is their choice, not an escape.
    root = os.path.normpath(os.path.abspath(folder))
    for rel in paths:
        full = os.path.normpath(os.path.join(root, str(rel)))
        if full != root and not full.startswith(root.rstrip(os.sep) + os.sep):
            raise IqaError(f"{source}: path {rel!r} escapes the dataset folder {folder}")
    return table.replace(**changed)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)


def label_number(value: Any) -> float:
    """A label cell as a float, NaN when it is empty or not a number. Text is a decimal or
    scientific number, or inf / nan (as pandas' to_numeric reads it; not Python's `1_000`)."""
    if value is None or isinstance(value, bool):
        return math.nan
    if isinstance(value, str):
        text = value.strip()
        return float(text) if _NUMBER.fullmatch(text) else math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def normalise_path(path: Any) -> str:
    """One spelling per relative path: forward slashes, no `./`, no `a/../`."""
    text = str(path).strip().replace("\\", "/")
    return posixpath.normpath(text) if text else text


def folder_ignores_case(folder: Path, probe: Path) -> bool:
    """Whether `folder`'s file system ignores case, probed on an existing file or folder name."""
    for candidate in (Path(probe), Path(folder)):
        swapped = candidate.with_name(candidate.name.swapcase())
        if swapped.name != candidate.name and candidate.exists():
            try:
                return swapped.exists() and os.path.samefile(candidate, swapped)
            except OSError:
                return False
    return False
