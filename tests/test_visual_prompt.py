"""The visual-prompt module of seed 000: parameter counts, placement, order of operations,
gradients, and reading prompt files safely."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

torch.set_num_threads(1)
os.environ["HF_HUB_OFFLINE"] = "1"

from iqabench.errors import IqaError  # noqa: E402
from iqabench.methods.visual_prompt import PromptConfig, VisualPrompt, read_prompt_file, save_prompt_file  # noqa: E402

# parameter counts: tests/test_presets.py, computed from seed 000's shapes in tests/reference/presets.toml


def test_initialisation_is_small_gaussian_and_seeded():
    a = VisualPrompt(PromptConfig("full", 0, 448), seed=3).tensors["prompt"].detach()
    b = VisualPrompt(PromptConfig("full", 0, 448), seed=3).tensors["prompt"]
    c = VisualPrompt(PromptConfig("full", 0, 448), seed=4).tensors["prompt"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float(a.std()) - 0.01) < 5e-4 and abs(float(a.mean())) < 5e-4


def _support(prompt: VisualPrompt):
    """Where the additive prompt can be non-zero (params set to 1 so tanh(1) > 0 everywhere)."""
    with torch.no_grad():
        for p in prompt.parameters():
            p.fill_(1.0)
    return prompt.additive()[0, 0] != 0


def test_padding_covers_exactly_the_border_strips():
    support = _support(VisualPrompt(PromptConfig("padding", 10, 448)))
    expected = torch.ones(448, 448, dtype=torch.bool)
    expected[10:438, 10:438] = False
    assert torch.equal(support, expected)


@pytest.mark.parametrize("kind,size,corner", [("patch_center", 10, 219), ("patch_center", 30, 209),
                                              ("patch_topleft", 10, 0), ("patch_topleft", 30, 0)])
def test_patches_sit_where_the_public_code_puts_them(kind, size, corner):
    support = _support(VisualPrompt(PromptConfig(kind, size, 448)))
    expected = torch.zeros(448, 448, dtype=torch.bool)
    expected[corner:corner + size, corner:corner + size] = True
    assert torch.equal(support, expected)


def test_apply_adds_tanh_then_clamps_to_unit_range():
    prompt = VisualPrompt(PromptConfig("full", 0, 8))
    with torch.no_grad():
        prompt.tensors["prompt"].copy_(torch.linspace(-3, 3, 3 * 64).view(1, 3, 8, 8))
    x = torch.rand(2, 3, 8, 8)
    out = prompt.apply(x)
    expected = torch.clamp(x + torch.tanh(prompt.tensors["prompt"].detach()), 0.0, 1.0)
    assert torch.allclose(out, expected, atol=0, rtol=0)
    assert float(out.detach().min()) == 0.0 and float(out.detach().max()) == 1.0  # the clamp did bite
    # tanh bounds the prompt itself: a huge parameter moves a pixel by at most 1
    with torch.no_grad():
        prompt.tensors["prompt"].fill_(1e6)
    assert torch.allclose(prompt.additive(), torch.ones(1, 3, 8, 8))


def test_pixels_outside_the_prompt_are_untouched():
    prompt = VisualPrompt(PromptConfig("padding", 2, 12))
    x = torch.rand(3, 3, 12, 12)
    out = prompt.apply(x)
    assert torch.equal(out[:, :, 2:10, 2:10], x[:, :, 2:10, 2:10])
    assert not torch.equal(out[:, :, :2], x[:, :, :2])


def test_gradient_reaches_every_prompt_tensor():
    prompt = VisualPrompt(PromptConfig("padding", 3, 16))
    x = torch.rand(2, 3, 16, 16)
    prompt.apply(x).square().sum().backward()
    for name, p in prompt.tensors.items():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    assert not x.requires_grad


@pytest.mark.parametrize("kind,size", [("padding", 224), ("patch_center", 0), ("patch_topleft", 449), ("ring", 3)])
def test_impossible_configurations_are_refused(kind, size):
    with pytest.raises(IqaError):
        PromptConfig(kind, size, 448)


def test_wrong_image_size_is_refused():
    prompt = VisualPrompt(PromptConfig("padding", 2, 16))
    with pytest.raises(IqaError, match="16 px"):
        prompt.apply(torch.rand(1, 3, 20, 20))


def test_safetensors_round_trip_is_bit_exact(tmp_path):
    prompt = VisualPrompt(PromptConfig("padding", 3, 16), seed=5)
    save_prompt_file(tmp_path / "p.safetensors", prompt.state_dict(), {"config": "x"})
    state, meta = read_prompt_file(tmp_path / "p.safetensors")
    assert meta == {"config": "x"}
    other = VisualPrompt(PromptConfig("padding", 3, 16), seed=6)
    other.load_state_dict(state)
    for name in prompt.tensors:
        assert torch.equal(other.tensors[name], prompt.tensors[name])
    assert other.digest() == prompt.digest()


def test_published_style_pth_loads_with_prefix_and_shape_check(tmp_path):
    prompt = VisualPrompt(PromptConfig("patch_center", 4, 16), seed=1)
    torch.save({"visual_prompter.patch": prompt.tensors["patch"].detach().clone()}, tmp_path / "visual_prompt.pth")
    state, _ = read_prompt_file(tmp_path / "visual_prompt.pth")
    assert torch.equal(state["patch"], prompt.tensors["patch"].detach())
    wrong = VisualPrompt(PromptConfig("patch_center", 5, 16))
    with pytest.raises(IqaError, match="shape"):
        wrong.load_state_dict(state, "visual_prompt.pth")
    with pytest.raises(IqaError, match="do not match"):
        VisualPrompt(PromptConfig("padding", 4, 16)).load_state_dict(state, "visual_prompt.pth")


class _Payload:
    """A pickled object: weights_only loading must refuse to build it."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"patch": _Payload()}, f, protocol=2)
    with pytest.raises(IqaError, match="refused, not a plain tensor file"):
        read_prompt_file(path)


def test_unknown_or_missing_files_are_refused(tmp_path):
    with pytest.raises(IqaError, match="not found"):
        read_prompt_file(tmp_path / "none.safetensors")
    (tmp_path / "p.npy").write_bytes(b"\0")
    with pytest.raises(IqaError, match="unknown prompt file type"):
        read_prompt_file(tmp_path / "p.npy")
