"""MLLM backend for vision-language models that transformers supports natively (Llava family).

The model is loaded with AutoModelForImageTextToText / AutoProcessor from a local folder or a
hub id (HF_HUB_OFFLINE is honoured by huggingface_hub; nothing is downloaded in tests).
Images are resized here, as [0, 1] tensors, so a method can edit pixels before `normalize`;
the processor is used only to build the token ids (chat template + image placeholders), once
per prompt, with a blank image of the model's size. Supported: models whose processor returns
one [3, S, S] tensor per image (Llava, PaliGemma, ...). Models that patchify images in the
processor (Qwen2-VL) or tile them (Llava-Next any-res) are refused with a message.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import pickle
from pathlib import Path
from typing import Any, Sequence

from iqabench.errors import IqaError
from iqabench.models.backend import BackendSpec, MLLMBackend

RESIZE_POLICIES = ("model", "crop", "pad", "squash")
DTYPES = ("auto", "float32", "bfloat16", "float16")
TEMPLATE_IMAGE = "<|image|>"  # marks a prompt that is a whole template (same convention as the owl2 backend)
PLAIN_TEMPLATE = "USER: {image}\n{question} ASSISTANT:"  # LLaVA-1.5's, for processors without a chat template


def resolve_dtype(name: str, device: str):
    """"auto" = bfloat16 on CUDA, float32 elsewhere (half precision is slow or missing on CPU)."""
    import torch

    if name not in DTYPES:
        raise IqaError(f"dtype {name!r}: expected one of {', '.join(DTYPES)}")
    if name == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return getattr(torch, name)


def square_image(image: Any, size: int, policy: str, fill: tuple[int, int, int] = (0, 0, 0)):
    """A PIL RGB image -> size x size PIL image.

    crop: shorter side to `size` (bicubic), then centre crop; pad: pad to a square with `fill`
    (the mean colour, as LLaVA does), then resize; squash: resize both sides, ignoring aspect."""
    from PIL import Image

    image = image.convert("RGB")
    w, h = image.size
    if policy == "squash":
        return image.resize((size, size), Image.BICUBIC)
    if policy == "pad":
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), fill)
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        return canvas.resize((size, size), Image.BICUBIC)
    if policy == "crop":
        from iqabench.models.preprocess import central_band

        image = central_band(image)
        w, h = image.size
        scale = size / min(w, h)
        # floor, as the CLIP image processor rounds the longer side
        nw, nh = (size, max(size, int(h * scale))) if w <= h else (max(size, int(w * scale)), size)
        image = image.resize((nw, nh), Image.BICUBIC)
        left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
        return image.crop((left, top, left + size, top + size))
    raise IqaError(f"resize {policy!r}: expected one of {', '.join(RESIZE_POLICIES)}")


def pil_to_unit_tensor(images: Sequence[Any]):
    """PIL images of one size -> float32 [B, 3, H, W] in [0, 1]."""
    import numpy as np
    import torch

    arrays = np.stack([np.asarray(img, dtype=np.uint8) for img in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div_(255.0)


def _size_field(size: Any, key: str) -> int | None:
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value else None


def model_geometry(image_processor: Any) -> tuple[int, str]:
    """(square input size, resize policy) the model's own image processor applies."""
    crop = getattr(image_processor, "crop_size", None)
    size = getattr(image_processor, "size", None)
    if getattr(image_processor, "do_center_crop", False) and crop is not None and _size_field(crop, "height"):
        side = _size_field(crop, "height")
        if _size_field(crop, "width") != side:
            raise IqaError(f"{type(image_processor).__name__}: non-square crop {crop} is not supported")
        return side, "pad" if getattr(image_processor, "do_pad", False) else "crop"
    if size is not None and _size_field(size, "height") and _size_field(size, "height") == _size_field(size, "width"):
        return _size_field(size, "height"), "pad" if getattr(image_processor, "do_pad", False) else "squash"
    if size is not None and _size_field(size, "shortest_edge"):
        return _size_field(size, "shortest_edge"), "crop"
    raise IqaError(f"{type(image_processor).__name__}: cannot tell the model's input size from {size}")


def _triple(values: Any) -> tuple[float, float, float]:
    if isinstance(values, (int, float)):
        return (float(values),) * 3
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise IqaError(f"image mean/std {values}: expected 3 channels")
    return values  # type: ignore[return-value]


