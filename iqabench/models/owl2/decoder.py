"""The mPLUG-Owl2 language model: LLaMA-2 with modality-adaptive layers.

Each decoder layer keeps two RMSNorms (before attention and before the MLP) and two K/V
projections, one for text tokens (index 0 in the checkpoint's `multiway` lists) and one
for visual tokens (index 1); Q, O and the MLP are shared. The visual tokens of a sequence
are one contiguous span `(start, end)` of positions (one image per prompt), the same for every
row of a batch (the backend scores one prompt over many images), so routing is plain slicing:
no gather/scatter and no host-device synchronisation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from iqabench.models.llm_layers import RMSNorm, SwiGLU, apply_rope, rope

from .config import TextConfig

KVCache = list  # one (keys, values) pair per layer, keys already rotated


VisualSpan = tuple  # (start, end) positions of the visual tokens; None when there are none


class ByModality(nn.Module):
    """Two copies of a module: `multiway[0]` for text positions, `multiway[1]` for visual ones."""

    def __init__(self, text: nn.Module, visual: nn.Module):
        super().__init__()
        self.multiway = nn.ModuleList([text, visual])

    def forward(self, x: torch.Tensor, visual: VisualSpan | None) -> torch.Tensor:
        text, image = self.multiway
        if visual is None or visual[0] >= visual[1]:
            return text(x)
        start, end = visual
        parts = [image(x[:, start:end])]
        if start > 0:
            parts.insert(0, text(x[:, :start]))
        if end < x.shape[1]:
            parts.append(text(x[:, end:]))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class Rotary:
    """LLaMA RoPE in the Hugging Face (rotate-half) layout the checkpoints use, in the model's dtype."""

    def __init__(self, head_dim: int, theta: float):
        self.head_dim, self.theta = head_dim, theta

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = rope(positions, self.head_dim, self.theta)
        return cos.to(dtype), sin.to(dtype)

    apply = staticmethod(apply_rope)


class DecoderAttention(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        d, bias = cfg.hidden_size, cfg.attention_bias
        self.q_proj = nn.Linear(d, d, bias=bias)
        self.k_proj = ByModality(nn.Linear(d, d, bias=bias), nn.Linear(d, d, bias=bias))
        self.v_proj = ByModality(nn.Linear(d, d, bias=bias), nn.Linear(d, d, bias=bias))
        self.o_proj = nn.Linear(d, d, bias=bias)

    def forward(self, x, visual, cos, sin, past=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x, visual).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x, visual).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        q, k = Rotary.apply(q, cos, sin), Rotary.apply(k, cos, sin)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        present = (k, v)
        # causal within the new tokens; new tokens see every cached one
        if past is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1)
        elif t == 1:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            p = k.shape[2] - t
            mask = torch.ones(t, p + t, dtype=torch.bool, device=x.device).tril(diagonal=p)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1)), present


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        norm = lambda: RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.input_layernorm = ByModality(norm(), norm())
        self.self_attn = DecoderAttention(cfg)
        self.post_attention_layernorm = ByModality(norm(), norm())
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x, visual, cos, sin, past=None):
        h, present = self.self_attn(self.input_layernorm(x, visual), visual, cos, sin, past)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x, visual)), present


class ModalityAdaptiveDecoder(nn.Module):
    """Embeddings [B, T, D] + visual span -> final hidden states [B, T, D] (after the last norm)."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = Rotary(cfg.hidden_size // cfg.num_attention_heads, cfg.rope_theta)

    def forward(self, embeds: torch.Tensor, visual: VisualSpan | None, past: KVCache | None = None,
                use_cache: bool = False) -> tuple[torch.Tensor, KVCache | None]:
        start = 0 if past is None else past[0][0].shape[2]
        positions = torch.arange(start, start + embeds.shape[1], device=embeds.device)
        cos, sin = self.rotary.cos_sin(positions, embeds.dtype)
        x, presents = embeds, []
        for i, layer in enumerate(self.layers):
            x, present = layer(x, visual, cos, sin, None if past is None else past[i])
            if use_cache:
                presents.append(present)
        return self.norm(x), (presents if use_cache else None)
