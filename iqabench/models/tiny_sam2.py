"""A tiny, randomly initialised SAM2 of the real transformers architecture, for tests.

`build_tiny_sam2(folder)` saves config, weights and processor to `folder`; the segmenter then
loads it exactly as it loads `facebook/sam2-hiera-large-hf` (Sam2Model/Sam2Processor
.from_pretrained), so tests run the real code path on a model of a few thousand parameters.
"""
from __future__ import annotations

from pathlib import Path


def tiny_sam2_config(image_size: int = 64):
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    if image_size % 32:
        raise ValueError("image_size must be a multiple of 32 (patch stride 4, three 2x poolings)")
    width = 8
    backbone = Sam2HieraDetConfig(
        hidden_size=width,
        num_attention_heads=1,
        image_size=[image_size, image_size],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[width, 2 * width, 4 * width, 8 * width],
        num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[4, 4, 2, 2],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[2, 2],
    )
    stride = 4  # patch stride; the three query-pooling stages halve the map each time
    sizes = [[image_size // (stride * 2**i)] * 2 for i in range(3)]
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[8 * width, 4 * width, 2 * width, width],
        backbone_feature_sizes=sizes,
        fpn_hidden_size=16,
    )
    prompt = Sam2PromptEncoderConfig(hidden_size=16, image_size=image_size, patch_size=16, mask_input_channels=4)
    decoder = Sam2MaskDecoderConfig(hidden_size=16, mlp_dim=32, num_hidden_layers=1, num_attention_heads=2, iou_head_hidden_dim=16)
    return Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def build_tiny_sam2(folder: str | Path, image_size: int = 64, seed: int = 0) -> Path:
    """Save a tiny random Sam2Model and its Sam2Processor to `folder`; return the folder."""
    import torch
    from transformers import Sam2ImageProcessor, Sam2Model, Sam2Processor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Sam2Model(tiny_sam2_config(image_size)).eval()
    model.save_pretrained(folder)
    image_processor = Sam2ImageProcessor(size={"height": image_size, "width": image_size}, mask_size={"height": image_size // 4, "width": image_size // 4})
    Sam2Processor(image_processor=image_processor).save_pretrained(folder)
    return folder
