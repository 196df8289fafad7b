"""Names and options -> one frozen plan, built in one place.

A plan says which method class with which validated options scores which images of which
dataset split, where its results go, and (for trainable methods) which checkpoint it uses.
Building a plan reads the dataset's metadata but never builds a model, so `run` can see what is
left to score (and recompute metrics of a finished run) before any weights are needed.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pydantic

from iqabench import registry
from iqabench.api import Method, Options, TrainableMethod, stable_hash
from iqabench.config import RunConfig, TrainConfig
from iqabench.data import splits
from iqabench.data.union import MixView, is_mix, load_training_view
from iqabench.data.views import IMAGES_DATASET, DatasetView, ImageFolderView, image_folder, load_dataset
from iqabench.errors import IqaError, NotAvailable
from iqabench.io import sha256_file
from iqabench.layout import ResultsLayout
from iqabench.runs import inputs_hash
from iqabench.validation import option_problems  # re-exported: plan.option_problems

SCHEMA_VERSION = 2


# -- methods ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MethodChoice:
    cls: type[Method]
    options: Options

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def trainable(self) -> bool:
        return issubclass(self.cls, TrainableMethod)

    def label(self) -> str:
        """The name a table shows: the method plus the options that differ from its defaults."""
        return method_label(self.cls, self.options)

    def require_available(self) -> None:
        reason = self.cls.check_available(self.options)
        if reason:
            raise NotAvailable(f"method {self.cls.name} cannot run here: {reason}")

    def build(self) -> Method:
        """The method object; what it runs on comes with `setup(ctx)` (iqabench.lifecycle)."""
        return self.cls(self.options)


def method_identity(choice: MethodChoice) -> dict:
    """The method's part of a run's identity (hashed into its key): `fingerprint` is its name and
    options (what reports and suite cells match on); when the method's `fingerprint()`, asked before
    setup, says more (e.g. the hash of a file it reads), that more is `fingerprint_more`. A method
    whose fingerprint is its name and options keys its runs exactly as before."""
    base = {"method": choice.name, "options": choice.options.model_dump(mode="json")}
    told = choice.build().fingerprint()
    more = {k: v for k, v in told.items() if k not in base or v != base[k]}
    return {"fingerprint": base, "fingerprint_more": more} if more else {"fingerprint": base}


def option_file_identity(choice: MethodChoice) -> dict:
    """The content of the files the options name, and of the files those name (a run's identity holds
    it, not only their names); {} when the options name none, so such runs keep their keys."""
    files = {**choice.cls.option_files(choice.options), **choice.cls.named_files(choice.options)}
    if not files:
        return {}
    return {"option_files": {k: sha256_file(Path(v)) if Path(v).is_file() else None for k, v in files.items()}}


def resolve_method(name: str, option_values: dict[str, Any]) -> MethodChoice:
    cls = registry.methods.get(name)
    try:
        options = cls.Options(**option_values)
    except pydantic.ValidationError as exc:
        raise IqaError(option_problems(cls, exc)) from None
    return MethodChoice(cls, options)


def method_label(cls: type[Method], options: Options) -> str:
    defaults = cls.Options().model_dump(mode="json")
    changed = {k: v for k, v in options.model_dump(mode="json").items() if defaults.get(k) != v}
    if not changed:
        return cls.name
    import json

    def short(value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        return text.rstrip("/").rsplit("/", 1)[-1] if isinstance(value, str) and "/" in value else text

    return f"{cls.name}[{','.join(f'{k}={short(v)}' for k, v in sorted(changed.items()))}]"


# -- checkpoints --------------------------------------------------------------------------------
def training_key(choice: MethodChoice, dataset: str, split: splits.Split, seed: int, limit: int | None,
                 batch_size: int | None = None, members: list[dict] | None = None) -> dict:
    """Everything that changes a fit: a checkpoint folder holds one fit of exactly this. The training
    batch is --batch-size, or (None) the method's recipe for the dataset; a trainer without a batch
    keys none. A training mix adds every member's dataset, split name and split hash (`members`)."""
    from iqabench.training import resolve_batch_size

    schedule = getattr(choice.cls, "schedule_options", ())
    options = {k: v for k, v in choice.options.model_dump(mode="json").items() if k not in schedule}
    key = {"method": choice.name, "options": options, "dataset": dataset, "split": split.name,
           "split_hash": split.hash, "seed": seed, "limit": limit, "schema_version": SCHEMA_VERSION}
    batch = resolve_batch_size(choice.cls, choice.options, dataset, batch_size)
    if batch is not None:
        key["batch_size"] = batch
    if members is not None:
        key["members"] = members
    return key


