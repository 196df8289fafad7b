"""The mPLUG-Owl3 language model: Qwen2 with hyper-attention layers.

Every layer is a Qwen2 layer (RMSNorms, grouped-query self-attention with q/k/v biases and RoPE,
SwiGLU MLP). The layers named by `hyper_layers` also attend to the image features, inside the
same attention block: the image features pass the layer's own `input_layernorm`, one projection
`v_kv_proj` gives their keys and values, and the (already rotated) text queries attend to them.
The result is mixed into the self-attention output before `o_proj` by a per-head sigmoid gate
computed from that output: out = ctx * (1 - g) + cross * g.

Which images a text position sees: an image becomes visible to the positions after the first
token of its `<|image|>` marker, so a prefix before the first image is left as is, and each image
is seen only by the text that follows it. Image keys carry MI-Rope: every key of an image is
rotated with one position, the position after its marker token (`Media.key_positions`).

Batches: rows are left-padded; `Media` gives each row's images (its crops, in order) and the
positions of their markers. No host-device synchronisation is needed inside the layers.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from iqabench.models.llm_layers import RMSNorm, SwiGLU, apply_rope, left_padded_mask, rope

from .config import TextConfig


@dataclasses.dataclass
class Media:
    """The images of a left-padded batch of rows, for the hyper-attention layers.

    `features`: projected image features [B, N, Lv, D] (N = the most images any row has; rows with
    fewer are zero-padded), `count`: images per row [B], `seen`: [B, T] how many of its row's images
    each position sees, `key_positions`: [B, N] the MI-Rope position of each image's keys."""

    features: torch.Tensor
    count: torch.Tensor
    seen: torch.Tensor
    key_positions: torch.Tensor


class HyperAttention(nn.Module):
    def __init__(self, cfg: TextConfig, hyper: bool):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.theta = cfg.rope_theta
        d, kv = cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim
        self.q_proj = nn.Linear(d, d, bias=True)
        self.k_proj = nn.Linear(d, kv, bias=True)
        self.v_proj = nn.Linear(d, kv, bias=True)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.hyper = hyper
        if hyper:
            self.v_kv_proj = nn.Linear(d, 2 * kv, bias=True)
            self.gate_proj = nn.Sequential(nn.Linear(self.head_dim, self.head_dim), nn.Sigmoid())

    def image_keys_values(self, normed: torch.Tensor, key_positions: torch.Tensor):
        """Normed image features [B, N, Lv, D] -> keys and values [B, H, N*Lv, d], keys MI-Rope'd."""
        b, n, lv, _ = normed.shape
        kv = self.v_kv_proj(normed).view(b, n, lv, self.kv_heads, 2, self.head_dim)  # per head: key then value
        k, v = kv[..., 0, :], kv[..., 1, :]
        cos, sin = rope(key_positions, self.head_dim, self.theta)  # [B, N, d]: one position per image
        k = apply_rope(k.float(), cos[:, :, None, None], sin[:, :, None, None]).to(v.dtype)
        k, v = (t.permute(0, 3, 1, 2, 4).reshape(b, self.kv_heads, n * lv, self.head_dim) for t in (k, v))
        group = self.heads // self.kv_heads
        return k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)

    def forward(self, x, cos, sin, allowed, past=None, image_kv=None, seen=None):
        """x [B, T, D]; cos/sin [B, 1, T, d]; allowed [B, 1, T, T_total] self-attention mask; `past`
        (keys, values) of earlier positions; `image_kv` (keys, values, lv) of this layer's images and
        `seen` [B, T] images visible per position (hyper layers with images only)."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos.to(q.dtype), sin.to(q.dtype)), apply_rope(k, cos.to(k.dtype), sin.to(k.dtype))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        present = (k, v)
        group = self.heads // self.kv_heads
        ctx = F.scaled_dot_product_attention(q, k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1),
                                             attn_mask=allowed)  # [B, H, T, d]
        if image_kv is not None:
            ctx = self._mix_images(q, ctx, image_kv, seen)
        return self.o_proj(ctx.transpose(1, 2).reshape(b, t, -1)), present

    def _mix_images(self, q, ctx, image_kv, seen):
        keys, values, lv = image_kv
        n = keys.shape[2] // lv
        image_index = torch.arange(n, device=q.device).repeat_interleave(lv)  # [N*Lv]
        visible = image_index[None, None, :] < seen[:, :, None]  # [B, T, N*Lv]
        any_visible = seen > 0
        # a position that sees no image keeps its self-attention output; give its (unused) softmax a key
        visible = visible | ~any_visible[:, :, None]
        cross = F.scaled_dot_product_attention(q, keys, values, attn_mask=visible[:, None])
        gate = self.gate_proj(ctx)
        mixed = ctx * (1 - gate) + cross * gate
        return torch.where(any_visible[:, None, :, None], mixed, ctx)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TextConfig, index: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = HyperAttention(cfg, cfg.is_hyper(index))
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)

    def image_kv(self, media: Media | None):
        """This layer's image keys/values (None when it has no hyper attention or there are no images)."""
        if not self.self_attn.hyper or media is None:
            return None
        normed = self.input_layernorm(media.features)  # the shared norm, as the text's
        keys, values = self.self_attn.image_keys_values(normed, media.key_positions)
        return keys, values, media.features.shape[2]

    def forward(self, x, cos, sin, allowed, past=None, image_kv=None, seen=None):
        h, present = self.self_attn(self.input_layernorm(x), cos, sin, allowed, past, image_kv, seen)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), present


@dataclasses.dataclass
class Cache:
    """What a generation step needs: per-layer (keys, values), the attention mask so far, each
    row's next position, the hyper layers' image keys/values and how many images each row has."""

    layers: list
    mask: torch.Tensor
    next_position: torch.Tensor
    image_kv: list
    image_count: torch.Tensor | None


class HyperQwen2(nn.Module):
    """Embeddings [B, T, D] + attention mask + media -> final hidden states [B, T, D] and a cache."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor, media: Media | None = None,
                past: Cache | None = None) -> tuple[torch.Tensor, Cache]:
        """`mask` [B, T] is True at real tokens (left padding). With `past`, `embeds` are new
        tokens after the cached ones and see every image of their row."""
        b, t, _ = embeds.shape
        if past is None:
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
            full_mask = mask
            image_kv = [layer.image_kv(media) for layer in self.layers]
            count = None if media is None else media.count
            seen = None if media is None else media.seen
        else:
            positions = past.next_position[:, None] + mask.long().cumsum(-1) - 1
            full_mask = torch.cat([past.mask, mask], dim=1)
            image_kv, count = past.image_kv, past.image_count
            seen = None if count is None else count[:, None].expand(b, t)
        cos, sin = rope(positions, self.cfg.head_dim, self.cfg.rope_theta)
        cos, sin = cos[:, None], sin[:, None]
        allowed = left_padded_mask(full_mask, t)
        x, layers = embeds, []
        for i, layer in enumerate(self.layers):
            x, present = layer(x, cos, sin, allowed, None if past is None else past.layers[i], image_kv[i], seen)
            layers.append(present)
        next_position = positions[:, -1] + 1
        return self.norm(x), Cache(layers, full_mask, next_position, image_kv, count)
