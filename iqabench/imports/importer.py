"""One published file -> one run folder (see the package doc)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from iqabench import provenance, runs
from iqabench.api import stable_hash
from iqabench.data.views import load_dataset
from iqabench.errors import IqaError
from iqabench.imports import formats
from iqabench.imports.matching import label_agreement, match_ids
from iqabench.io import sha256_file
from iqabench.layout import ResultsLayout
from iqabench.score import finish
from iqabench.store import RunStore

LABEL_SOURCES = ("card", "file")
NOT_IN_FILE = "not in the imported file"
SCHEMA_VERSION = 1  # of the import's identity: a change to how files are read makes other runs


@dataclasses.dataclass(frozen=True)
class ImportConfig:
    file: Path
    dataset: str
    data_root: Path
    results: Path
    name: str | None = None  # the row's name; default: from the file's folder and name
    fmt: str = "auto"
    labels: str = "card"  # card | file
    split: str = "all"
    part: str = "test"
    seed: int = 42
    n_boot: int = 1000
    accept_out_of_range: bool = False


@dataclasses.dataclass
class ImportResult:
    run_dir: Path
    metrics: dict
    imported: dict  # what the manifest records under "imported"


def default_name(path: Path, fmt: str) -> str:
    """qbench files are `<model>/<set>.json`: the model's folder names the row; else the file stem."""
    path = Path(path)
    return f"{fmt}:{path.parent.name}" if fmt == "qbench" and path.parent.name else path.stem


def block_means(published: formats.Published, matched: dict[str, str], labels: dict[str, float]) -> dict:
    """The authors' number for a file scored in blocks of records: SRCC and raw PLCC of each block
    (its records matched to images of the part, with a score), and their means."""
    from iqabench import metrics

    per = []
    for start, end in published.blocks:
        rows = [(e.score, labels[matched[e.id]]) for e in published.entries[start:end]
                if e.id in matched and matched[e.id] in labels and e.score is not None]
        pred, y = np.array([r[0] for r in rows], dtype=float), np.array([r[1] for r in rows], dtype=float)
        defined = len(rows) >= 3 and np.ptp(pred) > 0 and np.ptp(y) > 0
        per.append({"records": [start + 1, min(end, len(published.entries))], "n": len(rows),
                    "srcc": metrics.srcc(pred, y) if defined else None,
                    "plcc_raw": metrics.plcc(pred, y) if defined else None})
    mean = {k: (sum(b[k] for b in per) / len(per) if all(b[k] is not None for b in per) else None)
            for k in ("srcc", "plcc_raw")}
    return {"rule": "mean over record blocks, as Q-Bench's eval.ipynb", "blocks": per, **mean}


