"""mPLUG-Owl2 assembled: vision tower -> visual abstractor -> modality-adaptive LLaMA.

Plain torch modules; nothing in transformers is patched. The LM head is applied only at the
positions whose logits are asked for (the last one by default): the vocabulary projection
of every prompt position is the largest avoidable cost of the official code.
"""
from __future__ import annotations

import torch
from torch import nn

from iqabench.models.llm_layers import greedy_tokens

from .abstractor import VisualAbstractor
from .config import Owl2Config
from .decoder import KVCache, ModalityAdaptiveDecoder
from .vision import VisionTower

IMAGE_TOKEN_INDEX = -200  # the placeholder id the official tokenisation puts where the image goes


class Owl2Model(nn.Module):
    def __init__(self, config: Owl2Config):
        super().__init__()
        self.config = config
        self.vision = VisionTower(config.vision)
        self.abstractor = VisualAbstractor(config.abstractor, config.text.hidden_size)
        self.decoder = ModalityAdaptiveDecoder(config.text)
        self.lm_head = nn.Linear(config.text.hidden_size, config.text.vocab_size, bias=False)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [B, 3, S, S] -> visual LLM tokens [B, 65, D]."""
        return self.abstractor(self.vision(pixel_values))

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None) -> tuple[torch.Tensor, tuple | None]:
        """One prompt's ids [T] (with at most one IMAGE_TOKEN_INDEX) for every image in the batch.

        Returns embeddings [B, T', D] with the image tokens spliced in, and the (start, end)
        span of the image tokens (None for a text-only prompt)."""
        if input_ids.dim() != 1:
            raise ValueError("owl2 embed takes one prompt (1-D ids) shared by the whole batch")
        where = (input_ids == IMAGE_TOKEN_INDEX).nonzero().flatten()
        embed = self.decoder.embed_tokens
        if len(where) == 0:
            batch = 1 if pixel_values is None else pixel_values.shape[0]
            return embed(input_ids)[None].expand(batch, -1, -1), None
        if len(where) > 1:
            raise ValueError("owl2 prompts take exactly one image placeholder")
        if pixel_values is None:
            raise ValueError("the prompt has an image placeholder but no pixels were given")
        cut = int(where[0])
        image = self.encode_images(pixel_values)
        batch = image.shape[0]
        before = embed(input_ids[:cut])[None].expand(batch, -1, -1).to(image.dtype)
        after = embed(input_ids[cut + 1:])[None].expand(batch, -1, -1).to(image.dtype)
        return torch.cat([before, image, after], dim=1), (cut, cut + image.shape[1])

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None,
                positions: torch.Tensor | list[int] | None = None) -> torch.Tensor:
        """Logits (float32) [B, len(positions), vocab] at the given positions of the spliced
        sequence (default: the last one only, shape [B, vocab])."""
        embeds, visual = self.embed(input_ids, pixel_values)
        hidden, _ = self.decoder(embeds, visual)
        if positions is None:
            return self.lm_head(hidden[:, -1]).float()
        return self.lm_head(hidden[:, positions]).float()

    @torch.no_grad()
    def generate_greedy(self, input_ids: torch.Tensor, pixel_values: torch.Tensor,
                        max_new_tokens: int, eos_token_id: int) -> torch.Tensor:
        """Greedy decoding with a K/V cache; returns new ids [B, <= max_new_tokens] (eos-padded)."""
        embeds, visual = self.embed(input_ids, pixel_values)
        hidden, cache = self.decoder(embeds, visual, use_cache=True)

        def advance(nxt: torch.Tensor) -> torch.Tensor:
            nonlocal cache
            hidden, cache = self._step(self.decoder.embed_tokens(nxt)[:, None].to(embeds.dtype), cache)
            return hidden

        eos = torch.tensor([eos_token_id], device=embeds.device)
        tokens, before = greedy_tokens(hidden, self.lm_head, advance, max_new_tokens, eos)
        return torch.where(before, torch.full_like(tokens, eos_token_id), tokens)

    def _step(self, embeds: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, KVCache]:
        # generated tokens are text
        return self.decoder(embeds, None, past=cache, use_cache=True)
