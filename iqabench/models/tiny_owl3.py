"""Build a tiny random mPLUG-Owl3 in the official checkpoint layout, for tests.

The folder holds what the hub repo holds: `config.json` (official fields and nesting, with
`hyper_layers` and a SigLIP `vision_config`), `model.safetensors` under the official key names
(including the vision parts the model never runs: last encoder layer, post-layernorm, pooling
head), and a byte-level BPE tokenizer in Qwen2's manner with its special tokens (`<|im_start|>`,
`<|im_end|>`, `<|endoftext|>`, `<|image|>`). Tests load it through the path real weights take.
"""
from __future__ import annotations

import json
from pathlib import Path

from iqabench.models.tiny_llava import PROMPT_WORDS, QUALITY_WORDS
from iqabench.models.tiny_vlm import CHAT_WORDS

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|image|>")
OWL3_WORDS = ("system", "user", "assistant", "Cut", "rows", "columns", "with", "a", "global", "view", "subimg",
              "global_view", "helpful", "quality", "standard", "level", "higher", "Compare")


def _tokenizer_json(words: tuple[str, ...]) -> str:
    """A byte-level BPE (GPT-2 / Qwen2 byte alphabet) whose merges build each word, with and
    without a leading space, as one token; built directly, so instant and deterministic."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    merges: list[tuple[str, str]] = []
    for word in words:
        for piece in ("Ġ" + word, word):
            for end in range(2, len(piece) + 1):
                left, right = piece[:end - 1], piece[end - 1]
                if piece[:end] not in vocab:
                    vocab[piece[:end]] = len(vocab)
                    merges.append((left, right))
    model = Tokenizer(models.BPE(vocab, merges))
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    model.decoder = decoders.ByteLevel()
    model.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return model.to_str()


def tiny_config(vocab_size: int, *, image_size: int = 28, patch_size: int = 14, vision_hidden: int = 32,
                vision_layers: int = 3, vision_heads: int = 4, text_hidden: int = 64, text_layers: int = 4,
                text_heads: int = 4, kv_heads: int = 2, text_intermediate: int = 128,
                hyper_layers: tuple[int, ...] = (1, 3)):
    from iqabench.models.owl3.config import Owl3Config, TextConfig, VisionConfig

    vision = VisionConfig(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
                          num_hidden_layers=vision_layers, num_attention_heads=vision_heads,
                          image_size=image_size, patch_size=patch_size)
    text = TextConfig(vocab_size=vocab_size, hidden_size=text_hidden, intermediate_size=text_intermediate,
                      num_hidden_layers=text_layers, num_attention_heads=text_heads, num_key_value_heads=kv_heads,
                      hyper_layers=tuple(hyper_layers))
    config = Owl3Config(text=text, vision=vision)
    config.validate("tiny owl3")
    return config


def official_shapes(config) -> dict[str, tuple[int, ...]]:
    """Every key of the official checkpoint for `config`, with its shape (no weights made)."""
    import torch

    from iqabench.models.owl3.modeling import Owl3Model
    from iqabench.models.owl3.weights import to_official_key, unused_vision_shapes

    with torch.device("meta"):
        ours = {to_official_key(k): tuple(v.shape) for k, v in Owl3Model(config).state_dict().items()}
    return {**ours, **unused_vision_shapes(config)}


def random_official_state(config, seed: int = 0) -> dict:
    """Random weights under the official key names, at scales that keep every path alive
    (unit-ish activations, norms away from 1, biases away from 0, gates neither shut nor open)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in sorted(official_shapes(config).items()):
        if len(shape) == 1 and key.endswith("weight"):  # norms
            value = 1.0 + 0.2 * torch.randn(shape, generator=gen)
        elif len(shape) == 1 or key.endswith("in_proj_bias"):  # biases
            value = 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith(("embed_tokens.weight", "position_embedding.weight", "probe")):
            value = torch.randn(shape, generator=gen)
        else:
            fan_in = int(torch.tensor(shape[1:]).prod())
            value = torch.randn(shape, generator=gen) / fan_in ** 0.5
        out[key] = value.contiguous()
    return out


def build_tiny_owl3(folder, seed: int = 0, **sizes) -> Path:
    """Write a tiny random mPLUG-Owl3 to `folder` (created) and return it; `sizes` go to `tiny_config`."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = tuple(dict.fromkeys(QUALITY_WORDS + PROMPT_WORDS + CHAT_WORDS + OWL3_WORDS))
    tokenizer_json = _tokenizer_json(words)
    (folder / "tokenizer.json").write_text(tokenizer_json)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "unk_token": None, "model_max_length": 32768, "clean_up_tokenization_spaces": False,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|image|>"],
    }, indent=1))
    vocab = Tokenizer.from_str(tokenizer_json).get_vocab_size(with_added_tokens=True)
    config = tiny_config(vocab, **sizes)
    (folder / "config.json").write_text(json.dumps(config.to_official(), indent=1))
    save_file(random_official_state(config, seed), str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder
