"""A suite adapted to the data and models at hand: `--dataset-map koniq10k=synthetic` and `-o` options
applied to every row whose method takes them; the published numbers stay the paper's."""
from __future__ import annotations

from typing import Any

from iqabench.data import splits
from iqabench.errors import IqaError
from iqabench.suite.definition import Suite
from iqabench.suite.load import validate
from iqabench.suite.spec import TrainSource


def adapt(suite: Suite, dataset_map: dict[str, str], options: dict[str, Any]) -> Suite:
    from iqabench import registry

    notes = list(suite.adaptations)
    used = suite.datasets()
    mapping: dict[str, str] = {}
    for source, target in dataset_map.items():
        try:
            source_name = registry.datasets.get(source).name
            target_card = registry.datasets.get(target)
        except IqaError as exc:
            raise IqaError(f"--dataset-map {source}={target}: {exc}") from None
        if source_name not in used:
            raise IqaError(f"--dataset-map {source}={target}: suite {suite.name} does not use {source_name} "
                           f"(it uses {', '.join(used)})")
        mapping[source_name] = target_card.name
        notes.append(f"dataset {source_name} replaced by {target_card.name}: the published numbers are for "
                     f"{source_name}")

    def moved_split(split: str | None, old: str, new: str) -> str | None:
        if split is None or splits.parse_name(split).portable:
            return split
        default = registry.datasets.get(new).default_split
        notes.append(f"split {split} belongs to {old}; {new} uses its default split {default}")
        return default

    protocol_split = suite.spec.protocol.split
    columns = []
    for col in suite.columns:
        if col.published_only or col.dataset not in mapping:
            columns.append(col)
            continue
        new = mapping[col.dataset]
        split = moved_split(col.split or protocol_split, col.dataset, new)
        if split is None:
            split = registry.datasets.get(new).default_split
        columns.append(col.model_copy(update={"dataset": new, "split": split}))
    rows = []
    taken: set[str] = set()
    for row in suite.rows:
        if row.published_only:
            rows.append(row)
            continue
        update: dict[str, Any] = {}
        if row.train is not None and row.train.dataset in mapping:
            new = mapping[row.train.dataset]
            update["train"] = TrainSource(dataset=new, split=moved_split(row.train.split, row.train.dataset, new))
        fields = registry.methods.get(row.method).Options.model_fields
        mine = {k: v for k, v in options.items() if k in fields}
        if mine:  # the command line wins over the file, column options included
            update["options"] = {**row.options, **mine}
            update["column_options"] = {k: {**v, **{o: mine[o] for o in v if o in mine}}
                                        for k, v in row.column_options.items()}
            taken.update(mine)
        rows.append(row.model_copy(update=update))
    unknown = [k for k in options if k not in taken]
    if unknown:
        raise IqaError(f"-o {unknown[0]}: no computable row of suite {suite.name} has that option")
    if options:
        notes.append("options applied to every row that takes them: "
                     + ", ".join(f"{k}={v}" for k, v in options.items()))
    spec = suite.spec.model_copy(update={"columns": columns, "rows": rows})
    data = spec.model_dump(mode="python")
    # the file's own options were checked when it was loaded; what -o adds is the user's own choice
    return Suite(suite.name, suite.path, validate(data, suite.path, command_line=True), tuple(dict.fromkeys(notes)))
