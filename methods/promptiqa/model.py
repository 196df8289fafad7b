"""The PromptIQA network (seed 003, sections 3.2 B-E) with its MoNet visual encoder.

    image ──ViT (4 block outputs)──> 3 multi-view attention (MAL) modules ──> fusion MAL ──> ViT block
          ──> conv head ──> visual feature v ∈ R^128
    ISP (image, score) ──> [v, score expanded to 128] ──3 ViT blocks──> mean ──FC 128→64→128──> prompt token
    k prompt tokens ──3 ViT blocks (ISPP fusion)──> [v, fused tokens] ──8 ViT blocks──> LayerNorm
          ──> first token ──FC 128→64→1, sigmoid──> score in [0, 1]

The visual encoder is MoNet (the paper's ref. [2]) on a timm ViT-B/8 at 224 px, tapped after
blocks 3, 6, 9 and 12 (the authors' public code); the seed itself names MoNet but no backbone.
Module and parameter names follow the authors' released state dict (`vit`, `MALs`, `fusion_mal`,
`block`, `cnn`, `i_p_fusion`, `mlp`, `prompt_fusion`, `blocks`, `norm`, `score_block`), so their
published checkpoint loads unchanged (`weights.load_full`).

Training sees groups of k + 1 ISPs from one dataset: every image of a group is a target once,
with the other k as its prompt (`forward_group`). Scoring encodes a fixed prompt once
(`prompt_tokens`) and regresses any image against it (`predict`).
"""
from __future__ import annotations

import dataclasses
from functools import partial

import torch
from torch import nn

FEATURE_DIM = 128  # M: the regressor maps 128 -> 64 -> 1 (section 3.2 E)


