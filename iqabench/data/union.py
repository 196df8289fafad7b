"""A training mix: several datasets named as one, `koniq10k+spaq+kadid10k`.

One model trains on the union of each member's train part. Each member keeps its own labels and
its own targets (`DatasetView.target_of`: each card's range and orientation), and its own val
part, so a trainer validates on every member and selects on their mean criterion. A mix's split
is one split name per member, joined by `+`; one name alone stands for every member (the
normalised name collapses to it when all members use the same), none for each member's default.

Inside a mix an image id is `<member>:<id>`, so two members' ids never collide and a recorded
failure names the dataset it came from.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from iqabench.api import Sample
from iqabench.data import splits
from iqabench.data.views import DatasetView
from iqabench.errors import IqaError

SEP = "+"
ID_SEP = ":"


def is_mix(name: str | None) -> bool:
    return bool(name) and SEP in str(name)


def member_names(name: str) -> list[str]:
    """The members of a mix as written (not yet resolved); one line on an empty or repeated one."""
    parts = [p.strip() for p in str(name).split(SEP)]
    if any(not p for p in parts):
        raise IqaError(f"dataset mix {name!r}: an empty member (write dataset names joined by '+', e.g. a+b)")
    return parts


def resolve(name: str) -> list[str]:
    """The members' registered (canonical) names, in the written order; a repeat is refused."""
    from iqabench import registry

    members = [registry.datasets.get(p).name for p in member_names(name)]
    twice = next((m for i, m in enumerate(members) if m in members[:i]), None)
    if twice is not None:
        raise IqaError(f"dataset mix {name!r}: {twice} is named twice")
    return members


def canonical(name: str) -> str:
    """A dataset's registered name, or a mix's members' registered names joined by `+`."""
    from iqabench import registry

    return SEP.join(resolve(name)) if is_mix(name) else registry.datasets.get(name).name


def member_splits(name: str, split: str | None) -> list[str]:
    """One split name per member: `split` split on `+` (one per member), one name for all, or
    (None) each member's default split."""
    from iqabench import registry

    members = resolve(name)
    if split is None:
        return [registry.datasets.get(m).default_split for m in members]
    names = [s.strip() for s in str(split).split(SEP)]
    if len(names) == 1:
        return names * len(members)
    if len(names) != len(members) or any(not s for s in names):
        raise IqaError(f"dataset mix {name}: split {split!r} names {len(names)} splits for {len(members)} datasets "
                       f"(give one for all, or one per dataset joined by '+')")
    return names


def split_name(names: list[str]) -> str:
    """The mix's split name: the one name all members share, else theirs joined by `+`."""
    return names[0] if len(set(names)) == 1 else SEP.join(names)


def train_split(dataset: str, split: str | None) -> str:
    """The split a training source names, normalised: `split`, or the dataset's (or each member's)
    default. The name a checkpoint records, so that a suite cell finds the checkpoint it trained."""
    from iqabench import registry

    if is_mix(dataset):
        return split_name(member_splits(dataset, split))
    return split or registry.datasets.get(dataset).default_split


def member_of(sample_id: str) -> tuple[str, str]:
    """`koniq10k:123.jpg` -> ("koniq10k", "123.jpg")."""
    member, sep, rest = str(sample_id).partition(ID_SEP)
    if not sep:
        raise KeyError(sample_id)
    return member, rest


@dataclasses.dataclass(frozen=True)
class MixView:
    """Several datasets trained on as one: the members' views (each with its split) and the mix's
    split, whose parts are the members' parts with ids prefixed by the member's name (so its hash
    changes when any member's split does)."""

    name: str
    members: tuple[DatasetView, ...]
    split: splits.Split

    def member_ids(self, part: str, limit: int | None = None) -> dict[str, list[str]]:
        """Each member's ids of `part` (prefixed), the first `limit` of each when given."""
        out = {}
        for view in self.members:
            ids = view.split.parts.get(part, [])
            out[view.name] = [f"{view.name}{ID_SEP}{i}" for i in (ids if limit is None else ids[:limit])]
        return out

    def member_split(self, member: str) -> str:
        return next(v.split.name for v in self.members if v.name == member)

    def describe_members(self) -> list[dict]:
        """What a checkpoint's key and manifest record of every member."""
        return [{"dataset": v.name, "split": v.split.name, "split_hash": v.split.hash} for v in self.members]

    def loader(self, with_reference: bool = False) -> Callable[[str], Sample]:
        loads = {v.name: v.loader(with_reference=with_reference) for v in self.members}

        def load(sample_id: str) -> Sample:
            member, own = member_of(sample_id)
            if member not in loads:
                raise KeyError(sample_id)
            sample = loads[member](own)
            sample.id = sample_id
            if sample.ref is not None:  # two members may name references alike
                sample.ref = f"{member}{ID_SEP}{sample.ref}"
            return sample

        return load


def load_mix(name: str, data_root: Path, split: str | None, layout, accept_out_of_range: bool = False) -> MixView:
    from iqabench.data.views import load_dataset

    members = resolve(name)
    views = tuple(load_dataset(m, data_root, s, layout, accept_out_of_range)
                  for m, s in zip(members, member_splits(name, split)))
    parts: dict[str, list[str]] = {}
    for view in views:
        for part, ids in view.split.parts.items():
            parts.setdefault(part, []).extend(f"{view.name}{ID_SEP}{i}" for i in ids)
    mix = SEP.join(members)
    return MixView(mix, views, splits.Split(mix, split_name([v.split.name for v in views]), parts))


def load_training_view(name: str, data_root: Path, split: str | None, layout,
                       accept_out_of_range: bool = False) -> DatasetView | MixView:
    """What `train` reads: one dataset, or a mix of several."""
    from iqabench.data.views import load_dataset

    if is_mix(name):
        return load_mix(name, data_root, split, layout, accept_out_of_range)
    return load_dataset(name, data_root, split, layout, accept_out_of_range)
