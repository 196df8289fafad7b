"""A tiny random text-only Qwen2 checkpoint, for testing the served backend against a real server.

vLLM's CPU build serves it (its multimodal model classes need a torchvision that loads beside the
CPU torch, which these machines lack). Head dimension 64: the CPU attention kernel refuses 16.
"""
from __future__ import annotations

from pathlib import Path

from iqabench.models.tiny_vlm import (
    CHATML,
    CHATML_GEN,
    INIT_STD,
    build_tokenizer,
    chat_template,
)


def build_tiny_qwen2(folder: str | Path, seed: int = 0, heads: int = 2, head_dim: int = 64, layers: int = 2) -> Path:
    """Save a random Qwen2ForCausalLM (ChatML template, the test tokenizer) to `folder`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tokenizer({}, ("<|im_start|>", "<|im_end|>"), bos=None, eos="<|im_end|>", pad="<|endoftext|>")
    tokenizer.chat_template = chat_template(CHATML, "", CHATML_GEN)
    hidden = heads * head_dim
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         head_dim=head_dim, max_position_embeddings=1024, initializer_range=INIT_STD,
                         tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None, eos_token_id=tokenizer.eos_token_id, torch_dtype="float32")
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
