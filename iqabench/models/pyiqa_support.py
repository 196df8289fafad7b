"""Building pyiqa metrics safely: weights from disk only, never unpickled, no download, stdout kept
clean, and transformers' Llama classes left intact.

While a metric is built, every place pyiqa and the libraries it calls fetch a file from (pyiqa's
own hub, torch.hub/torchvision, OpenAI CLIP, the Hugging Face hub) answers from disk only, and
`torch.load` reads tensors only (pyiqa passes `weights_only=False`). Metric options that name files
are checked before pyiqa sees them. Shared by the pyiqa methods and by the engine's builder of the
embedded dataset (FSIM labels).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import pickle
import re
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple
from urllib.parse import urlparse

from iqabench.errors import IqaError, NotAvailable, one_line

verbose = False
_guard_lock = threading.RLock()
_active = threading.local()  # set in the thread that is building a metric, inside the guard


# -- where weights live, found without importing torch or huggingface_hub ---------------------------

def torch_hub_dir() -> Path:
    """torch.hub.get_dir(), computed the way torch does when torch is not imported yet."""
    hub = sys.modules.get("torch.hub")
    if hub is not None:
        return Path(hub.get_dir())
    home = os.getenv("TORCH_HOME") or os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub"


def weights_dir() -> Path:
    """pyiqa's weight folder (fixed by pyiqa when it is imported)."""
    util = sys.modules.get("pyiqa.utils.download_util")
    return Path(util.DEFAULT_CACHE_DIR) if util is not None else torch_hub_dir() / "pyiqa"


