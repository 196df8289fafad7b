"""What makes two runs the same table row, and the readable, unique label of each row.

A row is a method with its full option fingerprint, the batch size it ran with, and its training
source: nothing for a zero-shot method; "own split" (shown "trained in-dataset") when a trainable
method was trained on the train part of the split it is tested on (the within-dataset protocol, one
row across datasets); "<dataset>/<split>" (shown "trained on ...") for cross-dataset training; the checkpoint folder and file hashes
for a checkpoint the user gave; the weights' hash for published weights. The training seed is
part of the identity too. A split's `-seed<N>` suffix is not: runs that differ only in the split
seed (of the test split, and of the training split with it) are repetitions of one protocol and
fold into one median row (see select.py). Dataset, split and part make the column, not the row.

Labels: the caller's display name wins (keyed by generated label, the manifest's method_label, or
the method name, most specific first); otherwise the method name. Rows that would share a label
(several runs of one method, or one display name for several rows) get the shortest set of their
differing parts appended, e.g. "vp (prompt=padding, trained on koniq10k/official)"; labels are
never truncated.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from pathlib import PurePath
from typing import Callable, Iterable

from iqabench.data.splits import parse_name
from iqabench.errors import IqaError
from iqabench.runs import Run

# the order parts are preferred in when telling labels apart (options come first, alphabetically)
_PART_ORDER = ("rescored", "train", "train seed", "checkpoint", "weights", "batch")


def protocol_of(split: str) -> tuple[str, int | None]:
    """`byref-ratio80-0-20-seed3` -> ("byref-ratio80-0-20", 3); `official` -> ("official", None)."""
    if not split:
        return split, None
    try:
        name = parse_name(split)
    except IqaError:  # a family name is no run's split; kept whole
        return split, None
    return name.protocol, name.seed


def _canon(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


@dataclasses.dataclass(frozen=True)
class Identity:
    """A table row. `parts` are (name, value) pairs: "opt:<name>" for options, else one of
    train, train seed, checkpoint, weights, batch."""

    method: str
    parts: tuple[tuple[str, str], ...]
    method_label: str = dataclasses.field(default="", compare=False)

    @property
    def key(self) -> str:
        """A short stable hash, for file names only when labels cannot serve."""
        text = json.dumps([self.method, self.parts])
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def part(self, name: str) -> str | None:
        return dict(self.parts).get(name)


def identity_of(run: Run) -> Identity:
    method = str(run.fingerprint.get("method") or run.method)
    parts = [(f"opt:{k}", _canon(v)) for k, v in sorted(run.options.items())]
    parts += _training_parts(run)
    if run.manifest["batch_size"] is not None:
        parts.append(("batch", str(run.manifest["batch_size"])))
    if run.rescored_from:  # another read of the same model outputs: its own row
        parts.append(("rescored", _rescored_text(run.rescored_from)))
    return Identity(method, tuple(parts), run.method_label)


def _rescored_text(spec: dict) -> str:
    if spec.get("levels"):
        return "levels " + ",".join(map(str, spec["levels"])) + " @ " + ",".join(f"{w:g}" for w in spec.get("weights", []))
    return "words " + ",".join(spec.get("positive", [])) + "/" + ",".join(spec.get("negative", []))


def _training_parts(run: Run) -> list[tuple[str, str]]:
    ckpt = run.checkpoint
    if not ckpt:
        return []
    kind = ckpt.get("kind")
    files = ckpt.get("files") or {}
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:8]
    if kind == "trained":
        trained = run.trained_on or {}
        protocol, train_seed = protocol_of(str(trained.get("split", "")))
        test_protocol, test_seed = protocol_of(run.split)
        own = (trained.get("dataset") == run.dataset and protocol == test_protocol and train_seed == test_seed)
        source = "own split" if own else f"{trained.get('dataset')}/{protocol}"
        if not own and trained.get("members"):  # a training mix: its name, and its split when not the default
            source = str(trained.get("dataset")) if _default_mix_split(trained) else source
        out = [("train", source)]
        if trained.get("seed") is not None:
            out.append(("train seed", str(trained["seed"])))
        return out
    if kind == "given":
        return [("checkpoint", f"{PurePath(str(ckpt.get('dir', ''))).name}#{digest}")]
    return [("weights", digest)]


def _default_mix_split(trained: dict) -> bool:
    from iqabench.data.union import train_split

    try:
        return train_split(str(trained.get("dataset")), None) == trained.get("split")
    except IqaError:  # a member no longer registered: its split is shown
        return False


def repetition_of(run: Run) -> tuple[int | None, int | None]:
    """Which repetition of a seeded protocol a run is: (test split seed, training split seed)."""
    _, test_seed = protocol_of(run.split)
    trained = run.trained_on
    train_seed = protocol_of(str(trained.get("split", "")))[1] if trained else None
    return test_seed, train_seed


# -- labels -----------------------------------------------------------------------------------------
def render_part(name: str, value: str, all_values: set[str]) -> str:
    """One part as a reader sees it."""
    if name.startswith("opt:"):
        return f"{name[4:]}={_short(value)}"
    if name == "train":
        return "trained in-dataset" if value == "own split" else f"trained on {value}"
    if name == "train seed":
        return f"train seed {value}"
    if name in ("checkpoint", "weights"):
        folder, _, digest = value.rpartition("#") if "#" in value else ("", "", value)
        clash = sum(1 for v in all_values if v.rpartition("#")[0] == folder) > 1
        if name == "weights":
            return f"weights #{digest}"
        return f"checkpoint {folder}" + (f" #{digest}" if clash or not folder else "")
    if name == "batch":
        return f"batch {value}"
    if name == "rescored":
        return f"re-scored with {value}"
    return f"{name}={value}"


def _absent(name: str) -> str:
    """A part one identity lacks and another has: a zero-shot run beside trained ones, an option an
    older version did not have."""
    if name == "train":
        return "zero-shot"
    if name == "train seed":
        return "no train seed"
    if name == "rescored":
        return "not re-scored"
    return f"{name[4:]} unset" if name.startswith("opt:") else f"no {name}"


def _short(value: str) -> str:
    """A path-like option shows its last component; JSON strings lose their quotes."""
    if value.startswith('"') and value.endswith('"'):
        value = value[1:-1]
    if "/" in value and " " not in value:
        value = value.rstrip("/").rsplit("/", 1)[-1]
    return value


def _part_rank(name: str) -> tuple[int, str]:
    if name.startswith("opt:"):
        return (0, name)
    return (1 + (_PART_ORDER.index(name) if name in _PART_ORDER else len(_PART_ORDER)), name)


def disambiguate(identities: list[Identity], base: Callable[[Identity], str]) -> dict[Identity, str]:
    """A unique label per identity: its base name, plus, for bases shared by several identities,
    the smallest set of parts (options first) that tells them apart."""
    labels: dict[Identity, str] = {}
    groups: dict[str, list[Identity]] = {}
    for ident in identities:
        groups.setdefault(base(ident), []).append(ident)
    for name, group in groups.items():
        if len(group) == 1:
            labels[group[0]] = name
            continue
        tables = [dict(i.parts) for i in group]
        names = sorted({k for t in tables for k in t}, key=_part_rank)
        varying = [k for k in names if len({t.get(k) for t in tables}) > 1]
        values = {k: {t[k] for t in tables if k in t} for k in varying}

        def rendered(t: dict, keys: tuple[str, ...], values=values) -> tuple[str, ...]:
            return tuple(render_part(k, t[k], values[k]) if k in t else _absent(k) for k in keys)

        chosen: tuple[str, ...] = tuple(varying)
        for size in range(1, len(varying) + 1):
            found = next((keys for keys in itertools.combinations(varying, size)
                          if len({rendered(t, keys) for t in tables}) == len(tables)), None)
            if found:
                chosen = found
                break
        for ident, t in zip(group, tables):
            extra = ", ".join(rendered(t, chosen))
            labels[ident] = f"{name} ({extra})" if extra else name
    # parts that render alike (or a display name equal to another's label): the key tells them apart
    seen: dict[str, list[Identity]] = {}
    for ident, label in labels.items():
        seen.setdefault(label, []).append(ident)
    for label, same in seen.items():
        if len(same) > 1:
            for ident in same:
                labels[ident] = f"{label} [{ident.key}]"
    return labels


def labels_for(identities: Iterable[Identity], display_names: dict[str, str] | None = None) -> dict[Identity, str]:
    """Readable unique labels; see the module doc for the rules."""
    identities = list(dict.fromkeys(identities))
    names = display_names or {}
    auto = disambiguate(identities, lambda i: i.method)
    if not names:
        return auto

    def base(ident: Identity) -> str:
        for key in (auto[ident], ident.method_label, ident.method):
            if key in names:
                return names[key]
        return auto[ident]  # unnamed: keeps what tells it from the other runs of its method

    return disambiguate(identities, base)