def import_outputs(cfg: ImportConfig, on_log: Callable[[str], None] = print) -> ImportResult:
    if cfg.labels not in LABEL_SOURCES:
        raise IqaError(f"labels {cfg.labels!r}: expected one of {', '.join(LABEL_SOURCES)}")
    path = Path(cfg.file)
    published = formats.read(path, cfg.fmt)
    layout = ResultsLayout(cfg.results)
    view = load_dataset(cfg.dataset, cfg.data_root, cfg.split, layout, cfg.accept_out_of_range)
    card = view.card
    matched = match_ids([e.id for e in published.entries], view.columns)
    if not matched.ids:
        raise IqaError(f"{path}: none of its {len(published.entries)} image id(s) is an image of {card.name} "
                       f"(first {published.entries[0].id!r}); is it the right dataset?")
    if matched.duplicates:
        raise IqaError(f"{path}: {len(matched.duplicates)} image(s) of {card.name} appear twice "
                       f"(first {matched.duplicates[0]!r})")
    if matched.unmatched:
        on_log(f"iqabench: warning: {path}: {len(matched.unmatched)} of {len(published.entries)} id(s) are not "
               f"images of {card.name}, left out (first {matched.unmatched[0]!r}); {len(matched.ids)} matched")
    entries = {matched.ids[e.id]: e for e in published.entries if e.id in matched.ids}
    ids = view.split.ids(cfg.part)
    in_part = set(ids)
    outside = [i for i in entries if i not in in_part]
    missing = [i for i in ids if i not in entries]
    card_label = dict(zip(view.columns["id"], map(float, view.columns["label"])))

    agreement = None
    with_labels = [i for i in ids if i in entries and entries[i].label is not None]
    if published.label_field:
        agreement = label_agreement(np.array([entries[i].label for i in with_labels]),
                                    np.array([card_label[i] for i in with_labels]))
    if cfg.labels == "file":
        if not published.label_field:
            raise IqaError(f"{path}: the file carries no labels of its own; import against the card's labels")
        without = [i for i in ids if i in entries and entries[i].label is None]
        if without:
            raise IqaError(f"{path}: {len(without)} image(s) have no {published.label_field} (first {without[0]!r}); "
                           "import against the card's labels")
        # the file's scale may differ; its direction is the card's unless the two disagree in rank
        higher_better = card.higher_better if (agreement or {}).get("srcc") is None or agreement["srcc"] >= 0 \
            else not card.higher_better
        file_labels = [entries[i].label for i in with_labels]
        label_info = {"label_name": f"{published.label_field} (from the imported file)",
                      "label_range": [min(file_labels), max(file_labels)], "label_higher_better": higher_better}
    else:
        label_info = {"label_name": card.label_name, "label_range": list(card.score_range),
                      "label_higher_better": card.higher_better}

    inputs = view.inputs(ids)
    if cfg.labels == "file":  # no image of the part lacks a file label (checked above): missing ones stay the card's
        inputs = [{**r, "label": entries[r["id"]].label} if r["id"] in entries else r for r in inputs]
    sha = sha256_file(path, length=64)
    name = cfg.name or default_name(path, published.format)
    options = {"formula": published.formula, "labels": cfg.labels, "source_sha256": sha[:16]}
    identity = {"imported": {"format": published.format, "sha256": sha, "formula": published.formula,
                             "labels": cfg.labels, "schema_version": SCHEMA_VERSION,
                             **({"blocks": [list(b) for b in published.blocks]} if published.blocks else {})},
                "name": name, "dataset": card.name, "split": view.split.name, "split_hash": view.split.hash,
                "part": cfg.part}
    key = stable_hash(identity)
    imported = {"file": str(path.resolve()), "sha256": sha, "format": published.format,
                "formula": published.formula, "formula_text": published.formula_text,
                "labels": cfg.labels, "label_field": published.label_field, "label_agreement": agreement,
                "entries": len(published.entries), "matched": len(matched.ids),
                "unmatched": {"count": len(matched.unmatched), "first": matched.unmatched[:5]},
                "outside_part": len(outside), "not_in_file": len(missing)}
    if published.blocks:
        labels_now = {r["id"]: r["label"] for r in inputs}
        imported["as_published"] = block_means(published, matched.ids, labels_now)
    manifest = {
        "method": name, "method_label": name, "method_kind": "imported", "options": options,
        "fingerprint": {"method": name, "options": options},
        "dataset": card.name, "split": view.split.name, "part": cfg.part, "split_hash": view.split.hash,
        "dataset_folder": str(view.folder), "labels": True, **label_info,
        "n_images": len(ids), "limit": None, "seed": cfg.seed, "batch_size": None, "checkpoint": None,
        "method_higher_better": True, "identity": identity, "key": key, "imported": imported,
        "inputs_hash": runs.inputs_hash(inputs), "started": provenance.now(), **provenance.environment(),
    }
    run_dir = layout.run_dir(card.name, view.split.name, cfg.part, name, key)
    attempt = {"started": provenance.now(), "command": provenance.command_line(), "imported_from": str(path)}
    labels_of = {r["id"]: r["label"] for r in inputs}
    with RunStore(run_dir) as store:
        store.check_or_write_manifest(manifest, runs.IDENTITY_KEYS, attempt)
        store.check_or_write_inputs(inputs, runs.inputs_hash(inputs))
        done = store.read_records(ids)
        new = []
        for sid in ids:
            if sid in done:
                continue  # the same file imported again: nothing to add
            entry = entries.get(sid)
            record = {"id": sid, "score": None, "label": labels_of[sid], "error": None}
            if entry is None:
                record["error"] = f"imported: {NOT_IN_FILE}"
            elif entry.score is None:
                record["error"] = "imported: the file gives no numeric score for this image"
            else:
                record["score"] = entry.score
            new.append({**record, **(entry.extras if entry is not None else {})})
        store.append_many(new)
        metrics = finish(store, n_boot=cfg.n_boot, seed=cfg.seed)
    return ImportResult(run_dir, metrics, imported)