def hf_cache_dir() -> Path:
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        return Path(constants.HF_HUB_CACHE)
    home = os.getenv("HF_HOME") or os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    hub = os.getenv("HF_HUB_CACHE") or os.getenv("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expanduser(hub))


# A needed file is (root, relative path, url). Roots: "pyiqa" (pyiqa's folder), "torch-hub"
# (torchvision's checkpoints/, CLIP's clip/), "home" (~/.cache/clip for some CLIP loaders) and
# "hf" ("<org>/<repo>/<file>" in the Hugging Face cache).
ROOTS = ("pyiqa", "torch-hub", "home", "hf")


def _root_dir(root: str) -> Path:
    return {"pyiqa": weights_dir, "torch-hub": torch_hub_dir, "home": lambda: Path(os.path.expanduser("~")),
            "hf": hf_cache_dir}[root]()


def locate(root: str, rel: str, hf_cache: Path | None = None) -> tuple[Path | None, str]:
    """(the file if it is on disk, where it belongs in words)."""
    if root == "hf":
        org, repo, file = rel.split("/", 2)
        cache = hf_cache or hf_cache_dir()
        found = sorted((cache / f"models--{org}--{repo}" / "snapshots").glob(f"*/{file}"))
        return (found[0] if found else None), f"{file} of the Hugging Face model {org}/{repo} (cache {cache})"
    path = _root_dir(root) / rel
    return (path if path.is_file() else None), f"{path.name}: put it in {path.parent}"


def missing(needs) -> str | None:
    """The first needed file that is not on disk, as the one-line reason, or None."""
    for root, rel, url in needs:
        path, where = locate(root, rel)
        if path is None:
            return f"needs weight file {where}" + (f" (published at {url})" if url else "")
    return None


# -- metric options that name files ------------------------------------------------------------------

def is_path_option(key: str) -> bool:
    """pyiqa's archs take files as `pretrained_model_path`, `pretrained_scnn_path`, `degradation_model_path`."""
    return key.endswith(("_path", "_file", "_dir")) or key in ("path", "file", "checkpoint", "ckpt", "weights")


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _looks_like_location(value: str) -> bool:
    # e.g. CLIP's `backbone`, timm's `hf-hub:`/`local-dir:` names, transformers' repo-or-folder
    return ("://" in value or bool(_SCHEME.match(value)) or value.startswith(("/", "~", "./", "../", ".\\"))
            or os.path.exists(value))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def check_metric_options(metric: str, options: dict, read_files: bool) -> None:
    """Refuse, in one line naming the file or option, any option that would make pyiqa read a file
    that is not checked. `read_files` also checks that each named file holds tensors only (or is a
    MATLAB file, which scipy reads without unpickling); without it only existence is checked."""
    for key, value in options.items():
        if is_path_option(key):
            if not isinstance(value, str) or not value:
                raise IqaError(f"pyiqa:{metric} option {key}: expected a file path, got {value!r}")
            if "://" in value:
                raise IqaError(f"pyiqa:{metric} option {key}={value}: downloads are not done; "
                               "put the file on disk and give its path")
            path = Path(value).expanduser()
            if not path.is_file():
                raise IqaError(f"{path}: file not found (pyiqa:{metric} option {key})")
            if read_files:
                check_weight_file(path)
            continue
        for text in _strings(value):
            if _looks_like_location(text):
                raise IqaError(f"pyiqa:{metric} option {key}={text!r} names a file, folder or URL; only options "
                               "ending in _path may name files (and they are checked to hold tensors only)")


def _is_matlab(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(19) == b"MATLAB 5.0 MAT-file"


def check_weight_file(path: Path) -> None:
    """A file the user names: MATLAB v5 (read by scipy) or tensors only; else one IqaError line."""
    if _is_matlab(path):
        return
    from iqabench.models.safe_load import load_tensors_only

    load_tensors_only(path)


def _check_tensors_only(path: Path) -> None:
    """A cached weight file pyiqa is about to read (cheap pre-check by suffix; torch.load is guarded too)."""
    if path.suffix.lower() in (".pth", ".pt", ".ckpt", ".bin"):
        from iqabench.models.safe_load import load_tensors_only

        try:
            load_tensors_only(path)
        except IqaError as exc:
            raise NotAvailable(str(exc)) from None


# -- the fetch guard ----------------------------------------------------------------------------------

class Fetch(NamedTuple):
    kind: str  # "pyiqa", "torch-hub", "clip" or "hf"
    folder: Path  # where the file belongs ("hf": the cache)
    name: str  # file name ("hf": "<org>/<repo>/<file>")
    url: str | None


def _local_only(fetch: Fetch) -> str:
    """Policy while building for real: the file on disk, checked, or one NotAvailable line."""
    if fetch.kind == "hf":
        path, _ = locate("hf", fetch.name, fetch.folder)
        if path is None:
            # clients try several names in turn (model.safetensors, then pytorch_model.bin): name them all
            org, repo, file = fetch.name.split("/", 2)
            tried = _active.hf_refused.setdefault(f"{org}/{repo}", [])
            tried.append(file)
            raise _hf_not_on_disk()(f"needs weight file {' or '.join(tried)} of the Hugging Face model "
                                    f"{org}/{repo} (cache {fetch.folder})")
        return str(path)
    path = fetch.folder / fetch.name
    if not path.is_file():
        raise NotAvailable(f"needs weight file {fetch.name}: put it in {fetch.folder}"
                           + (f" (published at {fetch.url})" if fetch.url else ""))
    if fetch.kind == "clip":  # OpenAI's CLIP URLs carry the file's sha256
        expected = (fetch.url or "").split("/")[-2]
        if len(expected) == 64 and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise NotAvailable(f"{path}: checksum differs from the published file; replace it ({fetch.url})")
    _check_tensors_only(path)
    return str(path)


@functools.lru_cache(maxsize=1)
def _hf_not_on_disk() -> type:
    """NotAvailable that Hugging Face clients also read as "absent in offline mode", so they go on
    to the next candidate file (e.g. pytorch_model.bin after model.safetensors) as they do offline."""
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return NotAvailable
    return type("HfFileNotOnDisk", (NotAvailable, LocalEntryNotFoundError), {})


def _refusal_in(exc: BaseException | None) -> NotAvailable | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, NotAvailable):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _fetch_points() -> list[tuple[str, str, Callable]]:
    """(module name, attribute name, wrapper factory) for each place a file may be fetched."""

    def pyiqa_fetch(original, policy):
        def load_file_from_url(url, model_dir=None, progress=True, file_name=None):
            folder = Path(model_dir) if model_dir else weights_dir()
            # named as pyiqa names it: the URL path's last part, still percent-encoded
            return policy(Fetch("pyiqa", folder, file_name or os.path.basename(urlparse(url).path), url))
        return load_file_from_url

    def hub_fetch(original, policy):
        def download_url_to_file(url, dst, hash_prefix=None, progress=True):
            # called by torch.hub (torchvision, timm's URL weights) only when dst is absent
            policy(Fetch("torch-hub", Path(dst).parent, Path(dst).name, url))
        return download_url_to_file

    def clip_fetch(original, policy):
        def _download(url, root):
            return policy(Fetch("clip", Path(root), os.path.basename(url), url))
        return _download

    def hf_fetch(original, policy):
        def hf_hub_download(repo_id, filename=None, *args, subfolder=None, **kwargs):
            name = f"{subfolder}/{filename}" if subfolder else filename
            cache = Path(kwargs["cache_dir"]) if kwargs.get("cache_dir") else hf_cache_dir()
            return policy(Fetch("hf", cache, f"{repo_id}/{name}", f"https://huggingface.co/{repo_id}"))
        return hf_hub_download

    return [("pyiqa.utils.download_util", "load_file_from_url", pyiqa_fetch),
            ("torch.hub", "download_url_to_file", hub_fetch),
            ("pyiqa.archs.clip_model", "_download", clip_fetch),
            ("pyiqa.archs.afineclip_model", "_download", clip_fetch),
            ("clip.clip", "_download", clip_fetch),
            ("huggingface_hub.file_download", "hf_hub_download", hf_fetch)]


class _SwapOnImport:
    """A meta path finder that swaps a fetch point in as soon as its module is imported, so the guard
    imports no library the metric does not (openai-clip alone costs 0.2 s on every piqe run), and a
    module the build imports is guarded from its first line on."""

    def __init__(self, pending: dict[str, tuple[str, Callable]], swap: Callable):
        self.pending = pending  # module name -> (attribute, wrapper factory)
        self.swap = swap  # (module, attribute, factory): swaps it in everywhere it is referenced

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        for finder in sys.meta_path:  # the spec the rest of the import system would find
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        attr, make = self.pending.pop(fullname)
        swap = self.swap

        class Swapping:  # the module's own loader, then the swap
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                swap(module, attr, make)

            def __getattr__(self, name):
                return getattr(loader, name)

        spec.loader = Swapping()
        return spec


def _delegating(original: Callable, guarded: Callable) -> Callable:
    """The guarded version in the building thread, the original anywhere else (a module imported
    during a build keeps this reference after the guard is lifted)."""
    @functools.wraps(original)
    def fetch(*args, **kwargs):
        if not getattr(_active, "on", False):
            return original(*args, **kwargs)
        return guarded(*args, **kwargs)
    return fetch


def _tensors_only_load(original: Callable) -> Callable:
    @functools.wraps(original)
    def load(f, *args, **kwargs):
        if not getattr(_active, "on", False):
            return original(f, *args, **kwargs)
        kwargs["weights_only"] = True
        try:
            return original(f, *args, **kwargs)
        except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError) as exc:
            raise NotAvailable(f"{getattr(f, 'name', f)}: refused, not a plain tensor file ({one_line(exc, 160)})") from None
    return load


