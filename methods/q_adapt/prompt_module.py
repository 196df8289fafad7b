"""The instruction-adaptive visual prompt of Q-Adapt (seed 002, section 3.3.2).

Given the vision encoder's features F_v [B, n, d_v] and the instruction's token ids:
- V-T generator (eq. 3): a Q-Former (InstructBLIP's, section 4.1) reads the instruction tokens
  together with `queries` learnable queries and cross-attends to f(F_v), a linear map of F_v to
  the Q-Former's encoder width followed by a LayerNorm (InstructBLIP's `ln_vision`). Its query
  outputs are F_vt [B, m, d].
- T-V prompter (eq. 4): single-head cross-attention with F_v as queries and f(F_vt) (a linear
  map d -> d_v) as keys and values gives F~_tv [B, n, d_v].
- gated fusion (eq. 5): a per-token gate g = sigmoid(MLP(LayerNorm([F_v, F~_tv]))), the MLP
  2 d_v -> gate_hidden -> 1 with ReLU and dropout; F_tv = LayerNorm((1 - g) F_v + g F~_tv).
The prompt enters the model as F_v + scale * F_tv before the connector (the public code's
"gated residual addition" uses scale 0.1).

Sizes default to the paper's: a BERT-base Q-Former (12 layers, 768 wide, 12 heads, FFN 3072,
cross-attention every 2nd layer onto a 1408-wide encoder, separate query FFNs), 32 queries, a
one-head T-V cross-attention; the gate MLP width (2048) and the 0.1 scale are the public code's.
The Q-Former is transformers' InstructBlipQFormerModel built from its own config class.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class PromptSizes:
    feature_dim: int  # d_v: the width of the vision features the connector reads
    vocab_size: int  # of the tokenizer that encodes the instruction for the Q-Former
    qformer_layers: int = 12
    qformer_hidden: int = 768
    qformer_heads: int = 12
    qformer_intermediate: int = 3072
    qformer_cross_every: int = 2
    qformer_width: int = 1408  # encoder width the Q-Former's cross-attention reads (EVA ViT-g in InstructBLIP)
    qformer_max_positions: int = 512
    queries: int = 32
    gate_hidden: int = 2048
    dropout: float = 0.1
    scale: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def qformer_config(sizes: PromptSizes):
    from transformers import InstructBlipQFormerConfig

    return InstructBlipQFormerConfig(
        vocab_size=sizes.vocab_size, hidden_size=sizes.qformer_hidden, num_hidden_layers=sizes.qformer_layers,
        num_attention_heads=sizes.qformer_heads, intermediate_size=sizes.qformer_intermediate,
        cross_attention_frequency=sizes.qformer_cross_every, encoder_hidden_size=sizes.qformer_width,
        max_position_embeddings=sizes.qformer_max_positions, hidden_dropout_prob=sizes.dropout,
        attention_probs_dropout_prob=sizes.dropout, pad_token_id=0)


class VTGenerator(nn.Module):
    """Eq. 3: F_vt = Q-Former(queries, instruction tokens, f(F_v))."""

    def __init__(self, sizes: PromptSizes):
        super().__init__()
        from transformers import InstructBlipQFormerModel

        self.vision_proj = nn.Linear(sizes.feature_dim, sizes.qformer_width)
        self.vision_norm = nn.LayerNorm(sizes.qformer_width)
        self.query_tokens = nn.Parameter(torch.zeros(1, sizes.queries, sizes.qformer_hidden).normal_(std=0.02))
        self.qformer = InstructBlipQFormerModel(qformer_config(sizes))

    def forward(self, features: torch.Tensor, instruction_ids: torch.Tensor) -> torch.Tensor:
        batch = features.shape[0]
        visual = self.vision_norm(self.vision_proj(features))
        queries = self.query_tokens.expand(batch, -1, -1)
        ids = instruction_ids.view(1, -1).expand(batch, -1)
        out = self.qformer(input_ids=ids, query_embeds=queries, encoder_hidden_states=visual)
        return out.last_hidden_state[:, : queries.shape[1]]


class TVPrompter(nn.Module):
    """Eqs. 4-5: one-head cross-attention from F_v to f(F_vt), then the sigmoid-gated fusion."""

    def __init__(self, sizes: PromptSizes):
        super().__init__()
        d = sizes.feature_dim
        self.text_proj = nn.Linear(sizes.qformer_hidden, d)
        self.cross_attn = nn.MultiheadAttention(d, num_heads=1, batch_first=True)
        self.gate_norm = nn.LayerNorm(2 * d)
        self.gate = nn.Sequential(nn.Linear(2 * d, sizes.gate_hidden), nn.ReLU(), nn.Dropout(sizes.dropout),
                                  nn.Linear(sizes.gate_hidden, 1))
        self.out_norm = nn.LayerNorm(d)

    def forward(self, features: torch.Tensor, vt: torch.Tensor) -> torch.Tensor:
        text = self.text_proj(vt)
        attended, _ = self.cross_attn(features, text, text, need_weights=False)
        g = torch.sigmoid(self.gate(self.gate_norm(torch.cat([features, attended], dim=-1))))
        return self.out_norm((1 - g) * features + g * attended)


class InstructionAdaptivePrompt(nn.Module):
    """F_v, instruction ids -> F_v + scale * F_tv (same shape and dtype as F_v)."""

    def __init__(self, sizes: PromptSizes):
        super().__init__()
        self.sizes = sizes
        self.generator = VTGenerator(sizes)
        self.prompter = TVPrompter(sizes)

    def forward(self, features: torch.Tensor, instruction_ids: torch.Tensor) -> torch.Tensor:
        if features.dim() != 3 or features.shape[-1] != self.sizes.feature_dim:
            raise ValueError(f"q-adapt prompt: expected features [B, n, {self.sizes.feature_dim}], "
                             f"got {tuple(features.shape)}")
        x = features.to(self.prompter.text_proj.weight.dtype)
        prompt = self.prompter(x, self.generator(x, instruction_ids))
        return (x + self.sizes.scale * prompt).to(features.dtype)


def count_parameters(sizes: PromptSizes) -> dict[str, int]:
    """Trainable parameters of each part, counted on the meta device (no memory used)."""
    with torch.device("meta"):
        module = InstructionAdaptivePrompt(sizes)
    gen, pr = module.generator, module.prompter
    count = lambda *mods: sum(p.numel() for m in mods for p in m.parameters())
    out = {"v-t generator: q-former": count(gen.qformer),
           "v-t generator: queries, f(F_v), ln_vision": gen.query_tokens.numel() + count(gen.vision_proj, gen.vision_norm),
           "t-v prompter: f(F_vt), one-head cross-attention": count(pr.text_proj, pr.cross_attn),
           "gated fusion: gate MLP, norms": count(pr.gate_norm, pr.gate, pr.out_norm)}
    out["total"] = count(module)
    return out