def checkpoint_dir(layout: ResultsLayout, choice: MethodChoice, dataset: str, split: splits.Split,
                   seed: int, limit: int | None, batch_size: int | None = None) -> Path:
    key = stable_hash(training_key(choice, dataset, split, seed, limit, batch_size))
    return layout.checkpoint_dir(dataset, split.name, choice.name, key)


def hash_files(folder: Path, names) -> dict[str, str] | None:
    """sha256 (first 16 hex) of each named file, or None when one is missing."""
    out = {}
    for name in names:
        path = Path(folder) / name
        if not path.is_file():
            return None
        out[name] = sha256_file(path)
    return out


# -- the plans ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CheckpointRef:
    """The weights a trainable method scores with: a folder `train` made, one the user named, or a
    published file the method's options point at (e.g. a visual prompt)."""

    kind: str  # "trained" | "given" | "external"
    path: Path
    files: dict[str, str] | None  # file -> sha256 prefix; None when missing
    trained_on: dict | None = None  # dataset, split, split_hash, seed, limit (for "trained")

    def identity(self) -> dict:
        return {"kind": self.kind, "files": self.files, "trained_on": self.trained_on}

    def describe(self) -> dict:
        return {"kind": self.kind, "dir": str(self.path), "files": self.files, "trained_on": self.trained_on}


@dataclasses.dataclass(frozen=True)
class RunPlan:
    config: RunConfig
    layout: ResultsLayout
    method: MethodChoice
    view: DatasetView | ImageFolderView
    ids: list[str]
    inputs: list[dict]
    checkpoint: CheckpointRef | None
    identity: dict
    key: str
    run_dir: Path
    split_note: str | None = None  # why the split is not the card's default (the method's recipe)

    @property
    def label(self) -> str:
        return self.method.label()

    @property
    def labelled(self) -> bool:
        """False for a folder of the user's own images: scores only, no metrics."""
        return isinstance(self.view, DatasetView)

    @property
    def dataset_name(self) -> str:
        return self.view.card.name if self.labelled else f"{IMAGES_DATASET}:{self.view.name}"

    @property
    def split_name(self) -> str:
        return self.view.split.name if self.labelled else "all"

    @property
    def part(self) -> str:
        return self.config.part if self.labelled else "all"


@dataclasses.dataclass(frozen=True)
class TrainPlan:
    config: TrainConfig
    layout: ResultsLayout
    method: MethodChoice
    view: DatasetView | MixView
    train_ids: list[str]
    val_ids: list[str]
    identity: dict
    workdir: Path
    split_note: str | None = None  # why the split is not the card's default (the method's recipe)
    # a training mix: each member's train ids and val ids (validated on, and selected by their mean)
    train_groups: dict[str, list[str]] | None = None
    val_sets: dict[str, list[str]] | None = None


def recipe_split(choice: MethodChoice, dataset: str | None, split: str | None) -> tuple[str | None, str | None]:
    """The split to load: --split when given, else the one the method's recipe names for the dataset
    (with the line that says so), else None (the card's default)."""
    if split is not None or dataset is None:
        return split, None
    card = registry.datasets.get(dataset)
    chosen = choice.cls.recipe_split(card.name)
    if chosen is None:
        return None, None
    name, source = chosen
    return name, (f"split {name} for {choice.name} on {card.name}: {source} (the method's recipe; "
                  f"--split {card.default_split} for the card's default)")


