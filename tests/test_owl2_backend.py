"""The `owl2` backend on a tiny random mPLUG-Owl2 saved in the official checkpoint layout."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from iqabench.errors import IqaError, NotAvailable
from iqabench.models.backend import BackendSpec, load_backend

QUESTION = "Rate the technical quality of the image."
QUALITY_WORDS = ("good", "fine", "poor", "bad", "excellent", "fair", "high", "low")


@pytest.fixture(autouse=True)
def _offline_one_thread(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from iqabench.models.tiny_owl2 import build_tiny_owl2

    return build_tiny_owl2(tmp_path_factory.mktemp("owl2") / "tiny", seed=0)


@pytest.fixture(scope="module")
def backend(folder):
    return load_backend(BackendSpec(arch="owl2", path=str(folder)), "cpu")


def _images(n, seed=0):
    from PIL import Image

    rng = np.random.RandomState(seed)
    return [Image.fromarray(rng.randint(0, 256, (30 + 9 * i, 44, 3), dtype=np.uint8)) for i in range(n)]


def _copy(folder, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def test_loads_from_a_folder_with_frozen_eval_model(backend):
    assert backend.fingerprint()["arch"] == "owl2"
    assert backend.dtype == torch.float32  # "auto" on CPU
    assert not backend.model.training
    assert not any(p.requires_grad for p in backend.model.parameters())
    assert backend.image_size == 28 and backend.mean[0] == pytest.approx(0.48145466)


def test_unmapped_checkpoint_key_is_an_error_naming_it(folder, tmp_path):
    from safetensors.torch import load_file, save_file

    copy = _copy(folder, tmp_path)
    state = load_file(str(copy / "model.safetensors"))
    state["model.mystery_block.weight"] = torch.zeros(3)
    save_file(state, str(copy / "model.safetensors"))
    with pytest.raises(IqaError, match="model.mystery_block.weight"):
        load_backend(BackendSpec(path=str(copy)), "cpu")


def test_missing_checkpoint_key_is_an_error_naming_it(folder, tmp_path):
    from safetensors.torch import load_file, save_file

    copy = _copy(folder, tmp_path)
    state = load_file(str(copy / "model.safetensors"))
    del state["model.layers.1.self_attn.k_proj.multiway.1.weight"]
    save_file(state, str(copy / "model.safetensors"))
    with pytest.raises(IqaError, match=r"model\.layers\.1\.self_attn\.k_proj\.multiway\.1\.weight"):
        load_backend(BackendSpec(path=str(copy)), "cpu")


def test_bin_shards_load_like_safetensors(folder, backend, tmp_path):
    """Official repos ship pytorch_model-*.bin shards (some with rotary inv_freq buffers)."""
    from safetensors.torch import load_file

    copy = _copy(folder, tmp_path)
    state = load_file(str(copy / "model.safetensors"))
    (copy / "model.safetensors").unlink()
    keys = sorted(state)
    torch.save({k: state[k] for k in keys[: len(keys) // 2]}, copy / "pytorch_model-00001-of-00002.bin")
    rest = {k: state[k] for k in keys[len(keys) // 2:]}
    rest["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)
    torch.save(rest, copy / "pytorch_model-00002-of-00002.bin")
    other = load_backend(BackendSpec(path=str(copy)), "cpu")
    pixels = backend.normalize(backend.to_pixels(_images(1)))
    with torch.no_grad():
        torch.testing.assert_close(other.next_token_logits(pixels, QUESTION),
                                   backend.next_token_logits(pixels, QUESTION))


def test_stored_position_codes_are_used(folder, backend, tmp_path):
    from safetensors.torch import load_file, save_file

    copy = _copy(folder, tmp_path)
    state = load_file(str(copy / "model.safetensors"))
    ours = backend.model.state_dict()
    for key in ours:
        if key.endswith("_pos_embed"):
            state["model.visual_abstractor." + key.split("abstractor.", 1)[1]] = ours[key] + 0.5
    save_file(state, str(copy / "model.safetensors"))
    shifted = load_backend(BackendSpec(path=str(copy)), "cpu")
    pixels = backend.normalize(backend.to_pixels(_images(1)))
    with torch.no_grad():
        diff = (shifted.next_token_logits(pixels, QUESTION) - backend.next_token_logits(pixels, QUESTION)).abs().max()
    assert diff > 1e-3


def test_hub_id_honours_offline_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache" / "hub"))
    with pytest.raises(NotAvailable, match="HF_HUB_OFFLINE"):
        load_backend(BackendSpec(path="MAGAer13/mplug-owl2-llama2-7b"), "cpu")


def test_token_ids_are_single_vocabulary_pieces(backend):
    vocab = backend.tokenizer.get_vocab()
    ids = [backend.token_id(w) for w in QUALITY_WORDS]
    assert ids == [vocab["▁" + w] for w in QUALITY_WORDS]
    assert len(set(ids)) == len(ids)
    for word, i in zip(QUALITY_WORDS, ids):  # what the answer " good" starts with, whatever the version
        encoded = [t for t in backend.tokenizer(" " + word, add_special_tokens=False).input_ids if t != vocab["▁"]]
        assert encoded == [i]
    digits = [backend.token_id(str(d)) for d in range(1, 10)]
    assert digits == [vocab[str(d)] for d in range(1, 10)]


def test_prompt_template_and_image_placeholder(backend):
    ids = backend.prompt_ids(QUESTION).tolist()
    user = backend.tokenizer("USER: ", add_special_tokens=False).input_ids
    rest = backend.tokenizer(QUESTION + " ASSISTANT:", add_special_tokens=False).input_ids
    assert ids == [backend.tokenizer.bos_token_id, *user, -200, *rest]
    qalign = "USER: How would you rate the quality of this image?\n<|image|>\nASSISTANT: The quality of the image is"
    assert backend.prompt_ids(qalign).tolist().count(-200) == 1
    with pytest.raises(IqaError, match="placeholder"):
        backend.prompt_ids("USER: no image here ASSISTANT:")


def test_prompt_ids_match_the_sentencepiece_tokenisation_of_the_official_code(folder, backend):
    """The official code (old slow tokenizer = SentencePiece) encodes each chunk around the
    placeholder separately, BOS first; our transformers-5 tokenisation must give the same ids."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    for prompt in (QUESTION, "USER: How would you rate the quality of this image?\n<|image|>\nASSISTANT: The"):
        text = prompt if "<|image|>" in prompt else f"USER: <|image|>{prompt} ASSISTANT:"
        head, tail = text.split("<|image|>")
        official = [sp.bos_id(), *sp.encode(head), -200, *sp.encode(tail)]
        assert backend.prompt_ids(prompt).tolist() == official
    assert sp.encode(" good") == [sp.piece_to_id("▁"), backend.token_id("good")]  # the old [29871, 1781] form


