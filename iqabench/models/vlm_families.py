"""The transformers-native VLM families as data: what differs between them, in one table.

The hf-vlm backend (iqabench/models/hf_vlm.py) has one code path; a family's row tells it
- which checkpoints it covers (`model_types`: config.json's model_type),
- how one image is written in raw text (`image_text`: for whole-template prompts and the plain
  format; the processor expands it into the model's image tokens),
- `grid`: "fixed" = one [3, S, S] view per image (pixel-space methods such as visual prompts work:
  the backend resizes and normalises like the processor, and a method may edit the pixels), or
  "tiled" = the processor cuts or patchifies each image by its size (image-level methods only),
- processor outputs the model must not receive (`drop_keys`, e.g. PaliGemma's `labels`),
- whether its chat format has a system turn (`system_turn`), takes images anywhere in the text
  (`interleave`) and several images per prompt (`multi_image`),
- whether the backend passes position ids counted from the attention mask for left-padded rows
  (`positions="mask"`) or the model derives them itself (`"model"`: Qwen's multimodal rope),
- the plain conversation format for a checkpoint without a chat template (`plain`, `{content}` =
  the images then the text).
Each row is registered as a backend arch in pyproject.toml (`iqabench.backends`), with a builder of a
tiny random checkpoint (`iqabench.tiny_models`, iqabench/models/tiny_vlm.py).
Pixel range, mean/std, tile and patch sizes are the checkpoint's own processor config, not the table.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

from iqabench.errors import IqaError
from iqabench.models.backend import BackendTraits


@dataclasses.dataclass(frozen=True)
class Family:
    arch: str
    model_types: tuple[str, ...]
    image_text: str
    grid: Literal["fixed", "tiled"]
    drop_keys: tuple[str, ...] = ()
    system_turn: bool = True
    interleave: bool = True
    multi_image: bool = True
    positions: Literal["mask", "model"] = "mask"
    plain: str = "{content}"
    image_sep: str = "\n"  # between an image and the text after it, in the plain format

    @property
    def traits(self) -> BackendTraits:
        """Every resize policy on a fixed grid; a tiled processor sizes images itself (model only)."""
        if self.grid == "fixed":
            return BackendTraits(grid="fixed", multi_image=self.multi_image)
        return BackendTraits(grid="tiled", multi_image=self.multi_image, resize=("model",))


QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"

FAMILIES: dict[str, Family] = {f.arch: f for f in (
    Family("llava", ("llava",), "<image>", "fixed",
           system_turn=False, plain="USER: {content} ASSISTANT:"),
    Family("llava_next", ("llava_next",), "<image>", "tiled",
           system_turn=False, plain="[INST] {content} [/INST]"),
    Family("llava_onevision", ("llava_onevision",), "<image>", "tiled",
           plain="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"),
    Family("qwen2_5_vl", ("qwen2_5_vl",), QWEN_IMAGE, "tiled", positions="model",
           image_sep="", plain="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"),
    Family("qwen3_vl", ("qwen3_vl",), QWEN_IMAGE, "tiled", positions="model",
           image_sep="", plain="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"),
    Family("internvl", ("internvl",), "<IMG_CONTEXT>", "tiled",
           plain="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"),
    Family("idefics3", ("idefics3",), "<image>", "tiled", image_sep="",
           plain="User:{content}<end_of_utterance>\nAssistant:"),
    Family("smolvlm", ("smolvlm",), "<image>", "tiled", image_sep="",
           plain="User:{content}<end_of_utterance>\nAssistant:"),
    # PaliGemma's processor puts every image first and adds <bos> and the closing newline itself;
    # it returns `labels` (for training), which the model would turn into a loss
    Family("paligemma", ("paligemma",), "<image>", "fixed", drop_keys=("labels",),
           system_turn=False, interleave=False, image_sep=""),
    Family("gemma3", ("gemma3",), "<start_of_image>", "fixed", system_turn=False,
           plain="<start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n"),
)}


def family(arch: str) -> Family:
    if arch not in FAMILIES:
        raise IqaError(f"backend {arch!r}: not a transformers VLM family; known: {', '.join(FAMILIES)}")
    return FAMILIES[arch]


def family_of_model_type(model_type: str, path: str) -> Family:
    """The family whose checkpoints have this config.json model_type (for the generic hf-vlm arch)."""
    for fam in FAMILIES.values():
        if model_type in fam.model_types:
            return fam
    raise IqaError(f"{path}: model_type {model_type!r} is not a supported VLM family "
                   f"({', '.join(t for f in FAMILIES.values() for t in f.model_types)})")
