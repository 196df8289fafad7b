"""Reading one table: the steps listed in the package docstring, row by row."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from iqabench.data.columns import Columns
from iqabench.data.formats import cell_text
from iqabench.data.readers.files import locate
from iqabench.data.readers.sources import Records, read_records
from iqabench.data.readers.spec import ReaderSpec
from iqabench.data.readers.templates import Template
from iqabench.errors import IqaError


def read_table(spec: ReaderSpec, folder: Path) -> Columns:
    """The dataset's table from the metadata in `folder`, as `spec` describes it."""
    folder = Path(folder)
    records = read_records(spec, folder)
    return _Reading(spec, folder, records).table()


class _Reading:
    def __init__(self, spec: ReaderSpec, folder: Path, records: Records):
        self.spec = spec
        self.folder = folder
        self.records = records
        self.raw = {str(c): list(records.table[c]) for c in records.table.columns}
        self.main_file = folder / spec.file

    # -- one value ------------------------------------------------------------------------------
    def value(self, i: int, fields: dict[str, str | None], template: Template, name: str, key: str | None
              ) -> str | None:
        if name in fields:
            text = fields[name]
            if text is None:
                return None
        elif name in self.raw:
            text = cell_text(self.raw[name][i])
            if not text:
                raise IqaError(f"{self.file_of(name)}: empty {name} in {self.row(i)}")
        else:
            raise IqaError(f"{self.spec.source}: [reader] template {template.text!r} names {name!r}, which is "
                           f"neither a column of {self.main_file.name} ({', '.join(self.raw)}) nor a derived field")
        vmap = self.spec.maps.get(name)
        if vmap is None:
            return text
        canonical = vmap.lookup(text)
        if canonical is None:
            raise IqaError(f"{self.file_of(name)}: unknown {name} {text!r} in {self.row(i)}; known: {vmap.known()}")
        return vmap.render(canonical, key)

    def render(self, i: int, fields: dict[str, str | None], template: Template) -> str | None:
        return template.render(lambda name, key: self.value(i, fields, template, name, key))

    def file_of(self, name: str) -> Path:
        return self.records.file_of.get(name, self.main_file)

    def row(self, i: int) -> str:
        return self.records.row_names[i]

    # -- the table ----------------------------------------------------------------------------------
    def rows(self) -> list[tuple[int, dict[str, str | None]]]:
        """Indexes of the rows kept, each with its group fields."""
        n = len(self.records.table)
        fields: list[dict[str, str | None]] = [{} for _ in range(n)]
        if self.spec.groups:
            expected = sum(c for _, c in self.spec.groups)
            if n != expected:
                groups = ", ".join(f"{g} {c}" for g, c in self.spec.groups)
                raise IqaError(f"{self.main_file}: {n} records, expected {expected} ({groups})")
            labels = [(g, k) for g, c in self.spec.groups for k in range(1, c + 1)]
            for f, (g, k) in zip(fields, labels, strict=True):
                f["group"], f["group_index"] = g, str(k)
        kept = []
        for i in range(n):
            if all(self._keeps(i, column, wanted) for column, wanted in self.spec.keep.items()) and not any(
                    pattern.fullmatch(cell_text(self._cell(i, column)))
                    for column, pattern in self.spec.exclude.items()):
                kept.append((i, fields[i]))
        return kept

    def _cell(self, i: int, column: str) -> Any:
        if column not in self.raw:
            raise IqaError(f"{self.main_file}: no column {column!r} (named by the card's keep/exclude); "
                           f"found {', '.join(self.raw)}")
        return self.raw[column][i]

    def _keeps(self, i: int, column: str, wanted: Any) -> bool:
        text = cell_text(self._cell(i, column))
        if isinstance(wanted, str):
            return text == wanted
        try:
            return float(text) == float(wanted)
        except ValueError:
            raise IqaError(f"{self.file_of(column)}: {column} {text!r} in {self.row(i)} is not a number") from None

    def table(self) -> Columns:
        spec = self.spec
        kept = self.rows()
        ids, labels, refs, sets = [], [], [], []
        extras: dict[str, list] = {name: [] for name in spec.extras}
        for i, fields in kept:
            for m in spec.match:
                self._match(i, fields, m)
            image_id = self.render(i, fields, spec.id)
            if image_id is None:
                raise IqaError(f"{self.main_file}: no image name in {self.row(i)}")
            fields["id"] = image_id
            ids.append(image_id)
            labels.append(self._label(i, image_id))
            if spec.ref is not None:
                fields["ref"] = self.render(i, fields, spec.ref)
                refs.append(fields["ref"])
            if spec.official_set is not None:
                sets.append(self.render(i, fields, spec.official_set))
            for name, template in spec.extras.items():
                extras[name].append(self.render(i, fields, template))
        out: dict[str, Any] = {"id": ids, "path": self._paths(kept, spec.images), "label": labels}
        if spec.ref is not None:
            out["ref"] = refs
        if spec.refs is not None:
            with_ref = [(i, f) for i, f in kept if f.get("ref") is not None]
            found = iter(self._paths(with_ref, spec.refs))
            out["ref_path"] = [next(found) if f.get("ref") is not None else None for _, f in kept]
        if spec.official_set is not None:
            out["official_set"] = sets
        for name, values in extras.items():
            out[name] = self._numbers(name, values, kept) if name in spec.numbers else values
        return Columns(out)

    def _match(self, i: int, fields: dict[str, str | None], m) -> None:
        text = self.render(i, fields, m.source)
        found = m.pattern.fullmatch(text) if text is not None else None
        if found is None and m.required:
            expected = f"is not of the form {m.form}" if m.form else f"does not match {m.pattern.pattern!r}"
            raise IqaError(f"{self.main_file}: {text!r} in {self.row(i)} {expected}")
        for group in m.pattern.groupindex:
            fields[group] = found[group] if found is not None else None

    def _label(self, i: int, image_id: str) -> float:
        column = self.spec.label
        if column not in self.raw:
            raise IqaError(f"{self.main_file}: no label column {column!r}; found {', '.join(self.raw)}")
        cell = self.raw[column][i]
        text = cell_text(cell)
        if not text:
            raise IqaError(f"{self.file_of(column)}: empty {column} in {self.row(i)} (image {image_id!r})")
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if np.isnan(value):
            raise IqaError(f"{self.file_of(column)}: {column} {text!r} is not a number "
                           f"({self.row(i)}, image {image_id!r})")
        return value

    def _paths(self, kept, files) -> list[str]:
        names = [self.render(i, f, files.name) for i, f in kept]
        fallbacks = [self.render(i, f, files.fallback) if files.fallback else None for i, f in kept]
        for (i, _), name in zip(kept, names, strict=True):
            if name is None:
                raise IqaError(f"{self.main_file}: no file name for {self.row(i)} ({files.name.text})")
        return locate(self.folder, files, names, fallbacks)

    def _numbers(self, name: str, values: list, kept) -> list:
        """The column as numbers of one type, as a DataFrame column holds them (and inputs.json has
        always recorded them): integers when every value is one, else floats, NaN where missing."""
        out = []
        for (i, _), v in zip(kept, values, strict=True):
            if v is None:
                out.append(np.nan)
                continue
            try:
                number = float(v)
            except ValueError:
                raise IqaError(f"{self.main_file}: {name} {v!r} in {self.row(i)} is not a number") from None
            out.append(int(number) if number.is_integer() else number)
        if any(isinstance(v, float) for v in out):
            out = [float(v) for v in out]
        return out