class HfVlmBackend(MLLMBackend):
    """A transformers image-text-to-text model behind the MLLMBackend interface."""

    def __init__(self, model: Any, processor: Any, spec: BackendSpec, device: str, dtype: Any):
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.spec = spec
        self.device = device
        self.dtype = dtype
        self.image_size, model_policy = model_geometry(processor.image_processor)
        self.resize = model_policy if spec.resize == "model" else spec.resize
        if self.resize not in RESIZE_POLICIES[1:]:
            raise IqaError(f"resize {spec.resize!r}: expected one of {', '.join(RESIZE_POLICIES)}")
        self.mean = _triple(processor.image_processor.image_mean)
        self.std = _triple(processor.image_processor.image_std)
        self.image_token = getattr(processor, "image_token", None) or "<image>"
        self.chat_template = getattr(processor, "chat_template", None) or None
        # Only the last position's logits are needed; skip the LM head elsewhere when possible.
        self._keep_last = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._cache: dict[str, dict[str, Any]] = {}
        self._pixel_rank = 4

    # -- images ------------------------------------------------------------------
    def to_pixels(self, images: Sequence[Any]):
        fill = tuple(int(round(m * 255)) for m in self.mean)
        squares = [square_image(img, self.image_size, self.resize, fill) for img in images]
        return pil_to_unit_tensor(squares).to(self.device)

    # -- text --------------------------------------------------------------------
    def conversation(self, prompt: str) -> str:
        """The full text before the answer. A prompt holding `<|image|>` is the whole template
        (e.g. Q-Align's, which ends inside the answer); otherwise the question goes through the
        processor's chat template, or a plain LLaVA one when there is none."""
        if TEMPLATE_IMAGE in prompt:
            return prompt.replace(TEMPLATE_IMAGE, self.image_token)
        if self.chat_template:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return PLAIN_TEMPLATE.format(image=self.image_token, question=prompt)

    def _encoded(self, prompt: str) -> dict[str, Any]:
        """Token ids (image placeholders expanded by the processor) for one image; cached."""
        if prompt not in self._cache:
            self._cache[prompt] = self._encode(prompt)
        return self._cache[prompt]

    def _encode(self, prompt: str) -> dict[str, Any]:
        from PIL import Image

        blank = Image.new("RGB", (self.image_size, self.image_size), (128, 128, 128))
        text = self.conversation(prompt)
        enc = self.processor(text=[text], images=[blank], return_tensors="pt")
        pixels = enc.pop("pixel_values")
        if tuple(pixels.shape[-3:]) != (3, self.image_size, self.image_size) or pixels.shape[:-3].numel() != 1:
            raise IqaError(f"{self.spec.path}: its processor returns pixel_values of shape {tuple(pixels.shape)}; "
                           f"the hf-vlm backend handles one 3x{self.image_size}x{self.image_size} tensor per image only")
        self._pixel_rank = pixels.dim()  # 4 for Llava; 5 for models taking [B, n_images, 3, S, S]
        if "input_ids" not in enc:
            raise IqaError(f"{self.spec.path}: its processor returned no input_ids")
        return {k: v for k, v in enc.items() if hasattr(v, "shape")}

    def _inputs(self, pixel_values, prompt: str) -> dict[str, Any]:
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (3, self.image_size, self.image_size):
            raise IqaError(f"pixel_values of shape {tuple(pixel_values.shape)}: expected [B, 3, {self.image_size}, {self.image_size}]")
        batch = pixel_values.shape[0]
        encoded = self._encoded(prompt)
        # One prompt for the whole batch: every row has the same length, so no padding is needed
        # and the answer position is the last one for every image.
        inputs = {k: v.to(self.device).expand(batch, *v.shape[1:]) for k, v in encoded.items()}
        pixels = pixel_values.to(device=self.device, dtype=self.dtype)
        inputs["pixel_values"] = pixels.unsqueeze(1) if self._pixel_rank == 5 else pixels
        return inputs

    def next_token_logits(self, pixel_values, prompt: str):
        """Logits [B, vocab] (float32) at the answer position; differentiable w.r.t. pixel_values."""
        inputs = self._inputs(pixel_values, prompt)
        extra = {"logits_to_keep": 1} if self._keep_last else {}
        out = self.model(**inputs, use_cache=False, **extra)
        return out.logits[:, -1, :].float()

    def generate(self, pixel_values, prompt: str, max_new_tokens: int = 8) -> list[str]:
        import torch

        inputs = self._inputs(pixel_values, prompt)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def token_id(self, word: str) -> int:
        # Old Llama tokenizers encode " good" as ["▁", "good"], new ones as ["▁good"]: skip
        # pieces that are only a word boundary and take the first piece carrying text.
        ids = self.tokenizer.encode(" " + word.strip(), add_special_tokens=False)
        for tid in ids:
            if self.tokenizer.decode([tid]).strip():
                return int(tid)
        raise IqaError(f"{self.spec.path}: the tokenizer has no token for {word!r}")

    def fingerprint(self) -> dict[str, Any]:
        template = self.chat_template or "plain:" + PLAIN_TEMPLATE
        return {
            "arch": self.spec.arch, "path": self.spec.path,
            "revision": self.spec.revision or getattr(self.model.config, "_commit_hash", None),
            "model_class": type(self.model).__name__, "dtype": str(self.dtype).replace("torch.", ""),
            "resize": self.resize, "image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
            "template_sha": hashlib.sha256(template.encode()).hexdigest()[:12],
        }


def load(spec: BackendSpec, device: str = "cpu") -> HfVlmBackend:
    """Load a transformers VLM from a local folder or the hub (cache only when HF_HUB_OFFLINE=1)."""
    try:
        import torch  # noqa: F401
        from transformers import AutoModelForImageTextToText, AutoProcessor
    except ImportError as exc:
        raise IqaError(f"backend {spec.arch}: needs torch and transformers (pip install 'iqabench[mllm]'): {exc}") from exc
    if spec.resize not in RESIZE_POLICIES:
        raise IqaError(f"resize {spec.resize!r}: expected one of {', '.join(RESIZE_POLICIES)}")
    dtype = resolve_dtype(spec.dtype, device)
    local = Path(spec.path).expanduser()
    source = str(local) if local.is_dir() else spec.path
    common: dict[str, Any] = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        common["local_files_only"] = True
    try:
        processor = AutoProcessor.from_pretrained(source, **common)
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, **common)
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        # transformers reads .bin weights with weights_only=True: a pickled object lands here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IqaError(f"{spec.path}: cannot load the model or processor ({first[:200]})") from None
    model.to(device).eval()
    model.requires_grad_(False)  # frozen: only inputs (e.g. a visual prompt) may receive gradients
    return HfVlmBackend(model, processor, spec, device, dtype)
