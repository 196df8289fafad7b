"""What the engine runs from a suite: its cells (row x column), each one run (`Unit`) or one per
split of a seeded family, with the method's full option fingerprint as runs record it."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from iqabench.data import splits
from iqabench.data.union import member_names
from iqabench.errors import IqaError
from iqabench.suite.spec import Column, Row, SuiteFile, TrainSource


@dataclasses.dataclass(frozen=True)
class Unit:
    """One run: a dataset split part, and (for a trained method) where its checkpoint is trained."""

    dataset: str
    split: str
    part: str
    train_dataset: str | None = None
    train_split: str | None = None

    def describe(self) -> str:
        text = f"{self.dataset}/{self.split}/{self.part}"
        return text + (f" (trained on {self.train_dataset}/{self.train_split})" if self.train_dataset else "")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One row x column the harness can compute: one unit, or one per split of a seeded family."""

    row: Row
    column: Column
    method: str  # the registered (canonical) name
    options: dict[str, Any]  # as the suite gives them (merged row, column and command-line options)
    fingerprint_options: dict[str, Any]  # every option with its default filled in, as runs record it
    units: tuple[Unit, ...]
    aggregate: str | None
    seed: int
    needs_training: bool

    @property
    def name(self) -> str:
        return f"{self.row.label} x {self.column.label}"


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    spec: SuiteFile  # names resolved: canonical dataset and method names, column keys filled in
    adaptations: tuple[str, ...] = ()  # what --dataset-map / -o changed, shown above the table

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def columns(self) -> list[Column]:
        return self.spec.columns

    @property
    def rows(self) -> list[Row]:
        return self.spec.rows

    @property
    def metrics(self) -> list[str]:
        return list(self.spec.metrics)

    def cells(self) -> list[Cell]:
        """One cell per computable row x column, rows first, in the file's order."""
        return [self._cell(row, col) for row in self.rows if not row.published_only
                for col in self.columns if applies(row, col)]

    def _cell(self, row: Row, col: Column) -> Cell:
        from iqabench import registry
        from iqabench.plan import resolve_method

        protocol = self.spec.protocol
        options = {**row.options, **row.column_options.get(col.key, {})}
        choice = resolve_method(row.method, options)
        split = col.split or protocol.split or registry.datasets.get(col.dataset).default_split
        trained = needs_training(choice)
        units = []
        for name in splits.parse_name(split).members():
            if row.train is not None and trained:
                train = (row.train.dataset, _train_split(row.train, name))
            elif trained:
                train = (col.dataset, name)  # within: the train part of the split it is tested on
            else:
                train = (None, None)
            units.append(Unit(col.dataset, name, protocol.part, *train))
        return Cell(row, col, choice.name, options, choice.options.model_dump(mode="json"), tuple(units),
                    protocol.aggregate, protocol.seed, trained)

    def datasets(self) -> list[str]:
        """Every dataset a computable cell reads (test columns and training sources)."""
        names = [c.dataset for c in self.columns if not c.published_only]
        names += [m for r in self.rows if r.train is not None and not r.published_only
                  for m in member_names(r.train.dataset)]
        return list(dict.fromkeys(names))

    def adapted(self, dataset_map: dict[str, str] | None = None, options: dict[str, Any] | None = None) -> "Suite":
        """The same suite on other datasets (`koniq10k=synthetic`) and/or with options applied to every
        row whose method takes them (`backend_path=<tiny model>`); published numbers stay the paper's."""
        from iqabench.suite.adapt import adapt

        return adapt(self, dataset_map or {}, options or {})


def applies(row: Row, col: Column) -> bool:
    return not col.published_only and (row.columns is None or col.key in row.columns)


def needs_training(choice) -> bool:
    """A trainable method without published weights named in its options is trained here."""
    return choice.trainable and choice.cls.external_weights(choice.options) is None


def _train_split(train: TrainSource, tested: str) -> str:
    """The split a row trains on for a unit testing `tested`: `{seed}` becomes that split's seed;
    unset, the training dataset's (or each member's) default. Normalised as checkpoints record it."""
    from iqabench.data.union import train_split

    split = train.split
    if split is not None and "{seed}" in split:
        seed = splits.parse_name(tested).seed
        if seed is None:
            raise IqaError(f"train.split {split!r}: the tested split {tested!r} has no seed to put in {{seed}}")
        split = split.replace("{seed}", str(seed))
    return train_split(train.dataset, split)
