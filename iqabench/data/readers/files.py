"""Finding the files a metadata table names, in the folder layout the user actually has.

Releases made on Windows list names in one case and store them in another (TID2013's `I01.BMP`
vs `i01`), some users flatten per-type sub-folders (CSIQ's `dst_imgs/awgn/`), and mirrors move
images into a sub-folder. The metadata stays the authority: ids come from it, only paths from disk.
"""
from __future__ import annotations

import os
from pathlib import Path

from iqabench.data.readers.spec import FilesSpec


class FileIndex:
    """Files under `folder/subdir` by relative path and, when recursive, by bare name; an exact
    spelling wins over one that differs only in case."""

    def __init__(self, folder: Path, subdir: str, recursive: bool):
        self.subdir = subdir
        self.recursive = recursive
        self._exact: dict[str, str] = {}
        self._folded: dict[str, str] = {}
        base = Path(folder) / subdir
        if not base.is_dir():
            return
        for rel in sorted(_walk(base, recursive)):
            full = _join(subdir, rel)
            keys = [rel, rel.rsplit("/", 1)[-1]] if recursive else [rel]
            for key in keys:
                self._exact.setdefault(key, full)
                self._folded.setdefault(key.lower(), full)

    def find(self, name: str) -> str | None:
        name = name.replace("\\", "/")
        return self._exact.get(name) or self._folded.get(name.lower())


def _walk(base: Path, recursive: bool):
    if not recursive:
        with os.scandir(base) as entries:
            yield from (e.name for e in entries if e.is_file())
        return
    for root, _dirs, files in os.walk(base):
        rel_root = os.path.relpath(root, base)
        for f in files:
            yield f if rel_root == "." else f"{Path(rel_root).as_posix()}/{f}"


def _join(subdir: str, name: str) -> str:
    return f"{subdir.rstrip('/')}/{name}" if subdir else name


def locate(folder: Path, spec: FilesSpec, names: list[str], fallbacks: list[str | None]) -> list[str]:
    """Relative paths for `names` (one per row): the first candidate folder holding the first name
    wins (else the first that exists, else the first listed), and is recorded in every path."""
    folder = Path(folder)
    if not names:
        return []
    indexes: dict[str, FileIndex] = {}

    def index(sub: str) -> FileIndex:
        if sub not in indexes:
            indexes[sub] = FileIndex(folder, sub, spec.lookup == "recursive")
        return indexes[sub]

    def find(sub: str, name: str) -> str | None:
        if spec.lookup == "exact":
            rel = _join(sub, name)
            return rel if (folder / rel).is_file() else None
        return index(sub).find(name)

    chosen = next((s for s in spec.folders if find(s, names[0]) is not None), None)
    if chosen is None:
        chosen = next((s for s in spec.folders if (folder / s).is_dir()), spec.folders[0])
    out = []
    for name, fallback in zip(names, fallbacks, strict=True):
        if spec.lookup == "exact" and fallback is None:
            out.append(_join(chosen, name))  # no stat per file: large sets stay fast
            continue
        found = find(chosen, name)
        out.append(found if found is not None else fallback if fallback is not None else _join(chosen, name))
    return out
