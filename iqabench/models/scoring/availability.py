"""Whether an MLLM backend can be loaded here, checked without importing torch or building a model."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from iqabench import hub
from iqabench.models.backend import backend_module
from iqabench.models.scoring.options import BackendOptions


def backend_unavailable(options: BackendOptions) -> str | None:
    """Why the backend the options name cannot be loaded here, or None."""
    for package in ("torch", "transformers"):
        if importlib.util.find_spec(package) is None:
            return f"needs {package} (pip install 'iqabench[mllm]')"
    module = backend_module(options.backend)
    try:
        found = bool(module) and importlib.util.find_spec(module) is not None
    except (ModuleNotFoundError, ValueError):
        found = False
    if not found:
        return f"backend {options.backend!r}: module {module} is not installed"
    own_check = getattr(importlib.import_module(module), "unavailable", None)
    if callable(own_check):  # a backend that loads elsewhere (a worker process) knows best what it needs
        return own_check(options.backend_spec())
    local = Path(options.backend_path).expanduser()
    if local.is_dir():
        return None if (local / "config.json").is_file() else f"{local}: no config.json (not a model folder)"
    if options.backend_path.startswith((".", "/", "~")) or options.backend_path.count("/") != 1:
        return f"backend_path {options.backend_path}: no such folder (and not a hub id owner/name)"
    if hub.offline():
        try:
            cached = _cached_config(options.backend_path, options.revision)
        except ImportError:
            return "needs huggingface_hub to find cached weights"
        if not cached:
            return (f"weights {options.backend_path} are not in the Hugging Face cache and {hub.OFFLINE_NOTE} "
                    f"({hub.download_hint(options.backend_path, options.revision)})")
    return None


def weights_on_disk(options: BackendOptions) -> bool:
    """Whether the backend's weights are on this machine (a model folder, or the hub id's config in
    the Hugging Face cache), whatever a download could fetch; nothing is asked of the hub."""
    local = Path(options.backend_path).expanduser()
    if local.is_dir():
        return (local / "config.json").is_file()
    if options.backend_path.startswith((".", "/", "~")) or options.backend_path.count("/") != 1:
        return False
    try:
        return _cached_config(options.backend_path, options.revision)
    except ImportError:
        return False


def _cached_config(repo_id: str, revision: str | None) -> bool:
    """Whether the hub id's config.json is in the Hugging Face cache. A repo with no folder in the cache
    has nothing cached (huggingface_hub's own first test): answered from its constants alone, since the
    lookup itself imports most of huggingface_hub (a fifth of a second, on every `list methods`)."""
    from huggingface_hub import constants

    if not os.path.isdir(os.path.join(constants.HF_HUB_CACHE, "models--" + repo_id.replace("/", "--"))):
        return False
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str)
