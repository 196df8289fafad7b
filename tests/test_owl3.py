"""mPLUG-Owl3 in-process (iqabench/models/owl3): a tiny RANDOM model of the real architecture
(hyper-attention Qwen2, SigLIP, projector, the official crops) built in the official checkpoint
layout, loaded by its registered arch through the path real weights take, and checked against a
plain loop-by-loop forward written here from the architecture's description (raw official keys,
no module of the package). Batches of any mix of images and prompts score each row as alone."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (a test dependency: a missing one fails, never skips)

torch.set_num_threads(1)
os.environ["HF_HUB_OFFLINE"] = "1"

from PIL import Image

from iqabench import registry
from iqabench.models.backend import BackendSpec, Query, load_backend

QUESTION = "Rate the quality of the image."
SHAPES = [(40, 70), (90, 50), (28, 28), (64, 64), (33, 47), (100, 30)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return registry.tiny_models.get("owl3")(tmp_path_factory.mktemp("tiny_owl3") / "m", seed=1)


@pytest.fixture(scope="module")
def owl3(folder):
    return load_backend(BackendSpec(arch="owl3", path=str(folder)))


@pytest.fixture(scope="module")
def state(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (*SHAPES[i % len(SHAPES)], 3), dtype=np.uint8)) for i in range(n)]


# -- a plain forward from the raw official keys --------------------------------------------------
def _rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rope(x, pos, theta):
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2).float() / d)
    ang = torch.as_tensor(pos, dtype=torch.float32)[..., None] * inv
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    rot = torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rot * sin


def _softmax_attend(q, k, v):
    return torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), -1) @ v


def reference_logits(sd, cfg, ids, marks, views):
    """Last-position logits of one unpadded row, computed position by position."""
    F = torch.nn.functional
    v = cfg["vision_config"]
    P = "vision_model."
    if views is None:  # a text-only row
        return _text_logits(sd, cfg, ids, marks, None)
    x = F.conv2d(views, sd[P + "embeddings.patch_embedding.weight"], sd[P + "embeddings.patch_embedding.bias"],
                 stride=v["patch_size"]).flatten(2).transpose(1, 2) + sd[P + "embeddings.position_embedding.weight"]
    vh = v["num_attention_heads"]
    for i in range(v["num_hidden_layers"] - 1):  # the second-to-last hidden state
        p = f"{P}encoder.layers.{i}."
        lin = lambda a, n, p=p: F.linear(a, sd[p + n + ".weight"], sd[p + n + ".bias"])
        a = F.layer_norm(x, x.shape[-1:], sd[p + "layer_norm1.weight"], sd[p + "layer_norm1.bias"], 1e-6)
        q, k, vv = (lin(a, f"self_attn.{n}_proj").unflatten(-1, (vh, -1)) for n in "qkv")
        out = torch.stack([torch.stack([_softmax_attend(q[n, :, h], k[n, :, h], vv[n, :, h]) for h in range(vh)], 1)
                           for n in range(len(x))]).flatten(2)
        x = x + lin(out, "self_attn.out_proj")
        a = F.layer_norm(x, x.shape[-1:], sd[p + "layer_norm2.weight"], sd[p + "layer_norm2.bias"], 1e-6)
        x = x + lin(F.gelu(lin(a, "mlp.fc1"), approximate="tanh"), "mlp.fc2")
    feats = F.linear(x, sd["vision2text_model.weight"], sd["vision2text_model.bias"])  # [N, Lv, D]
    return _text_logits(sd, cfg, ids, marks, feats)


def _text_logits(sd, t, ids, marks, feats):
    F = torch.nn.functional
    H, KV, eps, theta = t["num_attention_heads"], t["num_key_value_heads"], t["rms_norm_eps"], t["rope_theta"]
    d = t["hidden_size"] // H
    group = H // KV
    T = len(ids)
    seen = [sum(pos > m for m in marks) for pos in range(T)]
    h = sd["language_model.model.embed_tokens.weight"][torch.tensor(ids)]
    for i in range(t["num_hidden_layers"]):
        p = f"language_model.model.layers.{i}."
        lin = lambda a, n, bias=True, p=p: F.linear(a, sd[p + n + ".weight"], sd[p + n + ".bias"] if bias else None)
        a = _rms(h, sd[p + "input_layernorm.weight"], eps)
        q = _rope(lin(a, "self_attn.q_proj").view(T, H, d).transpose(0, 1), torch.arange(T), theta)
        k = _rope(lin(a, "self_attn.k_proj").view(T, KV, d).transpose(0, 1), torch.arange(T), theta)
        vv = lin(a, "self_attn.v_proj").view(T, KV, d).transpose(0, 1)
        ctx = torch.zeros(T, H, d)
        for pos in range(T):
            for hh in range(H):
                ctx[pos, hh] = _softmax_attend(q[hh, pos:pos + 1], k[hh // group, :pos + 1], vv[hh // group, :pos + 1])[0]
        if i + 1 in t["hyper_layers"] and marks:
            img = _rms(feats, sd[p + "input_layernorm.weight"], eps)
            kv = lin(img, "self_attn.v_kv_proj").view(len(feats), -1, KV, 2, d)
            keys = torch.stack([_rope(kv[n, :, :, 0], marks[n] + 1, theta) for n in range(len(feats))])
            vals = kv[:, :, :, 1]
            for pos in range(T):
                if not seen[pos]:
                    continue
                for hh in range(H):
                    K = keys[: seen[pos], :, hh // group].reshape(-1, d)
                    V = vals[: seen[pos], :, hh // group].reshape(-1, d)
                    cross = _softmax_attend(q[hh, pos:pos + 1], K, V)[0]
                    g = torch.sigmoid(F.linear(ctx[pos, hh], sd[p + "self_attn.gate_proj.0.weight"],
                                               sd[p + "self_attn.gate_proj.0.bias"]))
                    ctx[pos, hh] = ctx[pos, hh] * (1 - g) + cross * g
        h = h + lin(ctx.reshape(T, -1), "self_attn.o_proj", bias=False)
        a = _rms(h, sd[p + "post_attention_layernorm.weight"], eps)
        h = h + lin(F.silu(lin(a, "mlp.gate_proj", False)) * lin(a, "mlp.up_proj", False), "mlp.down_proj", False)
    h = _rms(h, sd["language_model.model.norm.weight"], eps)
    return F.linear(h[-1], sd["language_model.lm_head.weight"])[None]


def _reference(owl3, state, query):
    import json

    cfg = json.loads((owl3.folder / "config.json").read_text())
    ids, marks, views = owl3._row(query)
    with torch.no_grad():
        return reference_logits(state, cfg, ids, marks, views)


# -- architecture ---------------------------------------------------------------------------------
def test_logits_equal_a_plain_forward(owl3, state):
    a, b = _images(2, seed=3)
    for query in (Query((a,), QUESTION, system="You rate images."), Query((a, b), "Compare <|image|> with <|image|>."),
                  Query((), "No image here.")):
        with torch.no_grad():
            got = owl3.logits([query])
        torch.testing.assert_close(got, _reference(owl3, state, query), atol=1e-5, rtol=0)


def test_batch_of_four_scores_as_four_batches_of_one(owl3):
    images = _images(4, seed=1)  # different shapes: different crop grids and prompt lengths
    queries = [Query((im,), QUESTION) for im in images]
    with torch.no_grad():
        one = torch.cat([owl3.logits([q]) for q in queries])
        four = owl3.logits(queries)
    torch.testing.assert_close(four, one, atol=1e-5, rtol=0)
    assert float((one[0] - one[1]).abs().max()) > 1e-3  # the image reaches the logits
    assert owl3.answers(queries, max_new_tokens=3) == [owl3.answers([q], max_new_tokens=3)[0] for q in queries]


def test_two_image_queries_depend_on_the_second_image_and_pad_next_to_one_image_rows(owl3):
    a, b = _images(2, seed=6)
    pairs = [Query((a, x), "Compare <|image|> with <|image|>.") for x in (b, a)]
    single = Query((a,), QUESTION)
    with torch.no_grad():
        logits = owl3.logits(pairs)
        together = owl3.logits([single, pairs[0]])
        alone = torch.cat([owl3.logits([single]), owl3.logits([pairs[0]])])
    assert float((logits[0] - logits[1]).abs().max()) > 1e-3
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_text_before_the_first_image_does_not_see_it(owl3):
    """A prefix before the first image marker is the same with any image (hyper attention sees
    only images whose marker came earlier): the logits after that prefix do not change."""
    a, b = _images(2, seed=8)
    rows = [owl3.inputs([Query((im,), "Rate <|image|>", template=True)]) for im in (a, b)]
    with torch.no_grad():
        hidden = [owl3.model.decoder(owl3.model.decoder.embed_tokens(ids), mask, media)[0] for ids, mask, media in rows]
    torch.testing.assert_close(hidden[0][:, :1], hidden[1][:, :1], atol=0, rtol=0)
    assert float((hidden[0][:, -1] - hidden[1][:, -1]).abs().max()) > 1e-4
