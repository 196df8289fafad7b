"""mPLUG-Owl3 checkpoints: the explicit key mapping (an unmapped, missing or misshapen key is one
error naming it; the vision parts the model never runs may be present or absent), safetensors
only, the official config facts, the processor's crop grids and slices, and the parameter count
at the real configuration (meta tensors, no weights)."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (a test dependency: a missing one fails, never skips)

torch.set_num_threads(1)
os.environ["HF_HUB_OFFLINE"] = "1"

from PIL import Image

from iqabench.errors import IqaError
from iqabench.models.backend import BackendSpec, Query, load_backend
from iqabench.models.owl3 import processor
from iqabench.models.owl3.config import Owl3Config
from iqabench.models.tiny_owl3 import build_tiny_owl3

# mPLUG/mPLUG-Owl3-7B-240728 config.json, the fields that size the model (facts from the hub file)
REAL_CONFIG = {
    "model_type": "mplugowl3", "hidden_size": 3584, "intermediate_size": 18944, "num_attention_heads": 28,
    "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "max_position_embeddings": 32768, "vocab_size": 151851, "tie_word_embeddings": False, "use_sliding_window": False,
    "hyper_layers": [1, 9, 17, 25], "hidden_act": "silu",
    "vision_config": {"hidden_size": 1152, "image_size": 384, "intermediate_size": 4304,
                      "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
                      "patch_size": 14},
}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return build_tiny_owl3(tmp_path_factory.mktemp("owl3src") / "m", seed=2)


def _copy(source, tmp_path, edit=None):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "copy"
    shutil.copytree(source, folder)
    if edit is not None:
        state = load_file(str(folder / "model.safetensors"))
        edit(state)
        save_file(state, str(folder / "model.safetensors"))
    return folder


def _load(folder):
    return load_backend(BackendSpec(arch="owl3", path=str(folder)))


def test_a_key_that_maps_to_nothing_is_named(source, tmp_path):
    folder = _copy(source, tmp_path, lambda s: s.__setitem__("language_model.model.layers.0.self_attn.extra", torch.zeros(2)))
    with pytest.raises(IqaError, match=r"map to nothing: language_model\.model\.layers\.0\.self_attn\.extra"):
        _load(folder)


def test_a_missing_parameter_is_named_by_its_official_key(source, tmp_path):
    folder = _copy(source, tmp_path, lambda s: s.pop("language_model.model.layers.0.self_attn.v_kv_proj.weight"))
    with pytest.raises(IqaError, match=r"missing .*language_model\.model\.layers\.0\.self_attn\.v_kv_proj\.weight"):
        _load(folder)


def test_a_misshapen_key_is_named_with_both_shapes(source, tmp_path):
    folder = _copy(source, tmp_path, lambda s: s.__setitem__("vision_model.head.probe", torch.zeros(1, 2, 3)))
    with pytest.raises(IqaError, match=r"vision_model\.head\.probe .* shape \(1, 2, 3\), config\.json implies \(1, 1, 32\)"):
        _load(folder)


def test_the_vision_parts_never_run_are_optional(source, tmp_path):
    def drop(state):
        for key in [k for k in state if k.startswith(("vision_model.head.", "vision_model.post_layernorm.",
                                                          "vision_model.encoder.layers.2."))]:
            state.pop(key)

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    query = [Query((image,), "Rate the quality of the image.")]
    with torch.no_grad():
        full, slim = _load(source).logits(query), _load(_copy(source, tmp_path, drop)).logits(query)
    torch.testing.assert_close(full, slim, atol=1e-6, rtol=0)  # float32 reduction order only


def test_pickle_checkpoints_are_not_read(source, tmp_path):
    folder = _copy(source, tmp_path)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(IqaError, match="no \\*.safetensors .*pytorch_model.bin.*pickle files are not read"):
        _load(folder)


def test_config_facts_and_refusals(tmp_path):
    config = Owl3Config.from_official(REAL_CONFIG)
    assert [i for i in range(28) if config.text.is_hyper(i)] == [0, 8, 16, 24]
    assert config.text.head_dim == 128 and config.vision.grid == 27 and config.vision.used_layers == 26
    with pytest.raises(IqaError, match="not an mPLUG-Owl3 config"):
        Owl3Config.from_official({**REAL_CONFIG, "model_type": "qwen2"})
    with pytest.raises(IqaError, match="use_sliding_window"):
        Owl3Config.from_official({**REAL_CONFIG, "use_sliding_window": True})
    with pytest.raises(IqaError, match="hyper_layers"):
        Owl3Config.from_official({**REAL_CONFIG, "hyper_layers": [0, 29]})


def test_parameter_count_at_the_real_configuration():
    """Counted on meta tensors, against the count written out from the architecture: the
    language model (embeddings, 28 layers of GQA attention with q/k/v biases and SwiGLU, the
    hyper layers' v_kv_proj and per-head gate, final norm, LM head), SigLIP's 26 layers that
    run, its embeddings, and the projector."""
    from iqabench.models.owl3.modeling import Owl3Model
    from iqabench.models.owl3.weights import unused_vision_shapes

    config = Owl3Config.from_official(REAL_CONFIG)
    with torch.device("meta"):
        model = Owl3Model(config)
    counted = sum(p.numel() for p in model.parameters())
    D, I, V, L, kv, hd = 3584, 18944, 151851, 28, 4 * 128, 128
    layer = (D * D + D) + 2 * (D * kv + kv) + D * D + 3 * D * I + 2 * D
    hyper = (D * 2 * kv + 2 * kv) + (hd * hd + hd)
    text = V * D + L * layer + 4 * hyper + D + D * V
    d, m = 1152, 4304
    vision_layer = 4 * (d * d + d) + (m * d + m) + (d * m + d) + 4 * d
    vision = (3 * 14 * 14 * d + d) + 27 * 27 * d + 26 * vision_layer
    projector = d * D + D
    assert counted == text + vision + projector
    unused = sum(int(np.prod(s)) for s in unused_vision_shapes(config).values())
    assert unused == vision_layer + 2 * d + (d + 3 * d * d + 3 * d + d * d + d + 2 * d + m * d + m + d * m + d)


# -- the processor: grids by shape, crops row by row, then the global view ------------------------
@pytest.mark.parametrize("size, grid", [((400, 100), (1, 4)), ((100, 400), (4, 1)), ((300, 300), (2, 2)),
                                        ((300, 200), (2, 3)), ((200, 300), (3, 2)), ((300, 100), (1, 3))])
def test_the_grid_matches_the_image_shape(size, grid):
    """Each of these images has exactly the aspect ratio of one grid (shape IoU 1 there)."""
    assert processor.choose_grid(*size, side=28) == grid


def test_crops_are_slices_of_the_resized_image_and_the_global_view_last():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8))  # 3:2 -> 2x3
    views, text = processor.process_image(image, side=28)
    assert views.shape == (7, 3, 28, 28)
    big = np.asarray(image.resize((84, 56), Image.BICUBIC), dtype=np.float32) / 255.0
    tile = torch.from_numpy(big[28:56, 28:56]).permute(2, 0, 1)  # row 1, column 1 -> crop 4
    torch.testing.assert_close(views[4], (tile - 0.5) / 0.5, atol=1e-6, rtol=0)
    whole = np.asarray(image.resize((28, 28), Image.BICUBIC), dtype=np.float32) / 255.0
    torch.testing.assert_close(views[6], (torch.from_numpy(whole).permute(2, 0, 1) - 0.5) / 0.5, atol=1e-6, rtol=0)
    assert text == ("Cut to 2 rows 3 columns with a global view\nsubimg(0,0)<|image|> subimg(0,1)<|image|> "
                    "subimg(0,2)<|image|>\nsubimg(1,0)<|image|> subimg(1,1)<|image|> subimg(1,2)<|image|>\n"
                    "global_view<|image|>")
    single, mark = processor.process_image(image, side=28, crops=False)
    assert single.shape == (1, 3, 28, 28) and mark == "<|image|>"
    torch.testing.assert_close(single[0], views[6], atol=0, rtol=0)


def test_squash_policy_and_refusals(source):
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    squash = load_backend(BackendSpec(arch="owl3", path=str(source), resize="squash"))
    _, marks, views = squash._row(Query((image,), "Rate."))
    assert len(marks) == 1 and views.shape[0] == 1
    assert squash.fingerprint()["resize"] == "squash"
    with pytest.raises(ValueError, match="backend owl3 does not support resize=pad; allowed: model, squash"):
        BackendSpec(arch="owl3", path=str(source), resize="pad")  # refused by the declaration, before loading
    with pytest.raises(IqaError, match="crops each image by its shape"):
        squash.to_pixels([image])
    config = json.loads((source / "config.json").read_text())
    assert config["model_type"] == "mplugowl3" and config["hyper_layers"] == [1, 3]
