"""Official checkpoint folders for the model families written here (mPLUG-Owl2, mPLUG-Owl3).

A folder (or a hub snapshot of one) holds `config.json`, the weights and the tokenizer. What differs
between families is data, one `Layout` each: the files to fetch, how config.json is read and the
model built, the official key prefixes and ours, which checkpoint keys are recomputed rather than
loaded, which of our parameters may be absent, and which checkpoint parts the model never runs
(read, checked for shape and dropped). Every other key that maps to nothing, and every parameter
the checkpoint does not provide, is an error naming the layout.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iqabench import hub, io
from iqabench.errors import IqaError, NotAvailable, one_line


@dataclasses.dataclass(frozen=True)
class Layout:
    """One family's official checkpoint folder and how it lands on the family's model."""

    what: str  # how errors name the checkpoint, e.g. "owl2 weights"
    hub_files: tuple[str, ...]  # what a hub snapshot fetches (weights other than safetensors: see `pickles`)
    config: Callable[[dict[str, Any], str], Any]  # (config.json content, its path) -> the family's config
    model: Callable[[Any], Any]  # config -> the model (called on the meta device)
    prefixes: tuple[tuple[str, str], ...]  # official prefix -> model prefix; names below them are official
    derived: re.Pattern  # official keys some exports carry that the model recomputes: skipped
    optional: re.Pattern | None = None  # model keys loaded when present, computed by `fill_optional` otherwise
    fill_optional: Callable[[Any], None] | None = None
    unused: Callable[[Any], dict[str, tuple[int, ...]]] | None = None  # config -> official keys never run, shapes
    pickles: bool = False  # whether pytorch_model*.bin shards are read (tensors only) when no safetensors exist

    def to_model_key(self, key: str) -> str | None:
        for official, ours in self.prefixes:
            if key.startswith(official):
                return ours + key[len(official):]
        return None

    def to_official_key(self, key: str) -> str:
        for official, ours in self.prefixes:
            if key.startswith(ours):
                return official + key[len(ours):]
        raise KeyError(key)

    def is_optional(self, key: str) -> bool:
        return self.optional is not None and bool(self.optional.match(key))


def resolve_folder(layout: Layout, path: str, revision: str | None = None) -> Path:
    """A local folder as is; otherwise a hub snapshot (local cache only when `iqabench.hub.offline()`)."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    if local.exists() or path.startswith((".", "/", "~")):
        raise IqaError(f"{layout.what}: {path} is not a folder")
    from huggingface_hub import snapshot_download

    offline = hub.offline()
    patterns = list(layout.hub_files)
    try:
        folder = Path(snapshot_download(path, revision=revision, allow_patterns=patterns, local_files_only=offline))
        if layout.pickles and not list(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(path, revision=revision, allow_patterns=patterns + ["*.bin"],
                                            local_files_only=offline))
    except Exception as err:  # the hub raises many types (offline, missing repo, network)
        raise NotAvailable(missing_weights_message(layout.what, path, revision, offline, err)) from err
    return folder


def missing_weights_message(what: str, path: str, revision: str | None, offline: bool, err: BaseException) -> str:
    """One line that names the option to set, instead of the hub's advice to check the connection."""
    where = f"not in the Hugging Face cache and {hub.OFFLINE_NOTE}" if offline else \
        "not on disk and the Hugging Face hub cannot provide them"
    first = " ".join(str(err).split())
    cause = f"{type(err).__name__}: {first[:120]}{'...' if len(first) > 120 else ''}"
    at = f" at revision {revision}" if revision else ""
    return f"{what} {path}{at}: {where} ({cause}); {hub.download_hint(path, revision)}"


def read_config(layout: Layout, folder: Path):
    """The family's config from the folder's config.json; a missing file is one line."""
    file = folder / "config.json"
    if not file.is_file():
        raise IqaError(f"{layout.what}: {file} is missing")
    return layout.config(io.read_json(file, layout.what.replace("weights", "model config")), str(file))