def build_train_plan(cfg: TrainConfig) -> TrainPlan:
    choice = resolve_method(cfg.method, cfg.options)
    choice.require_available()
    if not choice.trainable:
        raise IqaError(f"method {choice.name} is not trainable (kind: {choice.cls.info.kind}); "
                       f"score it with `iqabench run --method {cfg.method} --dataset {cfg.dataset}`")
    layout = ResultsLayout(cfg.results)
    # a mix loads each member's --split (or default split); one dataset may default to its recipe's
    split, note = (cfg.split, None) if is_mix(cfg.dataset) else recipe_split(choice, cfg.dataset, cfg.split)
    view = load_training_view(cfg.dataset, cfg.data_root, split, layout, cfg.accept_out_of_range)
    groups = val_sets = members = None
    if isinstance(view, MixView):  # --limit caps each member, so that every member is trained on
        groups, val_sets = view.member_ids("train", cfg.limit), view.member_ids("val", cfg.limit)
        empty = [m for m, ids in groups.items() if not ids]
        if empty:
            raise IqaError(f"{cfg.dataset}: {empty[0]} split {view.member_split(empty[0])} has no training images")
        train_ids = [i for ids in groups.values() for i in ids]
        val_ids = [i for ids in val_sets.values() for i in ids]
        members = view.describe_members()
    else:
        train_ids, val_ids = view.split.ids("train"), view.split.ids("val")
        if cfg.limit is not None:
            train_ids, val_ids = train_ids[: cfg.limit], val_ids[: cfg.limit]
    if not train_ids:
        raise IqaError(f"{cfg.dataset} split {view.split.name} has no training images")
    identity = training_key(choice, view.name, view.split, cfg.seed, cfg.limit, cfg.batch_size, members)
    workdir = layout.checkpoint_dir(view.name, view.split.name, choice.name, stable_hash(identity))
    return TrainPlan(cfg, layout, choice, view, train_ids, val_ids, identity, workdir, note, groups, val_sets)


def build_run_plan(cfg: RunConfig) -> RunPlan:
    """Everything `run` needs to know before it looks at what is left to score."""
    choice = resolve_method(cfg.method, cfg.options)
    layout = ResultsLayout(cfg.results)
    if cfg.images is not None:
        return _build_images_plan(cfg, choice, layout)
    if is_mix(cfg.dataset):
        raise IqaError(f"--dataset {cfg.dataset}: a mix of datasets is trained on, not scored; score each "
                       f"dataset with --train-dataset {cfg.dataset}")
    if must_build(cfg.dataset, cfg.data_root):
        choice.require_available()  # no run can exist yet: do not build a dataset for a method that cannot run
    split, note = recipe_split(choice, cfg.dataset, cfg.split)
    view = load_dataset(cfg.dataset, cfg.data_root, split, layout, cfg.accept_out_of_range)
    ids = view.split.ids(cfg.part)
    if cfg.limit is not None:
        ids = ids[: cfg.limit]
    if not ids:
        raise IqaError(f"{cfg.dataset} split {view.split.name} part {cfg.part!r} is empty")
    if choice.cls.info.needs_reference:
        view.loader(with_reference=True)  # refuses a dataset without references, before anything runs
    checkpoint = _checkpoint_for(cfg, choice, view, layout) if choice.trainable else None
    inputs = view.inputs(ids)
    identity = {**method_identity(choice), "dataset": view.card.name, "split": view.split.name, "split_hash": view.split.hash,
                "part": cfg.part, "limit": cfg.limit, "batch_size": cfg.batch_size,
                "checkpoint": checkpoint and checkpoint.identity(), "schema_version": SCHEMA_VERSION}
    identity.update(option_file_identity(choice))
    if choice.cls.wants_prompt_source:  # labelled prompt images come from the train part of this split
        identity["prompt_source"] = {"part": "train", "n": len(view.split.parts.get("train", []))}
    key = stable_hash(identity)
    run_dir = layout.run_dir(view.card.name, view.split.name, cfg.part, choice.name, key)
    return RunPlan(cfg, layout, choice, view, ids, inputs, checkpoint, identity, key, run_dir, note)