@contextlib.contextmanager
def fetch_guard(policy: Callable[[Fetch], str] = _local_only, load: Callable | None = None):
    """While pyiqa builds a metric in this thread, answer file requests through `policy` and read
    files with `load` (default: torch.load forced to tensors only). Module references to each fetch
    function (pyiqa and timm import them by name) are swapped for the duration, then restored."""
    import torch

    with _guard_lock:
        swaps = []  # (owner, attribute, previous value)

        def swap(home, attr: str, make: Callable) -> None:
            original = getattr(home, attr, None)
            if not callable(original):
                return
            wrapper = _delegating(original, make(original, policy))
            for module in list(sys.modules.values()):
                try:  # the module's own attributes only: a lazy module's __getattr__ may import things
                    current = vars(module).get(attr)
                except TypeError:
                    continue
                if current is original or (isinstance(current, functools.partial) and current.func is original):
                    bound = wrapper if current is original else \
                        functools.partial(wrapper, *current.args, **current.keywords)
                    swaps.append((module, attr, current))
                    setattr(module, attr, bound)

        pending = {}
        for module_name, attr, make in _fetch_points():
            if module_name in sys.modules:
                swap(sys.modules[module_name], attr, make)
            else:  # not imported yet: swapped in when the build imports it
                pending[module_name] = (attr, make)
        hook = _SwapOnImport(pending, swap)
        sys.meta_path.insert(0, hook)
        swaps.append((torch, "load", torch.load))
        torch.load = load or _tensors_only_load(torch.load)
        _active.on, _active.hf_refused = True, {}
        try:
            yield
        finally:
            _active.on = False
            sys.meta_path.remove(hook)
            for owner, attr, previous in reversed(swaps):
                setattr(owner, attr, previous)


# -- transformers stays intact --------------------------------------------------------------------

# pyiqa's Q-Align and Compare2Score archs replace transformers' Llama classes for the whole process
# when imported (and pyiqa imports every arch when a name lookup misses). iqabench undoes that after
# each metric creation and refuses the metrics that depend on it; qalign-owl2 is the project's own Q-Align.
_NEEDS_GLOBAL_LLAMA_PATCH = ("qalign", "qalign_4bit", "qalign_8bit", "compare2score")
_LLAMA_MODULES = ("transformers.models.llama.configuration_llama", "transformers.models.llama.modeling_llama")


def refusal(metric: str) -> str | None:
    if metric in _NEEDS_GLOBAL_LLAMA_PATCH:
        return (f"pyiqa:{metric} works only by replacing transformers' Llama classes process-wide, "
                "which iqabench does not allow; use qalign-owl2 (same model, the project's own code)")
    return None


