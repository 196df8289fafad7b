"""Small settings for tests and the contract test: a tiny prompt module, LoRA of rank 2, short
schedules, and an instruction file in the Q-Instruct format over a few generated images."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def tiny_options() -> dict[str, Any]:
    return {"qformer_layers": 2, "qformer_hidden": 16, "qformer_heads": 2, "qformer_intermediate": 32,
            "qformer_width": 16, "queries": 4, "gate_hidden": 16, "lora_r": 2, "lora_alpha": 4.0,
            "grad_accum": 1, "stage1_epochs": 1, "stage2_epochs": 2, "max_steps": 2,
            "save_every": 1}


def write_instruction_file(path: Path, images: Sequence[tuple[str, float]]) -> Path:
    """A Q-Instruct-style file: for each (image path, quality in [0, 1]) a one-turn quality
    question answered good/poor, and every other entry a second turn about clarity."""
    entries = []
    for i, (image, quality) in enumerate(images):
        word = "good" if quality >= 0.5 else "poor"
        turns = [{"from": "human", "value": "<image>\nRate the quality of the image."},
                 {"from": "gpt", "value": f"{word}"}]
        if i % 2:
            turns += [{"from": "human", "value": "How is the clarity of this image?"},
                      {"from": "gpt", "value": f"The clarity of the image is {'high' if quality >= 0.5 else 'low'}."}]
        entries.append({"id": f"q{i}", "image": image, "conversations": turns})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=1))
    return path


def tiny_instruction_file(folder: Path, n: int = 4, seed: int = 0) -> Path:
    """`n` generated 40 x 48 images (bright = good) and their instruction file, built once."""
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    path = folder / "instructions.json"
    if path.is_file():
        return path
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        level = i / max(1, n - 1)
        pixels = np.clip(rng.normal(30 + 190 * level, 25, (40, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"im{i}.png")
        images.append((f"images/im{i}.png", level))
    return write_instruction_file(path, images)


def build_tiny_instructblip(folder: Path, seed: int = 0, hidden: int = 16, queries: int = 4) -> Path:
    """A tiny random InstructBLIP in transformers' layout (config, safetensors weights and the
    BERT `qformer_tokenizer/` with its [DEC] token), for starting the V-T generator from it."""
    import string

    import torch
    from transformers import (
        BertTokenizerFast,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        LlamaConfig,
    )

    folder = Path(folder)
    (folder / "qformer_tokenizer").mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "rate", "the", "quality", "of", "image", "how",
             "is", "this", "."] + list(string.ascii_lowercase)
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})  # as InstructBLIP adds it
    tokenizer.save_pretrained(folder / "qformer_tokenizer")
    config = InstructBlipConfig(
        vision_config={"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 28, "patch_size": 14},
        qformer_config={"vocab_size": len(tokenizer), "hidden_size": hidden, "num_hidden_layers": 2,
                        "num_attention_heads": 2, "intermediate_size": 2 * hidden, "encoder_hidden_size": hidden,
                        "max_position_embeddings": 64},
        text_config=LlamaConfig(vocab_size=32, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2).to_dict(),
        num_query_tokens=queries)
    torch.manual_seed(seed)
    InstructBlipForConditionalGeneration(config).save_pretrained(folder)
    return folder
