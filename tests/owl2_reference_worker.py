"""Run pyiqa's independent mPLUG-Owl2 (pyiqa/archs/q_align) on a tiny checkpoint folder.

Used by tests/test_owl2_equivalence.py and benchmarks/bench_owl2.py in a *separate process*:
pyiqa replaces transformers' Llama classes process-wide on import, so it must never share a
process with our code. Test-only shims, applied here and nowhere else:
- `invert_attention_mask` (removed from transformers' PreTrainedModel in 5.17) on its abstractor;
- its constructor loads the tokenizer and image processor from the hub ("q-future/one-align");
  they are pointed at the tiny folder instead.

usage: python owl2_reference_worker.py logits FOLDER INPUTS.pt OUTPUT.pt [FOLDER INPUTS.pt OUTPUT.pt ...]
       python owl2_reference_worker.py bench  FOLDER INPUTS.pt OUTPUT.json MODE   (MODE: forward | prompt-step)
INPUTS.pt holds {"prompts": [LongTensor [T] with -200 for the image, ...], "pixel_values": [B, 3, S, S]};
`logits` writes {"logits": [[B, vocab] per prompt]}; `bench` uses the first prompt.
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"


def build_reference(folder: str):
    import pyiqa.archs.q_align.modeling_mplug_owl2 as owl2
    import pyiqa.archs.q_align.visual_encoder as vis
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPImageProcessor, LlamaTokenizer

    def invert_attention_mask(self, mask):
        inverted = 1.0 - mask[:, None, None, :].to(self.dtype)
        return inverted * torch.finfo(self.dtype).min

    vis.MplugOwlVisualAbstractorModel.invert_attention_mask = invert_attention_mask

    class LocalTokenizer:
        @staticmethod
        def from_pretrained(*_args, **_kwargs):
            return LlamaTokenizer.from_pretrained(folder)

    class LocalProcessor:
        @staticmethod
        def from_pretrained(*_args, **_kwargs):
            return CLIPImageProcessor.from_pretrained(folder)

    owl2.LlamaTokenizer = LocalTokenizer
    owl2.CLIPImageProcessor = LocalProcessor

    with open(os.path.join(folder, "config.json")) as f:
        raw = json.load(f)
    config = owl2.MPLUGOwl2Config(**raw)
    config._attn_implementation = "eager"
    model = owl2.MPLUGOwl2LlamaForCausalLM(config).float().eval()
    state = load_file(os.path.join(folder, "model.safetensors"))
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(("q_pos_embed", "k_pos_embed"))]
    if missing or result.unexpected_keys:
        raise SystemExit(f"reference load: missing {missing}, unexpected {result.unexpected_keys}")
    model.requires_grad_(False)
    return model


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def time_and_memory(task, repeats: int) -> dict:
    """Best time of `repeats` runs after a warm-up, and the task's memory: the peak RSS during
    the timed runs (the kernel's high-water mark, reset via /proc/self/clear_refs) minus the RSS
    just before them. The warm-up first touches lazily mapped weights, so that is not counted.
    Shared with benchmarks/bench_owl2.py so both sides are measured alike."""
    import ctypes
    import gc
    import resource

    task()  # warm-up
    gc.collect()
    try:  # hand freed memory back to the OS, so neither side reuses leftovers from loading
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM
    before = _status_kib("VmRSS")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        task()
        times.append(time.perf_counter() - start)
    peak = _status_kib("VmHWM")
    return {"seconds": min(times), "rss_before_mib": before / 1024, "task_peak_mib": peak / 1024,
            "extra_mib": (peak - before) / 1024,
            "process_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def reference_logits(model, input_ids, pixel_values):
    batch = pixel_values.shape[0]
    out = model(input_ids=input_ids[None].repeat(batch, 1), images=pixel_values, use_cache=False)
    return out.logits[:, -1].float()


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("OWL2_THREADS", "1")))
    command = argv[0]
    if command == "logits":  # several jobs per process: importing pyiqa costs seconds
        jobs = argv[1:]
        for folder, inputs_path, output_path in zip(jobs[0::3], jobs[1::3], jobs[2::3]):
            inputs = torch.load(inputs_path, weights_only=True)
            model = build_reference(folder)
            with torch.no_grad():
                logits = [reference_logits(model, ids, inputs["pixel_values"]) for ids in inputs["prompts"]]
            torch.save({"logits": logits}, output_path)
        return
    folder, inputs_path, output_path = argv[1:4]
    inputs = torch.load(inputs_path, weights_only=True)
    model = build_reference(folder)
    if command == "bench":
        mode = argv[4]
        prompt_ids, pixels = inputs["prompts"][0], inputs["pixel_values"]

        def task():
            if mode == "forward":
                with torch.no_grad():
                    reference_logits(model, prompt_ids, pixels)
            else:
                prompt = torch.zeros_like(pixels, requires_grad=True)
                reference_logits(model, prompt_ids, pixels + prompt)[:, :4].logsumexp(-1).sum().backward()

        with open(output_path, "w") as f:
            json.dump(time_and_memory(task, int(os.environ.get("OWL2_REPEATS", "3"))), f)
        return
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