def test_to_pixels_matches_the_clip_processor(folder, backend):
    from transformers import CLIPImageProcessor

    images = _images(2)
    ours = backend.normalize(backend.to_pixels(images))
    theirs = CLIPImageProcessor.from_pretrained(str(folder))(images=images, return_tensors="pt")["pixel_values"]
    assert ours.shape == theirs.shape == (2, 3, 28, 28)
    assert (ours - theirs).abs().max() < 2.5 / 255 / min(backend.std)  # rounding of one grey level at most


def test_pad_policy_fills_with_the_mean_colour(folder):
    padded = load_backend(BackendSpec(path=str(folder), resize="pad"), "cpu")
    from PIL import Image

    wide = Image.new("RGB", (56, 14), (0, 0, 0))  # black strip: padding above and below
    pixels = padded.to_pixels([wide])[0]
    mean = torch.tensor([int(c * 255) / 255 for c in padded.mean])
    torch.testing.assert_close(pixels[:, 0, 0], mean, atol=2 / 255, rtol=0)
    assert pixels[:, 14].max() < 0.05  # the middle row is the black image
    assert padded.fingerprint()["resize"] == "pad"


def test_gradient_reaches_pixels_and_parameters_stay_frozen(backend):
    pixels = backend.to_pixels(_images(2))
    prompt = torch.zeros(1, 3, 28, 28, requires_grad=True)
    logits = backend.next_token_logits(backend.normalize((pixels + prompt).clamp(0, 1)), QUESTION)
    good, poor = backend.token_id("good"), backend.token_id("poor")
    score = torch.softmax(logits[:, [good, poor]], -1)[:, 0]
    score.sum().backward()
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in backend.model.parameters())


