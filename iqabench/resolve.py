"""Turning names and `-o key=value` strings into a method, a dataset, a split and samples."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pydantic

from iqabench import registry
from iqabench.api import Method, Options, Sample, stable_hash
from iqabench.data import splits
from iqabench.data.card import DatasetCard
from iqabench.data.images import ImageDecodeError, open_rgb
from iqabench.errors import IqaError, NotAvailable

DEFAULT_DATA_ROOT = Path("data")
DEFAULT_RESULTS = Path("results")


def parse_option_pairs(pairs: list[str] | None) -> dict[str, Any]:
    """`key=value` strings -> dict; values are parsed as JSON when they can be (numbers, lists)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise IqaError(f"option {pair!r}: expected key=value")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def resolve_method(name: str, option_values: dict[str, Any]) -> tuple[type[Method], Options]:
    cls = registry.methods.get(name)
    try:
        options = cls.Options(**option_values)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '?'}: {e['msg']}" for e in exc.errors())
        raise IqaError(f"method {cls.name}: bad option(s): {problems}") from None
    return cls, options


def require_available(cls: type[Method], options: Options) -> None:
    reason = cls.check_available(options)
    if reason:
        raise NotAvailable(f"method {cls.name} cannot run here: {reason}")


def method_label(cls: type[Method], options: Options) -> str:
    """The name a table shows: the method plus the options that differ from its defaults."""
    defaults = cls.Options().model_dump(mode="json")
    changed = {k: v for k, v in options.model_dump(mode="json").items() if defaults.get(k) != v}
    if not changed:
        return cls.name
    shown = ",".join(f"{k}={_short(v)}" for k, v in sorted(changed.items()))
    return f"{cls.name}[{shown}]"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = text.rstrip("/").rsplit("/", 1)[-1] if isinstance(value, str) and "/" in value else text
    return text if len(text) <= 24 else text[:21] + "..."


@dataclasses.dataclass
class DatasetView:
    card: DatasetCard
    folder: Path
    table: pd.DataFrame
    split: splits.Split

    def loader(self) -> Callable[[str], Sample]:
        rows = self.table.set_index("id")
        has_ref = "ref" in rows.columns

        def load(sample_id: str) -> Sample:
            row = rows.loc[sample_id]
            path = self.folder / str(row["path"])
            try:
                image = open_rgb(path)
            except ImageDecodeError as exc:
                raise ImageDecodeError(f"{path}: {exc}") from None
            return Sample(id=sample_id, image=image, label=float(row["label"]),
                          ref=str(row["ref"]) if has_ref else None)

        return load

    def labels(self) -> dict[str, float]:
        return dict(zip(self.table["id"], self.table["label"].astype(float)))


def load_dataset(name: str, data_root: Path, split_name: str | None, results: Path) -> DatasetView:
    card: DatasetCard = registry.datasets.get(name)
    folder, table = card.load(Path(data_root))
    split = splits.load_or_make(card.name, table, split_name or card.default_split, Path(results) / "splits")
    return DatasetView(card, folder, table, split)


def checkpoint_dir(results: Path, dataset: str, split: splits.Split, cls: type[Method], options: Options) -> Path:
    kept = {k: v for k, v in options.model_dump(mode="json").items() if k not in getattr(cls, "schedule_options", ())}
    key = stable_hash({"method": cls.name, "options": kept, "split_hash": split.hash})
    return Path(results) / "checkpoints" / dataset / split.name / f"{slug_name(cls.name)}-{key}"


def slug_name(name: str) -> str:
    from iqabench.store import slug

    return slug(name.replace(":", "-"))
