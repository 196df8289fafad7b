"""The suite file's format: one declarative TOML file per published table (suites/*.toml, data only).

A suite file says which table of which paper it reproduces, the metrics it shows, a protocol
(split or seeded split family, part, training), its columns (datasets) and rows (methods with
options; trainable rows say where they train), and the published number of every row x column x
metric. Rows or columns the project cannot compute are `published_only`: they keep the paper's
layout and numbers. Nothing here names a method or a dataset: every name comes from the file and
is checked against the registry when the suite is loaded (iqabench.suite.load).

    kind = "paper-table"                    # marks a paper-table suite (suites/demo.toml is the demo's line-up)
    title = "..."
    metrics = ["srcc", "plcc_raw"]          # keys of a run's metrics.json
    digits = 3                              # decimals shown
    notes = "..."
    [source]   paper, table, where, url
    [protocol] split (a name, `ratio80-0-20-seed{1..10}`, or none: each dataset's default),
               part ("test"), aggregate ("median", for a seeded family), training
               ("none" | "within": train on each column's own split | "cross": rows say `train`), seed
    [[columns]] key, label, dataset, split, published_only, note
    [[rows]]    label, method, options, column_options.<column>, train = {dataset, split},
                columns (the columns it applies to), published_only, source, note,
                published.<column> = {<metric> = number},
                needs = {<option> = "what it names"}: options the user must give (-o), e.g. a
                    file that cannot ship; until given the row's cells cannot run here,
                why: for a published_only row, why no method here computes it

A training source may be a mix (`dataset = "koniq10k+spaq+kadid10k"`, iqabench.data.union), and
its split may hold `{seed}`: the seed of the split a unit tests on, so a seeded protocol trains
one model per repetition (`split = "ratio80-0-20-seed{seed}"`).
"""
from __future__ import annotations

from typing import Any, Literal

import pydantic

from iqabench.metrics import METRIC_KEYS
from iqabench.validation import Strict

KIND = "paper-table"

# -- the file's structure (validated by pydantic; cross-checks and names below) -------------------
Number = pydantic.StrictFloat  # an int is a number too; text ("0.5") is not
MetricKey = Literal[METRIC_KEYS]  # type: ignore[valid-type]  # the keys of the metric table


class Source(Strict):
    paper: str
    table: str
    where: str | None = None  # page or section
    url: str | None = None


class Protocol(Strict):
    split: str | None = None  # None: each dataset's default split
    part: Literal["train", "val", "test"] = "test"
    aggregate: Literal["median"] | None = None  # how a seeded split family becomes one number
    training: Literal["none", "within", "cross"] = "none"
    seed: int = pydantic.Field(42, ge=0)  # training seed (part of a checkpoint's identity)


class Column(Strict):
    key: str | None = None  # defaults to the dataset name
    label: str
    dataset: str | None = None
    split: str | None = None
    published_only: bool = False
    note: str | None = None


class TrainSource(Strict):
    dataset: str
    split: str | None = None  # None: the training dataset's default split


class Row(Strict):
    label: str
    method: str | None = None
    options: dict[str, Any] = {}
    column_options: dict[str, dict[str, Any]] = {}
    train: TrainSource | None = None
    columns: list[str] | None = None
    published_only: bool = False
    published: dict[str, dict[MetricKey, Number]] = {}
    source: str | None = None  # where this row's published numbers come from, when not the table itself
    note: str | None = None
    needs: dict[str, str] = {}  # option -> what the user must give with -o (e.g. a file that cannot ship)
    why: str | None = None  # a published_only row: why no method here computes it


class SuiteFile(Strict):
    kind: Literal["paper-table"]
    title: str
    source: Source
    metrics: list[MetricKey] = pydantic.Field(min_length=1)
    digits: int = pydantic.Field(3, ge=1, le=6)
    notes: str = ""
    protocol: Protocol = Protocol()
    columns: list[Column] = pydantic.Field(min_length=1)
    rows: list[Row] = pydantic.Field(min_length=1)
