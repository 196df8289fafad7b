"""mPLUG-Owl2 with queries: several images per prompt and batches of different prompts.

The owl2 backend's model scores one prompt with one image over a batch (its decoder routes one
contiguous visual span). Queries need more: each `<|image|>` of a prompt becomes that image's 65
visual tokens, rows of different lengths are padded on the left, and the modality-adaptive layers
route each position by a per-token visual mask. This module runs the same weights that way: the
vision tower and abstractor as they are, then the decoder layers with a mask instead of a span and
an attention mask with position ids counted from it. On a single-image prompt it gives the
backend's own logits (tests check it).

`Owl2QueryBackend` is the owl2 backend plus `logits(queries)` / `answers(queries)`; `load` is its
loader (the `owl2` backend arch points here once registered so).
"""
from __future__ import annotations

from collections.abc import Sequence

from iqabench.errors import IqaError
from iqabench.models.backend import IMAGE_PLACEHOLDER, BackendSpec, BackendTraits, Query
from iqabench.models.owl2.backend import RESIZE_POLICIES, Owl2Backend

# Owl2 sees one fixed 448x448 view per image and takes several images per prompt
TRAITS = BackendTraits(grid="fixed", multi_image=True, resize=RESIZE_POLICIES)


def owl2_text(query: Query) -> str:
    """The conversation text: `USER: <|image|>...{question} ASSISTANT:` (the official template,
    images first unless the text places them), or the whole template; then the answer prefix."""
    if query.template:
        text = query.text
    else:
        user = query.folded_text()
        if IMAGE_PLACEHOLDER not in user:
            user = IMAGE_PLACEHOLDER * len(query.images) + user
        text = f"USER: {user} ASSISTANT:"
    return query.answer_start(text)


def _route(module, x, visual):
    """A ByModality module applied position by position: multiway[1] where `visual`, else [0]."""
    text, image = module.multiway
    if not bool(visual.any()):
        return text(x)
    out = x.new_empty((*x.shape[:-1], _out_features(text, x)))
    out[~visual] = text(x[~visual])
    out[visual] = image(x[visual])
    return out


def _out_features(module, x) -> int:
    return getattr(module, "out_features", x.shape[-1])


class Owl2QueryBackend(Owl2Backend):
    multi_image = TRAITS.multi_image

    # -- inputs ---------------------------------------------------------------------------
    def _rows(self, queries: Sequence[Query]):
        """Left-padded embeddings [B, T, D], visual mask [B, T], attention mask [B, T]."""
        import torch

        from .owl2.modeling import IMAGE_TOKEN_INDEX

        if not queries:
            raise IqaError("no queries to score")
        model = self.model
        images = [im for q in queries for im in q.images]
        feats = model.encode_images(self.normalize(self.to_pixels(images)).to(self.dtype)) if images else None
        embed = model.decoder.embed_tokens
        rows, visual, used = [], [], 0
        for q in queries:
            ids = self.prompt_ids(owl2_text(q))
            cuts = (ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist()
            if len(cuts) != len(q.images):
                raise IqaError(f"owl2: the prompt has {len(cuts)} image placeholders for {len(q.images)} images")
            parts, kinds, start = [], [], 0
            for cut in cuts + [len(ids)]:
                if cut > start:
                    parts.append(embed(ids[start:cut]).to(self.dtype))
                    kinds.append(torch.zeros(cut - start, dtype=torch.bool))
                if cut < len(ids):
                    parts.append(feats[used])
                    kinds.append(torch.ones(feats.shape[1], dtype=torch.bool))
                    used += 1
                start = cut + 1
            rows.append(torch.cat(parts))
            visual.append(torch.cat(kinds))
        width = max(r.shape[0] for r in rows)
        dim = rows[0].shape[-1]
        embeds = torch.stack([torch.cat([r.new_zeros(width - r.shape[0], dim), r]) for r in rows])
        vis = torch.stack([torch.cat([torch.zeros(width - v.shape[0], dtype=torch.bool), v]) for v in visual])
        mask = torch.stack([torch.arange(width) >= width - r.shape[0] for r in rows])
        return embeds, vis.to(self.device), mask.to(self.device)

    # -- decoder with a visual mask, an attention mask and a cache ---------------------------------
    def _decode(self, x, visual, mask, past=None):
        """Hidden states [B, T, D] of the new positions and the cache (keys, values, mask) per layer."""
        import torch
        import torch.nn.functional as F

        from iqabench.models.llm_layers import left_padded_mask

        decoder = self.model.decoder
        full_mask = mask if past is None else torch.cat([past[0][2], mask], dim=1)
        positions = (full_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -x.shape[1]:]
        cos, sin = decoder.rotary.cos_sin(positions.reshape(-1), x.dtype)
        b, t = x.shape[:2]
        cos, sin = cos.view(b, 1, t, -1), sin.view(b, 1, t, -1)
        allowed = left_padded_mask(full_mask, t)
        presents = []
        for i, layer in enumerate(decoder.layers):
            attn = layer.self_attn
            h = _route(layer.input_layernorm, x, visual)
            q = attn.q_proj(h).view(b, t, attn.heads, attn.head_dim).transpose(1, 2)
            k = _route(attn.k_proj, h, visual).view(b, t, attn.heads, attn.head_dim).transpose(1, 2)
            v = _route(attn.v_proj, h, visual).view(b, t, attn.heads, attn.head_dim).transpose(1, 2)
            q, k = decoder.rotary.apply(q, cos, sin), decoder.rotary.apply(k, cos, sin)
            if past is not None:
                k, v = torch.cat([past[i][0], k], dim=2), torch.cat([past[i][1], v], dim=2)
            presents.append((k, v, full_mask))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
            x = x + attn.o_proj(out.transpose(1, 2).reshape(b, t, -1))
            x = x + layer.mlp(_route(layer.post_attention_layernorm, x, visual))
        return decoder.norm(x), presents

    # -- the query interface ----------------------------------------------------------------
    def logits(self, queries: Sequence[Query]):
        embeds, visual, mask = self._rows(queries)
        hidden, _ = self._decode(embeds, visual, mask)
        return self.model.lm_head(hidden[:, -1]).float()

    def answers(self, queries: Sequence[Query], max_new_tokens: int = 8) -> list[str]:
        import torch

        from iqabench.models.llm_layers import greedy_tokens

        eos = self.model.config.text.eos_token_id
        with torch.no_grad():
            embeds, visual, mask = self._rows(queries)
            hidden, cache = self._decode(embeds, visual, mask)

            def advance(nxt):
                nonlocal cache
                step_embeds = self.model.decoder.embed_tokens(nxt)[:, None].to(embeds.dtype)
                ones = torch.ones(len(nxt), 1, dtype=torch.bool, device=embeds.device)
                hidden, cache = self._decode(step_embeds, ~ones, ones, past=cache)  # generated tokens are text
                return hidden

            tokens, before = greedy_tokens(hidden, self.model.lm_head, advance, max_new_tokens,
                                           torch.tensor([eos], device=embeds.device))
        new = torch.where(before, torch.full_like(tokens, eos), tokens).tolist()
        return [text.strip() for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


def load(spec: BackendSpec, device: str = "cpu") -> Owl2QueryBackend:
    return Owl2QueryBackend(spec, device)


def traits(arch: str) -> BackendTraits:
    return TRAITS
