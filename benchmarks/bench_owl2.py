"""Our mPLUG-Owl2 vs pyiqa's (pyiqa/archs/q_align) at one mid-size random configuration, CPU.

Measures, for each implementation, each in its own fresh process (so peak RSS is per task):
- forward: last-position logits for a batch of images, no grad;
- prompt step: the visual-prompt training step, forward + backward to a pixel tensor.
Time is the best of `--repeats` runs after one warm-up; memory is the kernel's peak-RSS mark
(VmHWM, reset once the model is loaded) minus the RSS just before the task, i.e. what the task
itself needs, plus that absolute peak.

usage: python benchmarks/bench_owl2.py [--threads 1] [--batch 2] [--repeats 3] [--image-size 448]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_WORKER = ROOT / "tests" / "owl2_reference_worker.py"
QUESTION = "Rate the technical quality of the image."


def mid_size(image_size: int) -> dict:
    """A few layers at reduced width; real patch grid, query count and vocabulary."""
    return {"image_size": image_size, "patch_size": 14, "vision_hidden": 256, "vision_layers": 4,
            "vision_heads": 16, "abstractor_layers": 2, "abstractor_heads": 16, "queries": 64, "text_hidden": 512,
            "text_layers": 4, "text_heads": 8, "text_intermediate": 1376, "vocab_size": 32000}


def run_ours(folder: str, inputs_path: str, output_path: str, mode: str) -> None:
    import importlib.util

    import torch

    from iqabench.models.backend import BackendSpec, load_backend

    # the same measuring loop as the reference side (it lives in the reference worker)
    spec = importlib.util.spec_from_file_location("owl2_reference_worker", REFERENCE_WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    torch.set_num_threads(int(os.environ.get("OWL2_THREADS", "1")))
    backend = load_backend(BackendSpec(path=folder, dtype="float32"), "cpu")
    pixels = torch.load(inputs_path, weights_only=True)["pixel_values"]

    def task():
        if mode == "forward":
            with torch.no_grad():
                backend.next_token_logits(pixels, QUESTION)
        else:
            prompt = torch.zeros_like(pixels, requires_grad=True)
            backend.next_token_logits(pixels + prompt, QUESTION)[:, :4].logsumexp(-1).sum().backward()

    result = worker.time_and_memory(task, int(os.environ.get("OWL2_REPEATS", "3")))
    Path(output_path).write_text(json.dumps(result))


def measure(command: list[str], output: Path, env: dict) -> dict:
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"benchmark worker failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return json.loads(output.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--worker", nargs=4, metavar=("FOLDER", "INPUTS", "OUTPUT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_ours(*args.worker)
        return

    import torch

    from iqabench.models.backend import BackendSpec, load_backend
    from iqabench.models.tiny_owl2 import build_tiny_owl2

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OWL2_THREADS": str(args.threads), "OWL2_REPEATS": str(args.repeats)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sizes = mid_size(args.image_size)
        folder = build_tiny_owl2(tmp / "owl2", seed=0, **sizes)
        backend = load_backend(BackendSpec(path=str(folder)), "cpu")
        params = sum(p.numel() for p in backend.model.parameters())
        size = backend.image_size
        pixels = backend.normalize(torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0)))
        inputs = tmp / "inputs.pt"
        torch.save({"prompts": [backend.prompt_ids(QUESTION)], "pixel_values": pixels}, inputs)
        del backend
        print(f"config: {json.dumps(sizes)}; {params / 1e6:.1f} M parameters; batch {args.batch}; "
              f"{args.threads} thread(s); float32; best of {args.repeats} after a warm-up")
        rows = []
        for mode in ("forward", "prompt-step"):
            ours_out, ref_out = tmp / f"ours_{mode}.json", tmp / f"ref_{mode}.json"
            ours = measure([sys.executable, __file__, "--worker", str(folder), str(inputs), str(ours_out), mode],
                           ours_out, env)
            ref = measure([sys.executable, str(REFERENCE_WORKER), "bench", str(folder), str(inputs), str(ref_out),
                           mode],
                          ref_out, env)
            rows.append((mode, ours, ref))
    print(f"{'task':<12} {'ours s':>8} {'pyiqa s':>8} {'ratio':>6} | {'ours +MiB':>9} {'pyiqa +MiB':>10} "
          f"{'ratio':>6} | {'ours RSS':>8} {'pyiqa RSS':>9} {'ratio':>6}")
    for mode, ours, ref in rows:
        print(f"{mode:<12} {ours['seconds']:8.3f} {ref['seconds']:8.3f} {ours['seconds'] / ref['seconds']:6.2f} | "
              f"{ours['extra_mib']:9.0f} {ref['extra_mib']:10.0f} "
              f"{ours['extra_mib'] / max(ref['extra_mib'], 1):6.2f} | "
              f"{ours['task_peak_mib']:8.0f} {ref['task_peak_mib']:9.0f} "
              f"{ours['task_peak_mib'] / ref['task_peak_mib']:6.2f}")
    print("ratio = ours / pyiqa (below 1 is better). +MiB: peak RSS during the task minus RSS before it "
          "(activations, attention maps, logits, gradients); RSS: peak RSS during the task (model + imports included)")


if __name__ == "__main__":
    main()
