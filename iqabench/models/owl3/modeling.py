"""mPLUG-Owl3 assembled: SigLIP crops -> linear projector -> Qwen2 with hyper attention.

The image features never enter the token sequence (each image is one `<|image|>` marker token
there); the hyper-attention layers read them. Plain torch modules; nothing in transformers is
patched. The LM head is applied only at the positions whose logits are asked for.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from iqabench.models.llm_layers import greedy_tokens

from .config import Owl3Config
from .decoder import Cache, HyperQwen2, Media
from .vision import VisionTower


class Owl3Model(nn.Module):
    def __init__(self, config: Owl3Config):
        super().__init__()
        self.config = config
        self.vision = VisionTower(config.vision)
        self.projector = nn.Linear(config.vision.hidden_size, config.text.hidden_size)
        self.decoder = HyperQwen2(config.text)
        self.lm_head = nn.Linear(config.text.hidden_size, config.text.vocab_size, bias=False)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised crops [N, 3, S, S] -> image features in the LM width [N, (S/p)^2, D]."""
        return self.projector(self.vision(pixel_values))

    def media(self, features: torch.Tensor | None, rows: Sequence[Sequence[int]], markers: Sequence[Sequence[int]],
              mask: torch.Tensor) -> Media | None:
        """`features` [sum of crops, Lv, D] in row order; `rows[b]` the crop indices of row b and
        `markers[b]` the (padded) position of each crop's marker token, in text order."""
        if features is None or not any(rows):
            return None
        b, t = mask.shape
        n = max(len(r) for r in rows)
        device = mask.device
        padded = features.new_zeros(b, n, *features.shape[1:])
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        key_positions = torch.zeros(b, n, dtype=torch.long, device=device)
        seen = torch.zeros(b, t, dtype=torch.long, device=device)
        cols = torch.arange(t, device=device)
        for i, (crops, marks) in enumerate(zip(rows, markers)):
            if len(crops) != len(marks):
                raise ValueError(f"row {i}: {len(crops)} crops for {len(marks)} markers")
            if crops:
                padded[i, :len(crops)] = features[list(crops)]
                where = torch.tensor(list(marks), dtype=torch.long, device=device)
                key_positions[i, :len(crops)] = positions[i, where] + 1
                seen[i] = (cols[:, None] > where[None, :]).sum(-1)
        count = torch.tensor([len(r) for r in rows], dtype=torch.long, device=device)
        return Media(padded, count, seen, key_positions)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor, media: Media | None = None,
                positions: torch.Tensor | list[int] | None = None) -> torch.Tensor:
        """Float32 logits [B, vocab] at the last position (or [B, len(positions), vocab])."""
        hidden, _ = self.decoder(self.decoder.embed_tokens(input_ids), mask, media)
        if positions is None:
            return self.lm_head(hidden[:, -1]).float()
        return self.lm_head(hidden[:, positions]).float()

    @torch.no_grad()
    def generate_greedy(self, input_ids: torch.Tensor, mask: torch.Tensor, media: Media | None,
                        max_new_tokens: int, stop_ids: Sequence[int]) -> list[list[int]]:
        """Greedy decoding with a cache; each row's new ids up to (not including) a stop id."""
        hidden, cache = self.decoder(self.decoder.embed_tokens(input_ids), mask, media)

        def advance(nxt: torch.Tensor) -> torch.Tensor:
            nonlocal cache
            hidden, cache = self._step(nxt, cache)
            return hidden

        stops = torch.tensor(list(stop_ids), dtype=torch.long, device=input_ids.device)
        tokens, before = greedy_tokens(hidden, self.lm_head, advance, max_new_tokens, stops)
        stopped = before | torch.isin(tokens, stops)
        return [[int(t) for t, s in zip(row, cut) if not s] for row, cut in zip(tokens.tolist(), stopped.tolist())]

    def _step(self, ids: torch.Tensor, cache: Cache) -> tuple[torch.Tensor, Cache]:
        ones = torch.ones(len(ids), 1, dtype=torch.bool, device=ids.device)
        return self.decoder(self.decoder.embed_tokens(ids)[:, None], ones, None, past=cache)