@contextlib.contextmanager
def _keep_transformers_intact():
    """Snapshot the Llama modules' attributes (and their classes' forwards) and restore them after.

    Only modules already imported are snapshotted: importing transformers' Llama code to protect it
    costs seconds that a classic metric (piqe) never needs. A Llama module first imported during the
    block is dropped from sys.modules after it, so whoever imports it next gets a fresh, unpatched copy."""
    loaded = [name for name in _LLAMA_MODULES if name in sys.modules]
    saved = [(m, dict(vars(m))) for m in (sys.modules[name] for name in loaded)]
    forwards = {(m, k): v.forward for m, attrs in saved for k, v in attrs.items()
                if isinstance(v, type) and "forward" in vars(v)}
    try:
        yield
    finally:
        for module, attrs in saved:
            for key, value in attrs.items():
                if getattr(module, key, None) is not value:
                    setattr(module, key, value)
        for (module, key), forward in forwards.items():
            cls = vars(module)[key]
            if vars(cls).get("forward") is not forward:
                cls.forward = forward
        for name in _LLAMA_MODULES:
            if name not in loaded and name in sys.modules:
                del sys.modules[name]
                parent, _, child = name.rpartition(".")
                if parent in sys.modules and child in vars(sys.modules[parent]):
                    delattr(sys.modules[parent], child)


# -- creation -------------------------------------------------------------------------------------------

_DEVICE_ERROR = re.compile(r"cuda|nvidia|device ordinal|no (gpu|device)|\bmps\b|torch not compiled", re.I)


def _check_device(device: str) -> None:
    kind = str(device).split(":")[0]
    if kind == "cpu":
        return
    import torch

    usable = {"cuda": torch.cuda.is_available,
              "mps": lambda: bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if kind not in usable or not usable[kind]():
        raise IqaError(f"device {device} is not available here; use --device cpu")


def create_metric(metric: str, device: str, metric_options: tuple | dict = ()):
    """pyiqa's metric, built offline. Missing weights: NotAvailable naming the file and folder;
    an unusable device or a refused option file: IqaError."""
    # a named file reaches pyiqa as the very path that was checked
    options = {k: str(Path(v).expanduser().absolute())
               if is_path_option(k) and isinstance(v, str) and v and "://" not in v else v
               for k, v in dict(metric_options).items()}
    reason = refusal(metric)
    if reason:
        raise NotAvailable(reason)
    _check_device(device)
    check_metric_options(metric, options, read_files=True)
    # the cache key names where weights are read from, and the state of the files options name
    where = tuple(str(_root_dir(r)) for r in ROOTS) + tuple(
        (v, os.stat(v).st_mtime_ns, os.stat(v).st_size) for k, v in sorted(options.items()) if is_path_option(k))
    return _create(metric, str(device), json.dumps(options, sort_keys=True), where)


@functools.lru_cache(maxsize=8)
def _create(metric: str, device: str, options_json: str, where: tuple):
    import warnings

    options = json.loads(options_json)
    # openai-clip warns about pkg_resources when imported, by pyiqa or by the guard that patches its
    # downloader: pyiqa's import and the whole creation are inside the filter
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import pyiqa

        return _create_guarded(pyiqa, metric, device, options, options_json)


def _create_guarded(pyiqa, metric: str, device: str, options: dict, options_json: str):
    # pyiqa prints loading notices on stdout (kept for results); torch.hub announces downloads
    # on stderr even when the guard then refuses them
    with _keep_transformers_intact(), _without_download_notices(), fetch_guard(), \
            contextlib.redirect_stdout(sys.stderr if verbose else io.StringIO()):
        try:
            return pyiqa.create_metric(metric, device=device, **options)
        except IqaError:
            raise
        except (OSError, RuntimeError, ValueError, ImportError, AssertionError, KeyError, TypeError) as exc:
            refused = _refusal_in(exc)
            if refused is not None:  # a library wrapped the guard's refusal in a vaguer error of its own
                raise refused from exc
            first = one_line(exc, 200)
            if device != "cpu" and _DEVICE_ERROR.search(first):
                raise IqaError(f"device {device} is not usable here ({first[:120]}); use --device cpu") from exc
            if options and isinstance(exc, (TypeError, KeyError, AssertionError)):
                raise IqaError(f"pyiqa:{metric} refused the options {options_json} "
                               f"({type(exc).__name__}: {first[:120]})") from exc
            raise NotAvailable(f"pyiqa:{metric} could not be built offline "
                               f"({type(exc).__name__}: {first[:120]})") from exc


@contextlib.contextmanager
def _without_download_notices():
    """stderr as usual, minus torch.hub's `Downloading: ...` lines (nothing is downloaded)."""
    if verbose:
        yield
        return
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    finally:
        kept = [line for line in buffer.getvalue().splitlines(keepends=True) if not line.startswith("Downloading: ")]
        sys.stderr.write("".join(kept))
