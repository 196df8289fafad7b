"""The mPLUG-Owl2 visual abstractor: 64 learnable queries cross-attend to the image tokens.

Each layer normalises the queries (norm1) and image tokens (normk), lets the queries attend
to [queries; image tokens] with fixed sin-cos position codes added to queries and keys
(not to values), adds the result to the *normalised* queries, then a SwiGLU MLP with an
inner LayerNorm. The output is projected to the LLM width and followed by a learned
`vit_eos` token, so one image becomes 65 LLM tokens. Names follow `model.visual_abstractor.*`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import AbstractorConfig


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = positions.reshape(-1).astype(np.float64)[:, None] * omega[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d_with_cls(dim: int, grid: int) -> np.ndarray:
    """MAE-style 2-D code: first half of the channels encodes the column, second half the row; a zero row for CLS."""
    cols, rows = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    code = np.concatenate([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], axis=1)
    return np.concatenate([np.zeros((1, dim)), code], axis=0)


class AbstractorAttention(nn.Module):
    def __init__(self, cfg: AbstractorConfig):
        super().__init__()
        d = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(cfg.encoder_hidden_size, d)
        self.value = nn.Linear(cfg.encoder_hidden_size, d)
        # fixed codes; the official checkpoints store them, so they are persistent buffers here too
        q_pos = sincos_1d(d, np.arange(cfg.num_learnable_queries, dtype=np.float32))
        self.register_buffer("q_pos_embed", torch.tensor(q_pos, dtype=torch.float32))
        self.register_buffer("k_pos_embed", torch.tensor(sincos_2d_with_cls(d, cfg.grid_size), dtype=torch.float32))

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """queries [B, Q, D] (normalised), context [B, Q + N, D] = [queries; image tokens]."""
        b, nq, d = queries.shape
        q_pos = self.q_pos_embed.to(queries.dtype)
        kv_pos = torch.cat([q_pos, self.k_pos_embed.to(queries.dtype)], dim=0)
        split = lambda t: t.view(b, t.shape[1], self.heads, d // self.heads).transpose(1, 2)
        q = split(self.query(queries + q_pos))
        k = split(self.key(context + kv_pos))
        v = split(self.value(context))
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, nq, d)


class AbstractorMLP(nn.Module):
    def __init__(self, cfg: AbstractorConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.w2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.w3 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.ffn_ln = nn.LayerNorm(cfg.intermediate_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.ffn_ln(F.silu(self.w1(x)) * self.w3(x)))


class AbstractorOutput(nn.Module):
    def __init__(self, cfg: AbstractorConfig):
        super().__init__()
        self.out_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.norm2 = nn.LayerNorm(cfg.hidden_size)  # default eps 1e-5, as in the official code
        self.mlp = AbstractorMLP(cfg)


class CrossAttentionBlock(nn.Module):
    def __init__(self, cfg: AbstractorConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden_size)
        self.normk = nn.LayerNorm(cfg.encoder_hidden_size)
        self.attention = AbstractorAttention(cfg)
        self.output = AbstractorOutput(cfg)

    def forward(self, queries: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        queries = self.norm1(queries)
        context = torch.cat([queries, self.normk(image_tokens)], dim=1)
        x = queries + self.output.out_proj(self.attention(queries, context))
        return x + self.output.mlp(self.output.norm2(x))


class AbstractorLayer(nn.Module):
    def __init__(self, cfg: AbstractorConfig):
        super().__init__()
        self.crossattention = CrossAttentionBlock(cfg)


class AbstractorEncoder(nn.Module):
    def __init__(self, cfg: AbstractorConfig):
        super().__init__()
        self.layers = nn.ModuleList(AbstractorLayer(cfg) for _ in range(cfg.num_hidden_layers))


class VisualAbstractor(nn.Module):
    """Image tokens [B, N, Dv] -> LLM tokens [B, queries + 1, D_llm]."""

    def __init__(self, cfg: AbstractorConfig, language_hidden_size: int):
        super().__init__()
        self.query_embeds = nn.Parameter(torch.zeros(1, cfg.num_learnable_queries, cfg.hidden_size))
        self.encoder = AbstractorEncoder(cfg)
        self.visual_fc = nn.Linear(cfg.hidden_size, language_hidden_size)
        self.vit_eos = nn.Parameter(torch.zeros(1, 1, language_hidden_size))

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        x = self.query_embeds.expand(image_tokens.shape[0], -1, -1).to(image_tokens.dtype)
        for layer in self.encoder.layers:
            x = layer.crossattention(x, image_tokens)
        x = self.visual_fc(x)
        eos = self.vit_eos.expand(x.shape[0], -1, -1).to(x.dtype)
        return torch.cat([x, eos], dim=1)

    def reset_position_codes(self, cfg: AbstractorConfig) -> None:
        """Recompute the fixed sin-cos codes (for checkpoints that do not store them)."""
        for layer in self.encoder.layers:
            attn = layer.crossattention.attention
            dtype, device = attn.query.weight.dtype, attn.query.weight.device
            q_pos = sincos_1d(cfg.hidden_size, np.arange(cfg.num_learnable_queries, dtype=np.float32))
            attn.q_pos_embed = torch.tensor(q_pos, dtype=torch.float32).to(device=device, dtype=dtype)
            attn.k_pos_embed = torch.tensor(sincos_2d_with_cls(cfg.hidden_size, cfg.grid_size),
                                            dtype=torch.float32).to(device=device, dtype=dtype)
