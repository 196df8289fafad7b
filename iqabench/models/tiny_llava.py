"""Build a tiny, randomly initialised Llava (CLIP vision tower + Llama text model) for tests.

The folder it writes has the same files a real checkpoint has (config, weights, tokenizer,
processor, chat template), so tests load it through the code path real weights take.
The tokenizer is built locally (no download): a Llama-like unigram tokenizer whose
vocabulary holds the quality words as single "▁word" pieces, plus single characters so
that any ASCII text can be encoded.
"""
from __future__ import annotations

import string
from pathlib import Path

IMAGE_TOKEN = "<image>"

# Words an IQA prompt or answer uses; each becomes one piece (with and without the "▁" prefix).
QUALITY_WORDS = ("good", "fine", "poor", "bad", "excellent", "fair", "high", "low",
                 "1", "2", "3", "4", "5", "6", "7", "8", "9")
PROMPT_WORDS = ("USER", "ASSISTANT", "Rate", "rate", "the", "The", "technical", "quality", "of",
                "image", "How", "would", "you", "this", "is", "Is", "a", "an", "photo", "picture")

# A llava-1.5-style template: "USER: <image>\n{question} ASSISTANT:"; the image goes first.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: "
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}</s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def build_tokenizer():
    """A Llama-like tokenizer built in memory (BOS added, Metaspace pieces, <image> special)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = [(s, 0.0) for s in special]
    # Whole words score far better than their spelling so the unigram model keeps them whole.
    for word in QUALITY_WORDS + PROMPT_WORDS:
        vocab.append(("▁" + word, -2.0))
    for word in QUALITY_WORDS + PROMPT_WORDS:
        if word not in string.digits:
            vocab.append((word, -3.0))
    seen = {piece for piece, _ in vocab}
    chars = list(string.ascii_letters + string.digits + string.punctuation) + ["\n"]
    vocab.append(("▁", -8.0))
    vocab += [(c, -10.0) for c in chars if c not in seen]
    model = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
    model.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    model.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    model.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens={"image_token": IMAGE_TOKEN})
    return tokenizer


def clip_llama_configs(tokenizer, hidden: int, layers: int, image_size: int, patch_size: int, init_std: float,
                       max_positions: int):
    """The CLIP vision tower and Llama text model configs of a tiny Llava-style checkpoint (2 heads)."""
    from transformers import CLIPVisionConfig, LlamaConfig

    vision = CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                              num_attention_heads=2, image_size=image_size, patch_size=patch_size, projection_dim=hidden,
                              initializer_range=init_std)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                       num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                       max_position_embeddings=max_positions, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                       initializer_range=init_std)
    return vision, text


def build_tiny_llava(folder: str | Path, *, image_size: int = 56, patch_size: int = 14, seed: int = 0,
                     chat_template: bool = True, hidden_size: int = 32, layers: int = 2,
                     init_std: float = 0.1) -> Path:
    """Write a tiny random Llava checkpoint to `folder` and return it.

    `chat_template=False` leaves the processor and tokenizer without a template, to exercise
    the backend's plain fallback template. `init_std` is larger than transformers' 0.02 so the
    random model's answer actually depends on the image (a test can see a prompt learn)."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaImageProcessor, LlavaProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    vision, text = clip_llama_configs(tokenizer, hidden_size, layers, image_size, patch_size, init_std, max_positions=256)
    n_patches = (image_size // patch_size) ** 2
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                         image_seq_length=n_patches, vision_feature_layer=-2,
                         vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)

    image_processor = LlavaImageProcessor(size={"shortest_edge": image_size},
                                          crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHAT_TEMPLATE if chat_template else None)
    processor.save_pretrained(folder)
    return folder