@dataclasses.dataclass(frozen=True)
class NetConfig:
    """The sizes of one PromptIQA network. `PRESETS["vit_b8"]` is the paper's."""

    img_size: int
    patch_size: int
    embed_dim: int  # N of the seed: the ViT width, also the width of MoNet's attention modules
    depth: int
    num_heads: int
    taps: tuple[int, ...]  # ViT blocks (0-based) whose outputs feed MoNet
    n_views: int = 3  # MAL modules, each a different "opinion" over the 4 tapped features
    prompt_encoder_blocks: int = 3  # P(.), section 3.2 C
    prompt_fusion_blocks: int = 3  # FM_ISPP, section 3.2 D
    fusion_blocks: int = 8  # FM_IP, section 3.2 D
    fusion_heads: int = 4

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    def head_padding(self) -> tuple[int, int, int]:
        """The conv head of the paper's 28 x 28 grid has no padding (28 -> 24 -> 12 -> 10 -> 5 -> 3 -> 1);
        a smaller grid (a test model) keeps the sizes with 'same' padding instead."""
        return (0, 0, 0) if self.grid >= 28 else (2, 1, 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NetConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["taps"] = tuple(values["taps"])
        return cls(**values)


PRESETS: dict[str, NetConfig] = {
    # the paper's: timm vit_base_patch8_224, taps after blocks 3, 6, 9, 12
    "vit_b8": NetConfig(img_size=224, patch_size=8, embed_dim=768, depth=12, num_heads=12, taps=(2, 5, 8, 11)),
    # tests and CPU trials: the same architecture on a 64-px, 32-wide, 4-block ViT
    "vit_tiny": NetConfig(img_size=64, patch_size=8, embed_dim=32, depth=4, num_heads=2, taps=(0, 1, 2, 3)),
}


class GlobalAttention(nn.Module):
    """Single-head attention over the rows of a (B, C, N) tensor with a residual (MAL's channel- and
    pixel-wise attention)."""

    def __init__(self, dim: int, drop: float = 0.1):
        super().__init__()
        self.c_q = nn.Linear(dim, dim)
        self.c_k = nn.Linear(dim, dim)
        self.c_v = nn.Linear(dim, dim)
        self.scale = dim ** -0.5
        self.proj_drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        attn = torch.softmax(self.c_q(x) @ self.c_k(x).transpose(-2, -1) * self.scale, dim=-1)
        # The reference reads the (N, C) transpose back as (C, N); kept so published weights agree.
        out = (attn @ self.c_v(x)).transpose(1, 2).reshape(b, c, n)
        return self.proj_drop(out) + x


class PixelSelfAttention(nn.Module):
    """Self-attention over the pixels of one feature map, gated by a learnt scalar (starts at 0)."""

    def __init__(self, dim: int):
        super().__init__()
        self.qConv = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.kConv = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.vConv = nn.Conv2d(dim, dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.qConv(x).flatten(2).transpose(1, 2)  # b, hw, c/8
        k = self.kConv(x).flatten(2)  # b, c/8, hw
        attn = torch.softmax(q @ k, dim=-1)  # b, hw, hw
        out = (self.vConv(x).flatten(2) @ attn.transpose(1, 2)).view(b, c, h, w)
        return self.gamma * out + x


class MultiViewAttention(nn.Module):
    """MoNet's MAL: per-view pixel self-attention, then pixel-wise and channel-wise attention over the
    stacked views, averaged into one (B, C, H*W) feature."""

    def __init__(self, in_dim: int, feature_num: int, grid: int):
        super().__init__()
        self.channel_attention = GlobalAttention(in_dim * feature_num)
        self.feature_attention = GlobalAttention(grid * grid * feature_num)
        self.attention_module = nn.ModuleList(PixelSelfAttention(in_dim) for _ in range(feature_num))
        self.in_dim, self.feature_num = in_dim, feature_num

    def forward(self, views: torch.Tensor) -> torch.Tensor:  # views: n, b, c, h, w
        n, b, c, h, w = views.shape
        views = torch.stack([m(v) for m, v in zip(self.attention_module, views)])
        x = views.permute(1, 0, 2, 3, 4).reshape(b, n * c, h * w)
        pixel = self.feature_attention(x.reshape(b, c, n * h * w)).reshape(b, n * c, h * w)
        channel = self.channel_attention(x.transpose(1, 2)).transpose(1, 2)
        return ((pixel + channel) / 2).view(b, n, c, h * w).mean(dim=1)


def _blocks(count: int, dim: int, heads: int, **kwargs) -> nn.Sequential:
    from timm.models.vision_transformer import Block

    return nn.Sequential(*[Block(dim, heads, **kwargs) for _ in range(count)])


class PromptIQANet(nn.Module):
    def __init__(self, config: NetConfig):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        c, d, m = config, config.embed_dim, FEATURE_DIM
        if c.img_size % c.patch_size or len(c.taps) != 4 or max(c.taps) >= c.depth:
            raise ValueError(f"PromptIQA: bad network sizes {c}")
        self.config = config
        self.vit = VisionTransformer(img_size=c.img_size, patch_size=c.patch_size, embed_dim=d, depth=c.depth,
                                     num_heads=c.num_heads, num_classes=0)
        self.vit.norm = nn.Identity()  # MoNet reads raw block outputs; the final norm is unused
        self.MALs = nn.ModuleList(MultiViewAttention(d, 4, c.grid) for _ in range(c.n_views))
        self.fusion_mal = MultiViewAttention(d, c.n_views, c.grid)
        # timm of the authors' time used torch's LayerNorm (eps 1e-5) in these blocks
        ln5 = partial(nn.LayerNorm, eps=1e-5)
        self.block = _blocks(1, d, c.num_heads, norm_layer=ln5)[0]
        p1, p2, p3 = c.head_padding()
        self.cnn = nn.Sequential(
            nn.Conv2d(d, 256, 5, padding=p1), nn.BatchNorm2d(256), nn.ReLU(inplace=True), nn.AvgPool2d(2),
            nn.Conv2d(256, m, 3, padding=p2), nn.BatchNorm2d(m), nn.ReLU(inplace=True), nn.AvgPool2d(2),
            nn.Conv2d(m, m, 3, padding=p3), nn.BatchNorm2d(m), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
        )
        self.i_p_fusion = _blocks(c.prompt_encoder_blocks, m, c.fusion_heads, norm_layer=ln5)
        self.mlp = nn.Sequential(nn.Linear(m, m // 2), nn.GELU(), nn.Linear(m // 2, m))
        self.prompt_fusion = _blocks(c.prompt_fusion_blocks, m, c.fusion_heads, norm_layer=ln5)
        self.blocks = _blocks(c.fusion_blocks, m, c.fusion_heads, qkv_bias=True,
                              norm_layer=partial(nn.LayerNorm, eps=1e-6))
        self.norm = nn.LayerNorm(m)
        self.score_block = nn.Sequential(nn.Linear(m, m // 2), nn.ReLU(), nn.Dropout(0.1), nn.Linear(m // 2, 1),
                                         nn.Sigmoid())

    # -- the parts ---------------------------------------------------------------------------------
    def visual_features(self, images: torch.Tensor) -> torch.Tensor:
        """MoNet: normalised images (B, 3, S, S) -> (B, 128)."""
        c = self.config
        taps = self.vit.forward_intermediates(images, indices=list(c.taps), norm=False, output_fmt="NCHW",
                                              intermediates_only=True)  # 4 x (b, d, g, g), class token dropped
        views = torch.stack(taps)
        opinions = torch.stack([mal(views) for mal in self.MALs])  # n_views, b, d, g*g
        b, d, g = images.shape[0], c.embed_dim, c.grid
        fused = self.fusion_mal(opinions.view(c.n_views, b, d, g, g))  # b, d, g*g
        fused = self.block(fused.transpose(1, 2)).transpose(1, 2).reshape(b, d, g, g)
        return self.cnn(fused).flatten(1)

    def isp_tokens(self, features: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Prompt encoder: (K, 128) visual features and K scores -> K prompt tokens (K, 128)."""
        pair = torch.stack([features, scores.to(features.dtype).view(-1, 1).expand_as(features)], dim=1)
        return self.mlp(self.i_p_fusion(pair).mean(dim=1))

    def regress(self, features: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """(B, 128) image features, (B, K, 128) prompt tokens -> (B,) scores in [0, 1]."""
        fused = self.prompt_fusion(prompts)
        tokens = self.norm(self.blocks(torch.cat([features.unsqueeze(1), fused], dim=1)))
        return self.score_block(tokens[:, 0]).view(-1)

    # -- training and scoring ------------------------------------------------------------------------
    def forward_group(self, images: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """One group of n ISPs: each image is scored with the other n - 1 pairs as its prompt."""
        n = images.shape[0]
        if n < 2:
            raise ValueError("a training group needs at least 2 image-score pairs")
        features = self.visual_features(images)
        tokens = self.isp_tokens(features, scores)
        others = torch.tensor([[j for j in range(n) if j != i] for i in range(n)], device=images.device)
        return self.regress(features, tokens[others])

    def prompt_tokens(self, images: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.isp_tokens(self.visual_features(images), scores)

    def predict(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        features = self.visual_features(images)
        return self.regress(features, tokens.unsqueeze(0).expand(features.shape[0], -1, -1))


PARTS = {"visual encoder: ViT": ("vit",), "visual encoder: MoNet (MALs, fusion MAL, block, conv head)":
         ("MALs", "fusion_mal", "block", "cnn"), "prompt encoder (3 ViT blocks + FC)": ("i_p_fusion", "mlp"),
         "ISPP fusion (3 ViT blocks)": ("prompt_fusion",), "image-prompt fusion (8 ViT blocks + norm)": ("blocks", "norm"),
         "regressor (FC 128-64-1)": ("score_block",)}


def parameter_counts(net: nn.Module) -> dict[str, int]:
    """Parameters per part of the network, and the total."""
    out = {}
    for part, prefixes in PARTS.items():
        out[part] = sum(p.numel() for name, p in net.named_parameters() if name.split(".")[0] in prefixes)
    out["total"] = sum(p.numel() for p in net.parameters())
    return out
