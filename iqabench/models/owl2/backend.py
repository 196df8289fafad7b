"""The `owl2` MLLM backend: mPLUG-Owl2 checkpoints behind the `MLLMBackend` interface.

Images become [0, 1] tensors with the official processor's geometry (shorter side to the model
size with bicubic resampling, centre crop; Q-Align's pad-to-square with the mean colour when
`resize="pad"`; torchvision's centre-crop offset when `resize="torchvision"`, as the public
visual-prompt code), methods may edit those pixels, then `normalize` applies CLIP mean/std.
A question is wrapped as `USER: <|image|>{question} ASSISTANT:`; a prompt that already has
`<|image|>` is used as the whole template (e.g. Q-Align's).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iqabench import io
from iqabench.errors import IqaError
from iqabench.models.backend import BackendSpec, MLLMBackend, resolve_dtype

IMAGE_PLACEHOLDER = "<|image|>"
TEMPLATE = "USER: " + IMAGE_PLACEHOLDER + "{question} ASSISTANT:"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# model = crop, the official processor's policy; torchvision = the same resize, torchvision's
# centre-crop offset (the public visual-prompt code's pipeline); no squash
RESIZE_POLICIES = ("model", "crop", "pad", "torchvision")


def full_prompt(prompt: str) -> str:
    if IMAGE_PLACEHOLDER in prompt:
        return prompt
    if "USER:" in prompt:
        raise IqaError(f"owl2 backend: prompt {prompt!r} has a USER: turn but no {IMAGE_PLACEHOLDER} placeholder")
    return TEMPLATE.format(question=prompt)


class Owl2Backend(MLLMBackend):
    def __init__(self, spec: BackendSpec, device: str = "cpu"):
        import torch

        from .weights import load_owl2

        self.spec, self.device = spec, str(device)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        self.model, self.tokenizer, self.folder = load_owl2(spec.path, spec.revision, self.dtype, self.device)
        self.image_size = self.model.config.vision.image_size
        self.mean, self.std = self._processor_stats(self.folder)
        self._ids_cache: dict[str, torch.Tensor] = {}

    @staticmethod
    def _processor_stats(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
        file = folder / "preprocessor_config.json"
        if not file.is_file():
            return CLIP_MEAN, CLIP_STD
        raw = io.read_json(file, "preprocessor config")
        return tuple(raw.get("image_mean", CLIP_MEAN)), tuple(raw.get("image_std", CLIP_STD))

    # ---- pixels -------------------------------------------------------------------------
    def to_pixels(self, images: Sequence[Any]):
        from iqabench.models.preprocess import square_image, unit_tensor

        policy = "crop" if self.spec.resize == "model" else self.spec.resize  # the official processor crops
        fill = tuple(int(c * 255) for c in self.mean)  # Q-Align's mean colour, truncated
        return unit_tensor([square_image(image, self.image_size, policy, fill) for image in images]).to(self.device)

    # ---- text ---------------------------------------------------------------------------
    def prompt_ids(self, prompt: str):
        """Token ids of the full prompt with -200 where the image goes, as the official
        `tokenizer_image_token` builds them: BOS, then each text chunk encoded on its own."""
        import torch

        from .modeling import IMAGE_TOKEN_INDEX

        text = full_prompt(prompt)
        if text not in self._ids_cache:
            ids = [] if self.tokenizer.bos_token_id is None else [self.tokenizer.bos_token_id]
            for i, chunk in enumerate(text.split(IMAGE_PLACEHOLDER)):
                if i:
                    ids.append(IMAGE_TOKEN_INDEX)
                if chunk:
                    ids += self.tokenizer(chunk, add_special_tokens=False).input_ids
            self._ids_cache[text] = torch.tensor(ids, dtype=torch.long, device=self.device)
        return self._ids_cache[text]

    def token_id(self, word: str) -> int:
        """The id of `word` starting an answer after a space: the vocabulary piece "▁word" when it
        exists (LLaMA: good -> 1781), else the first non-space token of " word". Reading the
        vocabulary avoids the [29871, 1781] vs [1781] difference between tokenizer versions."""
        vocab = self.tokenizer.get_vocab()
        for piece in ("▁" + word, word):
            if piece in vocab:
                return int(vocab[piece])
        ids = self.tokenizer(" " + word, add_special_tokens=False).input_ids
        space = vocab.get("▁")
        ids = [i for i in ids if i != space]
        if not ids:
            raise IqaError(f"owl2 backend: {word!r} has no token in the tokenizer of {self.spec.path}")
        return int(ids[0])

    # ---- model --------------------------------------------------------------------------
    def _model_pixels(self, pixel_values):
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise IqaError(f"owl2 backend: pixel_values must be [B, 3, S, S], got {tuple(pixel_values.shape)}")
        return pixel_values.to(device=self.device, dtype=self.dtype)

    def next_token_logits(self, pixel_values, prompt: str):
        return self.model(self.prompt_ids(prompt), self._model_pixels(pixel_values))

    def generate(self, pixel_values, prompt: str, max_new_tokens: int = 8) -> list[str]:
        new = self.model.generate_greedy(self.prompt_ids(prompt), self._model_pixels(pixel_values),
                                         max_new_tokens, self.model.config.text.eos_token_id)
        return [text.strip() for text in self.tokenizer.batch_decode(new.tolist(), skip_special_tokens=True)]

    def fingerprint(self) -> dict[str, Any]:
        from iqabench.models.checkpoint import identity

        return {
            **identity("owl2", self.spec, self.folder, self.dtype),
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "template": TEMPLATE,
        }


def load(spec: BackendSpec, device: str = "cpu") -> Owl2Backend:
    return Owl2Backend(spec, device)