def test_batch_of_two_equals_two_batches_of_one(backend):
    pixels = backend.normalize(backend.to_pixels(_images(2, seed=5)))
    with torch.no_grad():
        both = backend.next_token_logits(pixels, QUESTION)
        single = torch.cat([backend.next_token_logits(pixels[i:i + 1], QUESTION) for i in range(2)])
    assert (both[0] - both[1]).abs().max() > 1e-3
    torch.testing.assert_close(both, single, atol=1e-5, rtol=1e-5)


def test_generate_is_greedy_and_its_cache_matches_full_recomputation(backend):
    pixels = backend.normalize(backend.to_pixels(_images(2, seed=1)))
    answers = backend.generate(pixels, QUESTION, max_new_tokens=4)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    model, ids = backend.model, backend.prompt_ids(QUESTION)
    eos = model.config.text.eos_token_id
    new = model.generate_greedy(ids, pixels, 4, eos)
    assert new.shape[0] == 2 and 1 <= new.shape[1] <= 4
    for row in range(2):  # each step's token is the argmax of a from-scratch forward pass
        for step in range(new.shape[1]):
            if step and new[row, step - 1] == eos:
                break
            prefix = torch.cat([ids, new[row, :step]])
            with torch.no_grad():
                logits = model(prefix, pixels[row:row + 1])
            assert int(logits.argmax(-1)) == int(new[row, step])


def test_logits_at_chosen_positions(backend):
    pixels = backend.normalize(backend.to_pixels(_images(1)))
    ids = backend.prompt_ids(QUESTION)
    with torch.no_grad():
        last = backend.model(ids, pixels)
        several = backend.model(ids, pixels, positions=[0, -1])
    assert several.shape == (1, 2, backend.model.config.text.vocab_size)
    torch.testing.assert_close(several[:, -1], last)


def test_bfloat16_runs_close_to_float32(folder, backend):
    half = load_backend(BackendSpec(path=str(folder), dtype="bfloat16"), "cpu")
    pixels = backend.normalize(backend.to_pixels(_images(1)))
    with torch.no_grad():
        low = half.next_token_logits(pixels, QUESTION)
        full = backend.next_token_logits(pixels, QUESTION)
    assert low.dtype == torch.float32 and half.fingerprint()["dtype"] == "bfloat16"
    assert (low - full).abs().max() < 0.25 * full.abs().max()


def test_bad_options_are_one_line_errors(folder, tmp_path):
    with pytest.raises(ValueError, match="dtype"):  # refused when the spec is made, before any loading
        BackendSpec(path=str(folder), dtype="int8")
    with pytest.raises(ValueError, match="backend owl2 does not support resize=squash; allowed: model, crop, pad, torchvision"):
        BackendSpec(path=str(folder), resize="squash")
    copy = _copy(folder, tmp_path)
    raw = json.loads((copy / "config.json").read_text())
    del raw["visual_config"]
    (copy / "config.json").write_text(json.dumps(raw))
    with pytest.raises(IqaError, match="config.json"):
        load_backend(BackendSpec(path=str(copy)), "cpu")
