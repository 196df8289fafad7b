"""Derive `weights.py`: which files each pyiqa metric reads when built with its preset.

Each metric is built by pyiqa itself, with every file request (pyiqa's hub, torch.hub, CLIP, the
Hugging Face hub) answered by an empty placeholder and recorded, and every weight load answered
by a stand-in object, so nothing is downloaded and no weight is needed. A metric that builds
with no request is weight-free. A build that stops part-way (a stand-in cannot play a real
weight everywhere) keeps the requests made until then and is marked incomplete.

The work happens in a child process with empty TORCH_HOME, HF and HOME folders, because the
stand-ins replace torch.load and Module.load_state_dict for the whole process:

    python -m iqabench.methods.pyiqa.derive --write        # regenerate methods/pyiqa/weights.py
    python -m iqabench.methods.pyiqa.derive psnr lpips     # print what two metrics need
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from iqabench.errors import one_line

# CLIP(embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size, context_length,
# vocab_size, transformer_width, transformer_heads, transformer_layers) of OpenAI's published files,
# so a derivation can go past a CLIP load with a randomly initialised model of the right shape.
_CLIP_SHAPES = {
    "RN50.pt": (1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12),
    "ViT-B-32.pt": (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),
    "ViT-B-16.pt": (512, 224, 12, 768, 16, 77, 49408, 512, 8, 12),
    "ViT-L-14.pt": (768, 224, 24, 1024, 14, 77, 49408, 768, 12, 12),
}


def derive(names: list[str], timeout: float = 3600) -> dict[str, dict]:
    """{metric: {"complete": bool, "needs": [[root, path, url], ...], "stopped": str | None}}."""
    with tempfile.TemporaryDirectory(prefix="pyiqa-derive-") as tmp:
        env = {**os.environ, "TORCH_HOME": f"{tmp}/torch", "HF_HOME": f"{tmp}/hf", "HF_HUB_CACHE": f"{tmp}/hf/hub",
               "HOME": f"{tmp}/home", "XDG_CACHE_HOME": f"{tmp}/cache", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "IQABENCH_DERIVE_ROOT": tmp}
        env.pop("HUGGINGFACE_HUB_CACHE", None)
        out = subprocess.run([sys.executable, "-m", "iqabench.methods.pyiqa.derive", "--child", *names],
                             capture_output=True, text=True, env=env, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"derivation failed: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


class _StandIn:
    """Plays any loaded weight: every attribute, item or call is itself; it holds no keys."""

    def __getattr__(self, key):
        if key.startswith("__"):
            raise AttributeError(key)
        return self

    def __getitem__(self, key):
        return self

    def __call__(self, *args, **kwargs):
        return self

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0

    def __bool__(self):
        return True

    def __contains__(self, key):
        return False

    def keys(self):
        return []

    def items(self):
        return []

    def pop(self, *args):
        return self


def _child(names: list[str]) -> dict[str, dict]:
    import scipy.io
    import torch
    from torch.nn.modules.module import _IncompatibleKeys

    from iqabench.models import pyiqa_support as ps

    placeholders = Path(os.environ["IQABENCH_DERIVE_ROOT"]) / "placeholders"
    standin = _StandIn()
    records: list = []
    last_clip: list[str] = []

    def record(fetch):
        records.append(fetch)
        if fetch.kind == "clip":
            last_clip.append(fetch.name)
        path = placeholders / fetch.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        return str(path)

    torch.nn.Module.load_state_dict = lambda self, *args, **kwargs: _IncompatibleKeys([], [])
    torch.jit.load = lambda *args, **kwargs: standin
    scipy.io.loadmat = lambda *args, **kwargs: standin
    with contextlib.suppress(ImportError):
        import safetensors.torch

        safetensors.torch.load_file = lambda *args, **kwargs: standin
    import pyiqa
    from pyiqa.utils.download_util import DEFAULT_CACHE_DIR

    _clip_stand_ins(last_clip)
    roots = {"pyiqa": Path(DEFAULT_CACHE_DIR), "torch-hub": Path(torch.hub.get_dir()), "home": Path.home()}
    for folder in roots.values():  # some metrics write caches there (LIQE's text features)
        folder.mkdir(parents=True, exist_ok=True)
    result = {}
    for name in names:
        records.clear()
        stopped = ps.refusal(name)
        if stopped is None:
            try:
                with ps._keep_transformers_intact(), ps.fetch_guard(record, load=lambda *a, **k: standin), \
                        contextlib.redirect_stdout(io.StringIO()):
                    pyiqa.create_metric(name, device="cpu")
            except Exception as exc:  # noqa: BLE001 - recorded: the table says where the build stopped
                stopped = one_line(exc, 160, typed=True)
        needs, repos = [], set()
        for fetch in records:
            need = _as_need(fetch, roots)
            if need[0] == "hf":  # transformers probes several files of a repo: its first request stands for it
                repo = need[1].rsplit("/", 1)[0]
                if repo in repos:
                    continue
                repos.add(repo)
            if need not in needs:
                needs.append(need)
        result[name] = {"complete": stopped is None, "needs": needs, "stopped": stopped}
        print(name, result[name], file=sys.stderr, flush=True)
    return result


def _clip_stand_ins(last_clip: list[str]) -> None:
    """CLIP loaders build a random model shaped like the file last requested."""
    import importlib

    for module_name in ("pyiqa.archs.clip_model", "pyiqa.archs.afineclip_model", "clip.clip"):
        try:
            module = importlib.import_module(module_name)
        except Exception:  # noqa: BLE001 - an absent optional CLIP package
            continue
        model_module = importlib.import_module("clip.model") if module_name == "clip.clip" else module
        cls = getattr(model_module, "CLIP", None) or model_module.AFINECLIP

        def build_model(state_dict, _cls=cls):
            return _cls(*_CLIP_SHAPES[last_clip[-1]]).eval()

        module.build_model = build_model


def _as_need(fetch, roots: dict[str, Path]) -> list:
    if fetch.kind == "hf":
        return ["hf", fetch.name, fetch.url]
    path = Path(fetch.folder) / fetch.name
    for root, folder in roots.items():
        if path.is_relative_to(folder):
            return [root, path.relative_to(folder).as_posix(), fetch.url]
    raise RuntimeError(f"{path}: outside the weight folders {roots}")


def write_table(result: dict[str, dict], target: Path) -> None:
    import importlib.metadata

    lines = [
        '"""Which files each pyiqa metric reads when built with its preset options. Generated by',
        "`python -m iqabench.methods.pyiqa.derive --write` (see there how); do not edit by hand.",
        "",
        "metric -> (complete, needs, stopped): `needs` lists (root, path, url) in the order pyiqa asks for",
        "them; roots are resolved by iqabench.models.pyiqa_support.locate. `complete` is False when the",
        "derivation stopped at `stopped` before the build ended: files asked for later are then unknown.",
        '"""',
        "",
        f"PYIQA_VERSION = {importlib.metadata.version('pyiqa')!r}",
        "",
        "WEIGHTS = {",
    ]
    for name, entry in result.items():
        head, tail = f"    {name!r}: ({entry['complete']!r}, (", f"), {entry['stopped']!r}),"
        if entry["needs"]:
            lines += [head, *(f"        ({r!r}, {p!r}, {u!r})," for r, p, u in entry["needs"]), "    " + tail]
        else:
            lines.append(head + tail)
    lines.append("}")
    target.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", nargs="*", help="default: every metric of the pyiqa family")
    parser.add_argument("--write", action="store_true", help="rewrite methods/pyiqa/weights.py")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.metrics)))
        return 0
    from iqabench.methods.pyiqa.family import FAMILY

    result = derive(args.metrics or FAMILY.names())
    if args.write:
        write_table(result, Path(__file__).with_name("weights.py"))
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
