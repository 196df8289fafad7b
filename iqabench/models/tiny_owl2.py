"""Build a tiny random mPLUG-Owl2 in the official checkpoint layout, for tests.

The folder holds what the hub repos hold: `config.json` (official fields and nesting),
`model.safetensors` with the official key names, a SentencePiece `tokenizer.model` (BPE with
byte fallback, LLaMA's special ids 0/1/2 and byte pieces 3..258) plus `tokenizer_config.json`,
and a CLIP `preprocessor_config.json`. Tests load it through the same code path as real weights.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

# whole-word pieces ("▁good" ...) so these are single tokens, as in the LLaMA vocabulary
QUALITY_WORDS = ("good", "fine", "poor", "bad", "excellent", "fair", "high", "low")
PROMPT_WORDS = ("USER", "ASSISTANT", "Rate", "rate", "the", "quality", "technical", "of", "image", "this",
                "How", "would", "you", "The", "is", "very", "Perfect", "Excellent", "Good", "Fair", "Bad",
                "Poor", "Very")


def _sentencepiece_model(words: tuple[str, ...]) -> bytes:
    """A LLaMA-like SentencePiece BPE model, built directly (no training: instant and deterministic)."""
    from sentencepiece import sentencepiece_model_pb2 as spm

    proto = spm.ModelProto()
    pieces: list[tuple[str, int]] = [("<unk>", 2), ("<s>", 3), ("</s>", 3)]
    pieces += [(f"<0x{b:02X}>", 6) for b in range(256)]
    merged: list[str] = []
    for word in words:  # every prefix of "▁word" is a piece, so BPE can build the word by merges
        for end in range(2, len(word) + 2):
            piece = ("▁" + word)[:end]
            if piece not in merged:
                merged.append(piece)
    chars = ["▁"] + list(string.ascii_letters + string.digits + string.punctuation)
    pieces += [(p, 1) for p in merged] + [(c, 1) for c in chars if c not in merged]
    for i, (text, kind) in enumerate(pieces):
        entry = proto.pieces.add()
        entry.piece, entry.type = text, kind
        entry.score = 0.0 if kind != 1 else -float(i)
    spec = proto.trainer_spec
    spec.model_type = spm.TrainerSpec.BPE
    spec.vocab_size = len(pieces)
    spec.byte_fallback = True
    spec.split_digits = True
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = 0, 1, 2, -1
    norm = proto.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = True
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    return proto.SerializeToString()


def tiny_config(vocab_size: int, *, image_size: int = 28, patch_size: int = 14, vision_hidden: int = 32,
                vision_layers: int = 2, vision_heads: int = 4, abstractor_layers: int = 2, abstractor_heads: int = 4,
                queries: int = 8, text_hidden: int = 32, text_layers: int = 2, text_heads: int = 4,
                text_intermediate: int = 64):
    from iqabench.models.owl2.config import (
        AbstractorConfig,
        Owl2Config,
        TextConfig,
        VisionConfig,
    )

    vision = VisionConfig(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
                          num_hidden_layers=vision_layers, num_attention_heads=vision_heads,
                          image_size=image_size, patch_size=patch_size)
    abstractor = AbstractorConfig(hidden_size=vision_hidden, num_hidden_layers=abstractor_layers,
                                  num_attention_heads=abstractor_heads, intermediate_size=2 * vision_hidden,
                                  num_learnable_queries=queries, encoder_hidden_size=vision_hidden,
                                  grid_size=image_size // patch_size)
    text = TextConfig(vocab_size=vocab_size, hidden_size=text_hidden, intermediate_size=text_intermediate,
                      num_hidden_layers=text_layers, num_attention_heads=text_heads,
                      num_key_value_heads=text_heads)
    config = Owl2Config(text=text, vision=vision, abstractor=abstractor)
    config.validate("tiny owl2")
    return config


def random_official_state(config, seed: int = 0) -> dict:
    """Random weights under the official key names, at scales that keep every path alive
    (unit-ish activations, norms away from 1 and biases away from 0, so tests can fail)."""
    import torch

    from iqabench.models.owl2.modeling import Owl2Model
    from iqabench.models.owl2.weights import to_official_key

    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in Owl2Model(config).state_dict().items()}
    out = {}
    for key, shape in shapes.items():
        if key.endswith("_pos_embed"):
            continue  # fixed codes: let the loaders compute them, as for checkpoints without them
        if len(shape) == 1 and key.endswith("weight"):  # norms
            value = 1.0 + 0.2 * torch.randn(shape, generator=gen)
        elif len(shape) == 1:  # biases
            value = 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith(("embed_tokens.weight", "cls_token", "position_embedding", "query_embeds", "vit_eos")):
            value = torch.randn(shape, generator=gen)
        else:
            fan_in = int(torch.tensor(shape[1:]).prod())
            value = torch.randn(shape, generator=gen) / fan_in ** 0.5
        out[to_official_key(key)] = value.contiguous()
    return out


def build_tiny_owl2(folder, seed: int = 0, vocab_size: int | None = None, **sizes) -> Path:
    """Write a tiny random mPLUG-Owl2 to `folder` (created) and return it. `sizes` go to `tiny_config`;
    `vocab_size` may exceed the tokenizer's (as LLaMA-2's 32000 does) to give the LM head a real cost."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = QUALITY_WORDS + PROMPT_WORDS
    sp_model = _sentencepiece_model(words)
    (folder / "tokenizer.model").write_bytes(sp_model)
    from sentencepiece import sentencepiece_model_pb2 as spm

    vocab = len(spm.ModelProto.FromString(sp_model).pieces)
    if vocab_size is not None and vocab_size < vocab:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the tiny tokenizer's {vocab} pieces")
    vocab = vocab_size or vocab
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "legacy": False, "model_max_length": 2048,
        "padding_side": "right", "clean_up_tokenization_spaces": False,
    }, indent=1))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=1))
    config = tiny_config(vocab, **sizes)
    (folder / "config.json").write_text(json.dumps(config.to_official(), indent=1))
    size = config.vision.image_size
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": size},
        "resample": 3, "do_center_crop": True, "crop_size": {"height": size, "width": size},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    }, indent=1))
    save_file(random_official_state(config, seed), str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder
