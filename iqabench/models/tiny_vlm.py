"""Tiny, randomly initialised models of the transformers-native VLM families, for tests.

Each builder makes the family's real config class (1-2 layers, hidden 32-64, 28-56 px images),
its real processor class around a tokenizer built here (no download), writes both to a folder as
a checkpoint would be laid out, and returns the folder; the backends load it through the path real
weights take. The chat templates are short ones in each family's turn format (ChatML, Gemma
turns, Idefics3's User:/Assistant:, Mistral's [INST]); a real checkpoint brings its own.
"""
from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from iqabench.models.tiny_llava import PROMPT_WORDS, QUALITY_WORDS, clip_llama_configs

INIT_STD = 0.1  # larger than transformers' 0.02, so a random model's answer depends on the image
CHAT_WORDS = ("user", "assistant", "system", "model", "User", "Assistant", "System", "Image", "score", "Score",
              "Please", "evaluate", "and", "in", "with", "integer", "from", "to", "1", "2", "3", "4", "5", "6", "7")


def build_tokenizer(specials: dict[str, str], extra: tuple[str, ...] = (), bos: str | None = "<s>",
                    eos: str = "</s>", pad: str = "<pad>", add_bos: bool = True):
    """A unigram tokenizer built in memory: quality and prompt words as whole "▁word" pieces, single
    characters for the rest. `specials` are named special tokens (attribute -> token, e.g.
    image_token -> "<|image_pad|>", which the processors read); `extra` are more special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    fixed = ["<unk>"] + [t for t in (bos, eos, pad) if t]
    vocab = [(s, 0.0) for s in fixed]
    words = tuple(dict.fromkeys(QUALITY_WORDS + PROMPT_WORDS + CHAT_WORDS))
    vocab += [("▁" + w, -2.0) for w in words]
    vocab += [(w, -3.0) for w in words if w not in string.digits]
    seen = {piece for piece, _ in vocab}
    vocab.append(("▁", -8.0))
    vocab += [(c, -10.0) for c in string.ascii_letters + string.digits + string.punctuation + "\n" if c not in seen]
    model = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
    model.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    model.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    added = list(dict.fromkeys(list(specials.values()) + list(extra)))
    model.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in added])
    if bos and add_bos:
        model.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, model.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=model, bos_token=bos, eos_token=eos, unk_token="<unk>",
                                   pad_token=pad, extra_special_tokens=dict(specials))


def chat_template(turn: str, image: str, generation: str, bos: str = "", system_turn: bool = True) -> str:
    """A Jinja chat template: every message as `turn` (with {role} and {content}), images as `image`
    in content order, then `generation` when a generation prompt is asked for. Without a system
    turn, a system message's text opens the first user turn."""
    role = "message['role']"
    head, tail = turn.split("{content}")
    head = head.replace("{role}", "' + " + role + " + '")
    body = ("{% for c in message['content'] %}{% if c['type'] == 'image' %}" + image.replace("\n", "\\n").join(["{{ '", "' }}"])
            + "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}")
    content = "{% if message['content'] is string %}{{ message['content'] }}{% else %}" + body + "{% endif %}"
    system = ""
    if not system_turn:
        system = ("{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
                  "{% set messages = messages[1:] %}{% else %}{% set sys = none %}{% endif %}")
        content = "{% if loop.first and sys %}{% if sys is string %}{{ sys }}{% else %}{{ sys[0]['text'] }}{% endif %}{{ '\\n' }}{% endif %}" + content
    return ("{{ '" + bos + "' }}" + system + "{% for message in messages %}{{ '" + head.replace("\n", "\\n") + "' }}" + content
            + "{{ '" + tail.replace("\n", "\\n") + "' }}{% endfor %}{% if add_generation_prompt %}{{ '"
            + generation.replace("\n", "\\n") + "' }}{% endif %}")


def _liven(model: Any) -> None:
    """Weights some families initialise to zero (Gemma 3's projection, InternVL's position
    embeddings) get random values, so the image reaches the answer of a random model."""
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2 and not bool(param.any()):
                param.normal_(0.0, INIT_STD)


def _save(folder: str | Path, model: Any, processor: Any, tokenizer: Any) -> Path:
    _liven(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _seeded(seed: int):
    import torch

    torch.manual_seed(seed)


CHATML = "<|im_start|>{role}\n{content}<|im_end|>\n"
CHATML_GEN = "<|im_start|>assistant\n"


# -- Qwen2.5-VL and Qwen3-VL: patches of 14 / 16 px merged 2x2, images of any size --------------
def _qwen_tokenizer():
    specials = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"}
    return build_tokenizer(specials, ("<|im_start|>", "<|im_end|>"), bos=None, eos="<|im_end|>", pad="<|endoftext|>")


def _qwen_ids(tokenizer) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return {"image_token_id": ids("<|image_pad|>"), "video_token_id": ids("<|video_pad|>"),
            "vision_start_token_id": ids("<|vision_start|>"), "vision_end_token_id": ids("<|vision_end|>")}


QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"


def _mrope(head_dim: int) -> list[int]:
    """Rotary sections for time, height, width in Qwen's 1/4, 3/8, 3/8 split of head_dim / 2."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def build_qwen2_5_vl(folder, seed: int = 0, hidden: int = 32, layers: int = 2, max_pixels: int = 56 * 56,
                     vision_hidden: int | None = None, vision_layers: int | None = None, heads: int = 2,
                     intermediate: int | None = None, vocab_size: int | None = None) -> Path:
    """Tiny by default; the keyword sizes make mid-size random models for benchmarks (`vocab_size`
    may exceed the tokenizer's, as real vocabularies do, to give the LM head its real cost)."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = _qwen_tokenizer()
    vh, vl = vision_hidden or hidden, vision_layers or layers
    vision = {"depth": vl, "hidden_size": vh, "intermediate_size": 2 * vh, "num_heads": heads,
              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
              "out_hidden_size": hidden, "fullatt_block_indexes": [vl - 1], "initializer_range": INIT_STD}
    text = {"vocab_size": max(vocab_size or 0, len(tokenizer)), "hidden_size": hidden,
            "intermediate_size": intermediate or 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": 1,
            "max_position_embeddings": 1024, "initializer_range": INIT_STD, "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": _mrope(hidden // heads)}}
    config = Qwen2_5_VLConfig(vision_config=vision, text_config=text, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id, **_qwen_ids(tokenizer))
    _seeded(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    size = {"shortest_edge": 28 * 28, "longest_edge": max_pixels}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2),
        video_processor=Qwen2VLVideoProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2),
        tokenizer=tokenizer, chat_template=chat_template(CHATML, QWEN_IMAGE, CHATML_GEN))
    return _save(folder, model, processor, tokenizer)


def build_qwen3_vl(folder, seed: int = 0, hidden: int = 32, layers: int = 2, max_pixels: int = 64 * 64) -> Path:
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = _qwen_tokenizer()
    vision = {"depth": layers, "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_heads": 2,
              "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": hidden,
              "num_position_embeddings": 16, "deepstack_visual_indexes": [0], "initializer_range": INIT_STD}
    text = {"vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": hidden // 2,
            "max_position_embeddings": 1024, "initializer_range": INIT_STD, "pad_token_id": tokenizer.pad_token_id,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                "mrope_interleaved": True},
            "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id}
    config = Qwen3VLConfig(vision_config=vision, text_config=text, eos_token_id=tokenizer.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id, **_qwen_ids(tokenizer))
    _seeded(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    size = {"shortest_edge": 32 * 32, "longest_edge": max_pixels}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=16, merge_size=2, temporal_patch_size=2,
                                              image_mean=[0.5] * 3, image_std=[0.5] * 3),
        video_processor=Qwen3VLVideoProcessor(size=size, patch_size=16, merge_size=2, temporal_patch_size=2),
        tokenizer=tokenizer, chat_template=chat_template(CHATML, QWEN_IMAGE, CHATML_GEN))
    return _save(folder, model, processor, tokenizer)


# -- InternVL (transformers-native): 28-px tiles cut by the GotOcr2 image processor, pixel shuffle 0.5 ---
def build_internvl(folder, seed: int = 0, hidden: int = 32, layers: int = 2, tile: int = 28, max_tiles: int = 4) -> Path:
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    specials = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                "video_token": "<video>"}
    tokenizer = build_tokenizer(specials, ("<|im_start|>", "<|im_end|>"), bos=None, eos="<|im_end|>", pad="<|endoftext|>")
    patch = 14
    seq = (tile // patch) ** 2 // 4  # tokens per tile after the 0.5 pixel shuffle
    vision = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 2,
              "intermediate_size": 2 * hidden, "image_size": [tile, tile], "patch_size": [patch, patch],
              "initializer_range": INIT_STD}
    text = {"model_type": "qwen2", "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 1024, "initializer_range": INIT_STD, "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id, "bos_token_id": None}
    config = InternVLConfig(vision_config=vision, text_config=text, image_seq_length=seq,
                            image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), downsample_ratio=0.5,
                            vision_feature_layer=-1)
    _seeded(seed)
    model = InternVLForConditionalGeneration(config).eval()
    size = {"height": tile, "width": tile}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=True, min_patches=1, max_patches=max_tiles,
                                              image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]),
        video_processor=InternVLVideoProcessor(size=size), tokenizer=tokenizer, image_seq_length=seq,
        chat_template=chat_template(CHATML, "<IMG_CONTEXT>\n", CHATML_GEN))
    return _save(folder, model, processor, tokenizer)


# -- LLaVA-OneVision and LLaVA-Next: any-resolution grids of 28-px crops plus a base view ----------
def _siglip_vision(hidden: int, layers: int, image_size: int, patch: int = 14) -> dict:
    return {"model_type": "siglip_vision_model", "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": 2, "image_size": image_size, "patch_size": patch}


PINPOINTS = [[28, 28], [28, 56], [56, 28], [56, 56]]


def build_llava_onevision(folder, seed: int = 0, hidden: int = 32, layers: int = 2, image_size: int = 28) -> Path:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    specials = {"image_token": "<image>", "video_token": "<video>"}
    tokenizer = build_tokenizer(specials, ("<|im_start|>", "<|im_end|>"), bos=None, eos="<|im_end|>", pad="<|endoftext|>")
    text = {"model_type": "qwen2", "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 2048, "initializer_range": INIT_STD, "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id, "bos_token_id": None}
    config = LlavaOnevisionConfig(vision_config=_siglip_vision(hidden, layers, image_size), text_config=text,
                                  image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                                  video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
                                  image_grid_pinpoints=PINPOINTS, vision_feature_select_strategy="full",
                                  vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9")
    config.initializer_range = INIT_STD
    _seeded(seed)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    size = {"height": image_size, "width": image_size}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=PINPOINTS, do_pad=True),
        video_processor=LlavaOnevisionVideoProcessor(size=size), tokenizer=tokenizer,
        num_image_tokens=(image_size // 14) ** 2, vision_feature_select_strategy="full",
        chat_template=chat_template(CHATML, "<image>\n", CHATML_GEN))
    return _save(folder, model, processor, tokenizer)


MISTRAL_TURN = "[INST] {content} [/INST]"


def build_llava_next(folder, seed: int = 0, hidden: int = 32, layers: int = 2, image_size: int = 28) -> Path:
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    tokenizer = build_tokenizer({"image_token": "<image>"})
    vision, text = clip_llama_configs(tokenizer, hidden, layers, image_size, 14, INIT_STD, max_positions=2048)
    config = LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                             image_grid_pinpoints=PINPOINTS, vision_feature_select_strategy="default",
                             vision_feature_layer=-2, image_seq_length=(image_size // 14) ** 2)
    config.initializer_range = INIT_STD
    _seeded(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
                                                image_grid_pinpoints=PINPOINTS),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=chat_template(MISTRAL_TURN, "<image>\n", "", system_turn=False))
    return _save(folder, model, processor, tokenizer)


# -- Idefics3 / SmolVLM: images split into 28-px tiles plus a global view, pixel shuffle 2 ---------
IDEFICS_TURN = "{role}:{content}<end_of_utterance>\n"


def _idefics_parts(hidden: int, layers: int, tile: int):
    specials = {"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"}
    rows = tuple(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))
    tokenizer = build_tokenizer(specials, rows, bos="<|begin_of_text|>", eos="<end_of_utterance>", pad="<|finetune_right_pad_id|>")
    vision = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
              "num_attention_heads": 2, "image_size": tile, "patch_size": 14, "initializer_range": INIT_STD}
    text = {"model_type": "llama", "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 2,
            "max_position_embeddings": 2048, "initializer_range": INIT_STD, "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    template = chat_template(IDEFICS_TURN, "<image>", "Assistant:", bos="<|begin_of_text|>")
    return tokenizer, vision, text, template


def _capitalised_roles(template: str) -> str:
    return template.replace("' + message['role'] + '", "' + message['role'] | capitalize + '")


def _build_idefics_like(folder, seed: int, hidden: int, layers: int, tile: int, config_cls, model_cls,
                        processor) -> Path:
    """Idefics3 and SmolVLM share the model layout; `processor(tokenizer, template, image_seq_len)`
    builds the family's processor."""
    tokenizer, vision, text, template = _idefics_parts(hidden, layers, tile)
    config = config_cls(vision_config=vision, text_config=text, scale_factor=2,
                        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=tokenizer.pad_token_id)
    _seeded(seed)
    model = model_cls(config).eval()
    return _save(folder, model, processor(tokenizer, _capitalised_roles(template), (tile // 14) ** 2 // 4), tokenizer)


def build_idefics3(folder, seed: int = 0, hidden: int = 32, layers: int = 2, tile: int = 28) -> Path:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    def processor(tokenizer, template, image_seq_len):
        return Idefics3Processor(
            image_processor=Idefics3ImageProcessor(size={"longest_edge": 2 * tile}, max_image_size={"longest_edge": tile}),
            tokenizer=tokenizer, image_seq_len=image_seq_len, chat_template=template)

    return _build_idefics_like(folder, seed, hidden, layers, tile, Idefics3Config, Idefics3ForConditionalGeneration,
                               processor)


def build_smolvlm(folder, seed: int = 0, hidden: int = 32, layers: int = 2, tile: int = 28) -> Path:
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    def processor(tokenizer, template, image_seq_len):
        return SmolVLMProcessor(
            image_processor=SmolVLMImageProcessor(size={"longest_edge": 2 * tile}, max_image_size={"longest_edge": tile}),
            video_processor=SmolVLMVideoProcessor(size={"longest_edge": tile}), tokenizer=tokenizer,
            image_seq_len=image_seq_len, chat_template=template)

    return _build_idefics_like(folder, seed, hidden, layers, tile, SmolVLMConfig, SmolVLMForConditionalGeneration,
                               processor)


# -- PaliGemma and Gemma 3: one fixed-size SigLIP view per image ---------------------------------
def _gemma_text(tokenizer, hidden: int, layers: int, **extra) -> dict:
    return {"vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": hidden // 2,
            "max_position_embeddings": 1024, "initializer_range": INIT_STD, "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, **extra}


def build_paligemma(folder, seed: int = 0, hidden: int = 32, layers: int = 2, image_size: int = 28) -> Path:
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    tokenizer = build_tokenizer({"image_token": "<image>"}, bos="<bos>", eos="<eos>", pad="<pad>")
    seq = (image_size // 14) ** 2
    config = PaliGemmaConfig(vision_config=_siglip_vision(hidden, layers, image_size),
                             text_config={"model_type": "gemma", **_gemma_text(tokenizer, hidden, layers)},
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"), projection_dim=hidden,
                             hidden_size=hidden, vocab_size=len(tokenizer))
    config.text_config.num_image_tokens = seq
    config.vision_config.projection_dim = hidden
    _seeded(seed)
    model = PaliGemmaForConditionalGeneration(config).eval()
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    image_processor.image_seq_length = seq
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(folder, model, processor, tokenizer)


GEMMA_TURN = "<start_of_turn>{role}\n{content}<end_of_turn>\n"


def build_gemma3(folder, seed: int = 0, hidden: int = 32, layers: int = 2, image_size: int = 28) -> Path:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor

    specials = {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"}
    tokenizer = build_tokenizer(specials, ("<start_of_turn>", "<end_of_turn>"), bos="<bos>", eos="<eos>", pad="<pad>")
    tokens = (image_size // 14) ** 2  # one soft token per patch (pooling kernel 1)
    text = {"model_type": "gemma3_text", **_gemma_text(tokenizer, hidden, layers, query_pre_attn_scalar=hidden // 2,
                                                       sliding_window=64, layer_types=["sliding_attention", "full_attention"][:layers] if layers <= 2 else None)}
    config = Gemma3Config(vision_config=_siglip_vision(hidden, layers, image_size), text_config=text,
                          mm_tokens_per_image=tokens, boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
                          eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
                          image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"), initializer_range=INIT_STD)
    _seeded(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    # the real template names the assistant "model"; a system message opens the first user turn
    template = chat_template(GEMMA_TURN, "<start_of_image>", "<start_of_turn>model\n", bos="<bos>", system_turn=False)
    template = template.replace("' + message['role'] + '", "' + ('model' if message['role'] == 'assistant' else message['role']) + '")
    processor = Gemma3Processor(image_processor=Gemma3ImageProcessor(size={"height": image_size, "width": image_size}),
                                tokenizer=tokenizer, image_seq_length=tokens, chat_template=template)
    return _save(folder, model, processor, tokenizer)