def checkpoint_files(layout: Layout, folder: Path) -> list[Path]:
    safetensors = sorted(folder.glob("*.safetensors"))
    if safetensors:
        return safetensors
    bins = sorted(p for p in folder.glob("*.bin") if p.name.startswith("pytorch_model"))
    if bins and layout.pickles:
        return bins
    if bins:
        found = ", ".join(p.name for p in bins[:3])
        raise IqaError(f"{layout.what}: no *.safetensors in {folder} (found {found}: pickle files are not read)")
    raise IqaError(f"{layout.what}: no *.safetensors{' or pytorch_model*.bin' if layout.pickles else ''} in {folder}")


def read_tensors(file: Path) -> dict[str, Any]:
    from iqabench.models.safe_load import load_tensors_only, read_safetensors

    if file.suffix == ".safetensors":
        return read_safetensors(file, "pt")[0]  # a pickle renamed .safetensors is one line, never unpickled
    return load_tensors_only(file, mmap=True)


def load_weights(model, layout: Layout, folder: Path, dtype, unused: dict[str, tuple[int, ...]] | None = None) -> list[str]:
    """Copy the checkpoint in `folder` into `model` (built on the meta device), cast to `dtype`.
    `unused`: official keys the model never runs, with their shapes (checked, then dropped).
    Returns the optional model keys the checkpoint did not provide (the model computes those)."""
    expected = model.state_dict()
    unused = unused or {}
    loaded: dict[str, Any] = {}
    unmapped: list[str] = []
    for file in checkpoint_files(layout, folder):
        for key, tensor in read_tensors(file).items():
            if layout.derived.search(key):
                continue
            if key in unused:
                ours, want = None, unused[key]
            else:
                ours = layout.to_model_key(key)
                if ours is None or ours not in expected:
                    unmapped.append(key)
                    continue
                want = tuple(expected[ours].shape)
            if tuple(tensor.shape) != want:
                raise IqaError(f"{layout.what}: {key} in {file.name} has shape {tuple(tensor.shape)}, "
                               f"config.json implies {want}")
            if ours is not None:
                loaded[ours] = tensor.to(dtype)
    if unmapped:
        raise IqaError(f"{layout.what}: {len(unmapped)} checkpoint keys in {folder} map to nothing: "
                       + ", ".join(sorted(unmapped)[:8]) + (" ..." if len(unmapped) > 8 else ""))
    absent = sorted(k for k in expected if k not in loaded)
    missing = [k for k in absent if not layout.is_optional(k)]
    if missing:
        raise IqaError(f"{layout.what}: {len(missing)} parameters missing from {folder}: "
                       + ", ".join(layout.to_official_key(k) for k in missing[:8]) + (" ..." if len(missing) > 8 else ""))
    model.load_state_dict(loaded, strict=not absent, assign=True)
    return absent


def load_tokenizer(layout: Layout, folder: Path):
    """The folder's tokenizer. AutoTokenizer reads config.json and warns that it does not know the
    family's model_type, and older configs' rope_scaling: noise here."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:  # transformers raises OSError/ValueError/ImportError here
        raise IqaError(f"{layout.what}: cannot load the tokenizer in {folder}: {one_line(err, typed=True)}") from err
    finally:
        hf_logging.set_verbosity(level)


def load_model(layout: Layout, path: str, revision: str | None = None, dtype=None, device: str = "cpu"):
    """-> (model in eval mode with frozen parameters, tokenizer, resolved folder). The model is built
    on the meta device, then filled from the checkpoint (float32 unless `dtype` says otherwise)."""
    import torch

    dtype = dtype or torch.float32
    folder = resolve_folder(layout, path, revision)
    config = read_config(layout, folder)
    with torch.device("meta"):
        model = layout.model(config)
    absent = load_weights(model, layout, folder, dtype, layout.unused(config) if layout.unused else None)
    if absent and layout.fill_optional is not None:
        layout.fill_optional(model)
    model = model.to(device).eval().requires_grad_(False)
    return model, load_tokenizer(layout, folder), folder


def identity(arch: str, spec, folder: Path, dtype) -> dict[str, Any]:
    """The part of a backend's fingerprint that names the checkpoint and its precision."""
    config = (folder / "config.json").read_bytes()
    return {
        "arch": arch,
        "path": spec.path,
        "revision": spec.revision,
        "snapshot": folder.name if folder != Path(spec.path).expanduser() else None,
        "config_sha256": hashlib.sha256(config).hexdigest()[:16],
        "dtype": str(dtype).replace("torch.", ""),
        "resize": spec.resize,
    }