def _build_images_plan(cfg: RunConfig, choice: MethodChoice, layout: ResultsLayout) -> RunPlan:
    """A folder of the user's own images: scored without labels, keyed on the files' contents."""
    needs_reference = choice.cls.info.needs_reference
    if needs_reference and cfg.ref is None:
        raise IqaError(f"method {choice.name} is full-reference: it compares each image with its reference; "
                       "pass -r REF_DIR (references paired with the images by file name) or -r REF_FILE")
    view = image_folder(cfg.images)
    ids = view.ids[: cfg.limit] if cfg.limit is not None else view.ids
    if needs_reference:  # a no-reference method ignores -r: its run is the one without it
        view = view.with_references(cfg.ref)
    checkpoint = _checkpoint_for(cfg, choice, None, layout) if choice.trainable else None
    inputs = view.inputs(ids, with_reference=needs_reference)  # the references' hashes join the key
    identity = {**method_identity(choice), "images": inputs_hash(inputs), "labels": False, "limit": cfg.limit, "batch_size": cfg.batch_size,
                "checkpoint": checkpoint and checkpoint.identity(), "schema_version": SCHEMA_VERSION}
    identity.update(option_file_identity(choice))
    key = stable_hash(identity)
    run_dir = layout.run_dir(IMAGES_DATASET, view.name, "all", choice.name, key)
    return RunPlan(cfg, layout, choice, view, ids, inputs, checkpoint, identity, key, run_dir)


def must_build(dataset: str, data_root: Path) -> bool:
    """The dataset is built on first use and is not built yet under `data_root`."""
    card = registry.datasets.get(dataset)
    return card.build is not None and card.locate(Path(data_root)) is None


def _checkpoint_for(cfg: RunConfig, choice: MethodChoice, view: DatasetView | None,
                    layout: ResultsLayout) -> CheckpointRef:
    """The weights a trainable method scores with. `view` is None for a folder of images: there
    the checkpoint is the one named, or the one trained on --train-dataset."""
    external = choice.cls.external_weights(choice.options)
    if external is not None:
        path = Path(external)
        if not path.is_file():
            raise IqaError(f"{path}: weights file not found")
        return CheckpointRef("external", path, {path.name: sha256_file(path)})
    names = choice.cls.checkpoint_files()
    if cfg.checkpoint is not None:
        return CheckpointRef("given", Path(cfg.checkpoint), hash_files(Path(cfg.checkpoint), names))
    if view is None and not cfg.train_dataset:
        raise IqaError(f"method {choice.name} is trainable: to score --images give --checkpoint DIR (a folder "
                       "`iqabench train` made under <results>/checkpoints/) or --train-dataset NAME (the dataset "
                       "it was trained on)")
    if cfg.train_dataset and cfg.train_dataset != cfg.dataset:
        train_split, _ = ((cfg.train_split, None) if is_mix(cfg.train_dataset)  # as `train` on that dataset
                          else recipe_split(choice, cfg.train_dataset, cfg.train_split))
        train_view = load_training_view(cfg.train_dataset, cfg.data_root, train_split, layout,
                                        cfg.accept_out_of_range)
    elif cfg.train_split and cfg.train_split != view.split.name:
        train_view = load_dataset(cfg.dataset, cfg.data_root, cfg.train_split, layout, cfg.accept_out_of_range)
    else:
        train_view = view
    # a smoke test (--limit N) uses the checkpoint trained with the same limit, else the full one;
    # which one it used is part of the run's identity and manifest
    refs = []
    members = train_view.describe_members() if isinstance(train_view, MixView) else None
    for limit in ([cfg.limit, None] if cfg.limit is not None else [None]):
        identity = training_key(choice, train_view.name, train_view.split, cfg.seed, limit, members=members)
        folder = layout.checkpoint_dir(train_view.name, train_view.split.name, choice.name, stable_hash(identity))
        trained_on = {k: identity[k] for k in ("dataset", "split", "split_hash", "seed", "limit")}
        if members is not None:
            trained_on["members"] = members
        refs.append(CheckpointRef("trained", folder, hash_files(folder, names), trained_on))
    return next((r for r in refs if r.files is not None), refs[0])
