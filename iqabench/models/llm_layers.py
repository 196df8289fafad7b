"""Decoder pieces the LLaMA-style language models written here share (mPLUG-Owl2's LLaMA-2,
mPLUG-Owl3's Qwen2): RMSNorm, the SwiGLU MLP, rotate-half RoPE and the attention mask of a
left-padded batch. Parameter names are the Hugging Face ones the checkpoints use.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), no biases."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def rope(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 cos/sin [..., head_dim] for integer positions of any shape (rotate-half layout)."""
    idx = torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float()
    inv_freq = 1.0 / (theta ** (idx / head_dim))
    freqs = positions.float()[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


def left_padded_mask(full_mask: torch.Tensor, new: int) -> torch.Tensor:
    """Self-attention mask [B, 1, new, T] of the last `new` positions of left-padded rows whose real
    tokens are True in `full_mask` [B, T]: causal, real keys only, and each pad position attends to
    itself so that no softmax row is empty."""
    total = full_mask.shape[1]
    device = full_mask.device
    causal = torch.ones(new, total, dtype=torch.bool, device=device).tril(diagonal=total - new)
    allowed = causal[None] & full_mask[:, None, :]
    cols = torch.arange(total, device=device)
    allowed |= (cols[None, :] == torch.arange(new, device=device)[:, None] + total - new)[None]
    return allowed[:, None]


def greedy_tokens(hidden: torch.Tensor, lm_head: nn.Module, advance, max_new_tokens: int,
                  stop_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding from the last position of `hidden` [B, T, D]: `advance(next_ids [B])` feeds the
    chosen tokens (whatever a stopped row gets is never read) and returns the new hidden states.
    -> (tokens [B, n], stopped_before [B, n]: the row had produced a stop id at an earlier step),
    n <= max_new_tokens; decoding ends once every row has stopped."""
    batch = hidden.shape[0]
    done = torch.zeros(batch, dtype=torch.bool, device=hidden.device)
    tokens: list[torch.Tensor] = []
    before: list[torch.Tensor] = []
    for step in range(max_new_tokens):
        nxt = lm_head(hidden[:, -1]).float().argmax(-1)
        tokens.append(nxt)
        before.append(done)
        done = done | torch.isin(nxt, stop_ids)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        hidden = advance(nxt)
    if not tokens:
        empty = torch.zeros(batch, 0, dtype=torch.long, device=hidden.device)
        return empty, empty.bool()
    return torch.stack(tokens, dim=1), torch.stack(before, dim=1)
