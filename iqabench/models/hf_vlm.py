"""MLLM backend for the vision-language models transformers supports natively, one code path
for every family; what differs between families is a row of iqabench/models/vlm_families.py.

Loading: AutoProcessor + AutoModelForImageTextToText from a local folder or a hub id
(local files only when `iqabench.hub.offline()`; nothing is downloaded in tests). The arch names the family
(`qwen2_5_vl`, `gemma3`, ...); `hf-vlm` picks it from config.json's model_type.

Images:
- fixed-grid families (LLaVA-1.5, PaliGemma, Gemma 3): `to_pixels` runs the checkpoint's own image
  processor without its normalisation (resize="model"; or the crop / pad / squash / torchvision
  policies), a method may edit the [0, 1] pixels, `normalize` applies the processor's mean/std,
  and the token ids come from the processor once per (prompt, image count) with blank images.
- tiled families (Qwen2.5-VL, Qwen3-VL, InternVL, Idefics3/SmolVLM, LLaVA-Next, LLaVA-OneVision):
  the processor sees the real images (its tiling or patching depends on their size). Supported:
  image-level methods through `logits`/`answers` (softmax presets, Q-Align levels, Dog-IQA).
  Not supported: pixel-space methods (visual prompts, ImageNet normalisation, resize policies),
  which `to_pixels` / `normalize` / `next_token_logits` refuse in one line.
Batches of queries are padded on the left with an attention mask (position ids counted from it for
1-D rope families), so a padded row scores as it would alone.
"""
from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iqabench import hub
from iqabench.errors import IqaError, one_line
from iqabench.models.backend import (
    IMAGE_PLACEHOLDER,
    BackendSpec,
    BackendTraits,
    MLLMBackend,
    Query,
    first_text_token,
    resolve_dtype,
)
from iqabench.models.preprocess import square_image, unit_tensor
from iqabench.models.vlm_families import FAMILIES, Family, family, family_of_model_type

TEMPLATE_IMAGE = IMAGE_PLACEHOLDER  # marks a prompt that is a whole template (as the owl2 backend)
PLAIN_TEMPLATE = "USER: {image}\n{question} ASSISTANT:"  # LLaVA-1.5's, for processors without a chat template
GENERIC_ARCH = "hf-vlm"


def _triple(values: Any) -> tuple[float, float, float]:
    if isinstance(values, (int, float)):
        return (float(values),) * 3
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise IqaError(f"image mean/std {values}: expected 3 channels")
    return values  # type: ignore[return-value]


def left_pad(rows: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Per-row token tensors [1, T_i] -> [B, max T], padded on the left (input_ids with `pad_id`,
    the attention mask and type ids with 0)."""
    import torch

    width = max(int(r["input_ids"].shape[-1]) for r in rows)
    out: dict[str, Any] = {}
    for key in rows[0]:
        padded = []
        for r in rows:
            value = r[key]
            fill = pad_id if key == "input_ids" else 0
            pad = value.new_full((*value.shape[:-1], width - value.shape[-1]), fill)
            padded.append(torch.cat([pad, value], dim=-1))
        out[key] = torch.cat(padded, dim=0)
    return out


class HfVlmBackend(MLLMBackend):
    """A transformers image-text-to-text model of a known family behind the MLLMBackend interface."""

    def __init__(self, model: Any, processor: Any, spec: BackendSpec, device: str, dtype: Any, fam: Family):
        self.model = model
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"  # decoder-only: the answer position is the last one of every row
        self.spec, self.device, self.dtype, self.family = spec, device, dtype, fam
        self.pixel_space = fam.traits.grid == "fixed"
        self.multi_image = fam.traits.multi_image
        self.image_processor = processor.image_processor
        self.mean = _triple(self.image_processor.image_mean)
        self.std = _triple(self.image_processor.image_std)
        self.image_token = fam.image_text
        self.chat_template = getattr(processor, "chat_template", None) or None
        self.resize = spec.resize
        if self.resize not in fam.traits.resize:  # reached through the generic arch only: the family was unknown
            raise IqaError(f"backend {fam.arch}: its processor tiles each image by its size, so only resize=model "
                           f"applies (got resize={self.resize})")
        self.image_size: int | None = self._grid_side() if self.pixel_space else None
        self._cache: dict[tuple[str, int], dict[str, Any]] = {}

    # -- images ----------------------------------------------------------------------
    def _grid_side(self) -> int:
        from PIL import Image

        probe = self._processor_pixels([Image.new("RGB", (37, 23), (128, 128, 128))])
        if probe.dim() != 4 or probe.shape[-1] != probe.shape[-2]:
            raise IqaError(f"{self.spec.path}: its image processor returns pixel_values of shape {tuple(probe.shape)}, "
                           f"not one square view per image as family {self.family.arch} expects")
        return int(probe.shape[-1])

    def _processor_pixels(self, images: Sequence[Any]):
        out = self.image_processor(images=[im.convert("RGB") for im in images], do_normalize=False, return_tensors="pt")
        pixels = out["pixel_values"].float()
        return pixels.reshape(-1, *pixels.shape[-3:]) if pixels.dim() == 5 and pixels.shape[1] == 1 else pixels

    def _need_grid(self, what: str) -> None:
        if not self.pixel_space:
            raise IqaError(f"backend {self.family.arch}: {what} needs a fixed pixel grid, but its processor tiles each "
                           f"image by its size; pixel-space methods (visual prompts, normalization=imagenet) are not "
                           f"supported here, image-level ones (softmax presets, Q-Align levels, Dog-IQA) are")

    def to_pixels(self, images: Sequence[Any]):
        self._need_grid("to_pixels")
        if self.resize == "model":
            return self._processor_pixels(images).to(self.device)
        fill = tuple(round(m * 255) for m in self.mean)
        squares = [square_image(img, self.image_size, self.resize, fill) for img in images]
        return unit_tensor(squares).to(self.device)

    def normalize(self, pixels):
        self._need_grid("normalize")
        return super().normalize(pixels)

    # -- text ------------------------------------------------------------------------
    def conversation(self, prompt: str | Query) -> str:
        """The full text before the answer, with the family's image text where images go."""
        q = prompt if isinstance(prompt, Query) else Query((None,), prompt, template=TEMPLATE_IMAGE in prompt)
        fam = self.family
        n = len(q.images)
        if q.template:
            text = q.text.replace(IMAGE_PLACEHOLDER, fam.image_text)
        else:
            system_turn = bool(q.system) and fam.system_turn and self.chat_template is not None
            user = q.text if system_turn else q.folded_text()
            if not fam.interleave and IMAGE_PLACEHOLDER in user:
                if any(part.strip() for part in user.split(IMAGE_PLACEHOLDER)[:-1]):
                    raise IqaError(f"backend {fam.arch}: images go before the text; put every {IMAGE_PLACEHOLDER} "
                                   f"at the start of the prompt or leave them out")
                user = user.replace(IMAGE_PLACEHOLDER, "").lstrip()
            if self.chat_template:
                messages = [{"role": "system", "content": [{"type": "text", "text": q.system}]}] if system_turn else []
                messages.append({"role": "user", "content": self._content(user, n)})
                text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            else:
                text = fam.plain.format(content=self._plain_content(user, n))
        return q.answer_start(text)

    @staticmethod
    def _content(text: str, n_images: int) -> list[dict[str, str]]:
        parts = text.split(IMAGE_PLACEHOLDER)
        if len(parts) == 1:
            return [{"type": "image"}] * n_images + ([{"type": "text", "text": text}] if text else [])
        content: list[dict[str, str]] = []
        for i, part in enumerate(parts):
            if i:
                content.append({"type": "image"})
            if part:
                content.append({"type": "text", "text": part})
        return content

    def _plain_content(self, text: str, n_images: int) -> str:
        image = self.family.image_text
        if IMAGE_PLACEHOLDER in text:
            return text.replace(IMAGE_PLACEHOLDER, image)
        return (image + self.family.image_sep) * n_images + text

    def _special(self, text: str) -> bool:
        """Whether the tokenizer adds its special tokens: not when the text already opens with BOS
        (a chat template that writes it), as transformers' own chat tokenization does."""
        bos = self.tokenizer.bos_token
        return not (bos and text.startswith(bos))

    def _tokenized(self, texts: list[str], images: list[list[Any]] | None, special: bool) -> dict[str, Any]:
        """The processor on texts (and images, one list per text), padded on the left."""
        kwargs: dict[str, Any] = {"return_tensors": "pt", "padding": True, "add_special_tokens": special}
        if images is not None:
            kwargs["images"] = images
        try:
            enc = self.processor(text=texts, **kwargs)
        except (ValueError, TypeError, IndexError) as exc:
            raise IqaError(f"{self.spec.path}: its processor refused the prompt ({one_line(exc, 200)})") from None
        return {k: v for k, v in enc.items() if hasattr(v, "shape") and k not in self.family.drop_keys}

    # -- inputs ------------------------------------------------------------------------
    def _fixed_rows(self, texts: list[str], counts: list[int]) -> dict[str, Any]:
        """Token tensors for fixed-grid families: each (text, image count) once through the
        processor with blank images (the ids do not depend on the pixels), then left-padded."""
        from PIL import Image

        rows = []
        for text, n in zip(texts, counts):
            key = (text, n)
            if key not in self._cache:
                blank = Image.new("RGB", (self.image_size, self.image_size), (128, 128, 128))
                enc = self._tokenized([text], [[blank] * n] if n else None, self._special(text))
                enc.pop("pixel_values", None)
                extra = sorted(k for k, v in enc.items() if v.dim() != 2 or v.shape[0] != 1)
                if extra:
                    raise IqaError(f"{self.spec.path}: processor outputs {extra} are not per-token; family "
                                   f"{self.family.arch} is listed as fixed-grid")
                self._cache[key] = enc
            rows.append(self._cache[key])
        return left_pad(rows, self.tokenizer.pad_token_id or 0)

    def _pixel_inputs(self, pixel_values, texts: list[str], counts: list[int]) -> dict[str, Any]:
        size = self.image_size
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (3, size, size):
            raise IqaError(f"pixel_values of shape {tuple(pixel_values.shape)}: expected [N, 3, {size}, {size}]")
        if pixel_values.shape[0] != sum(counts):
            raise IqaError(f"{pixel_values.shape[0]} images for prompts holding {sum(counts)} placeholders")
        inputs = {k: v.to(self.device) for k, v in self._fixed_rows(texts, counts).items()}
        if sum(counts):
            inputs["pixel_values"] = pixel_values.to(device=self.device, dtype=self.dtype)
        return inputs

    def _batches(self, queries: Sequence[Query]) -> list[tuple[list[int], dict[str, Any]]]:
        """Model inputs for the queries: (query indices, inputs) per processor call. Fixed-grid
        families make one call; tiled ones one per kind of row (with or without images, with or
        without a BOS of their own), since one processor call tokenizes every row alike."""
        if not queries:
            raise IqaError("no queries to score")
        if not self.multi_image and any(len(q.images) > 1 for q in queries):
            raise IqaError(f"backend {self.family.arch}: takes one image per prompt")
        texts = [self.conversation(q) for q in queries]
        counts = [len(q.images) for q in queries]
        if self.pixel_space:
            images = [im for q in queries for im in q.images]
            pixels = self.normalize(self.to_pixels(images)) if images else _empty_pixels(self.image_size)
            return [(list(range(len(queries))), self._pixel_inputs(pixels, texts, counts))]
        kinds: dict[tuple[bool, bool], list[int]] = {}
        for i, (text, n) in enumerate(zip(texts, counts)):
            kinds.setdefault((n > 0, self._special(text)), []).append(i)
        out = []
        for (has_images, special), idx in kinds.items():
            images = [list(queries[i].images) for i in idx] if has_images else None
            enc = self._tokenized([texts[i] for i in idx], images, special)
            out.append((idx, {k: v.to(self.device) for k, v in enc.items()}))
        return out

    def _model_inputs(self, inputs: dict[str, Any], for_generate: bool = False) -> dict[str, Any]:
        import torch

        out = {k: (v.to(self.dtype) if torch.is_floating_point(v) else v) for k, v in inputs.items()}
        # RoPE only sees relative offsets, so a left pad changes no score; still, positions counted
        # from the mask are the ids a lone row gets, as `generate` counts them (1-D rope families)
        if self.family.positions == "mask" and not for_generate and "attention_mask" in out:
            mask = out["attention_mask"].long()
            out["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        return out

    # -- model -----------------------------------------------------------------------
    def _last_logits(self, inputs: dict[str, Any]):
        out = self.model(**self._model_inputs(inputs), use_cache=False, logits_to_keep=1)
        return out.logits[:, -1, :].float()

    def _generate(self, inputs: dict[str, Any], max_new_tokens: int) -> list[str]:
        import torch

        with torch.no_grad():
            out = self.model.generate(**self._model_inputs(inputs, for_generate=True), max_new_tokens=max_new_tokens,
                                      do_sample=False, pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def next_token_logits(self, pixel_values, prompt: str):
        """Logits [B, vocab] (float32) at the answer position; differentiable w.r.t. pixel_values."""
        self._need_grid("next_token_logits")
        batch = pixel_values.shape[0]
        text = self.conversation(prompt)
        return self._last_logits(self._pixel_inputs(pixel_values, [text] * batch, [1] * batch))

    def generate(self, pixel_values, prompt: str, max_new_tokens: int = 8) -> list[str]:
        self._need_grid("generate from pixels")
        batch = pixel_values.shape[0]
        text = self.conversation(prompt)
        return self._generate(self._pixel_inputs(pixel_values, [text] * batch, [1] * batch), max_new_tokens)

    def logits(self, queries: Sequence[Query]):
        import torch

        parts, rows = [], []
        for idx, inputs in self._batches(queries):
            parts.append(self._last_logits(inputs))
            rows += idx
        order = torch.empty(len(rows), dtype=torch.long)
        order[torch.tensor(rows, dtype=torch.long)] = torch.arange(len(rows))
        return torch.cat(parts).index_select(0, order.to(parts[0].device))

    def answers(self, queries: Sequence[Query], max_new_tokens: int = 8) -> list[str]:
        out: list[str] = [""] * len(queries)
        for idx, inputs in self._batches(queries):
            for i, text in zip(idx, self._generate(inputs, max_new_tokens)):
                out[i] = text
        return out

    def token_id(self, word: str) -> int:
        tid = first_text_token(self.tokenizer.encode(" " + word.strip(), add_special_tokens=False),
                               self.tokenizer.decode)
        if tid is not None:
            return tid
        raise IqaError(f"{self.spec.path}: the tokenizer has no token for {word!r}")

    def fingerprint(self) -> dict[str, Any]:
        template = self.chat_template or "plain:" + self.family.plain
        return {
            "arch": self.spec.arch, "family": self.family.arch, "path": self.spec.path,
            "revision": self.spec.revision or getattr(self.model.config, "_commit_hash", None),
            "model_class": type(self.model).__name__, "processor_class": type(self.processor).__name__,
            "dtype": str(self.dtype).replace("torch.", ""), "grid": self.family.grid,
            "resize": self.resize, "image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
            "template_sha": hashlib.sha256(template.encode()).hexdigest()[:12],
        }


def _empty_pixels(size: int):
    import torch

    return torch.zeros(0, 3, size, size)


def _hub_kwargs(spec: BackendSpec) -> dict[str, Any]:
    common: dict[str, Any] = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    if hub.offline():
        common["local_files_only"] = True
    return common


def traits(arch: str) -> BackendTraits | None:
    """The family row's declaration; None for hf-vlm, whose family is the model's (a tiled checkpoint
    named through it is held to resize=model when loaded, once its family is known)."""
    return FAMILIES[arch].traits if arch in FAMILIES else None


def load(spec: BackendSpec, device: str = "cpu") -> HfVlmBackend:
    """Load a transformers VLM of the family `spec.arch` names (hf-vlm: the one config.json names)."""
    try:
        import torch  # noqa: F401
        from safetensors import SafetensorError
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        from iqabench.models.safe_load import why_refused
    except ImportError as exc:
        raise IqaError(f"backend {spec.arch}: needs torch and transformers (pip install 'iqabench[mllm]'): {exc}") from exc
    dtype = resolve_dtype(spec.dtype, device)
    local = Path(spec.path).expanduser()
    source = str(local) if local.is_dir() else spec.path
    common = _hub_kwargs(spec)
    try:
        config = AutoConfig.from_pretrained(source, **common)
        fam = family_of_model_type(config.model_type, spec.path) if spec.arch == GENERIC_ARCH else family(spec.arch)
        if config.model_type not in fam.model_types:
            raise IqaError(f"{spec.path}: a {config.model_type} checkpoint, not one of backend {fam.arch} "
                           f"({', '.join(fam.model_types)}); use -o backend={GENERIC_ARCH} or the matching backend")
        processor = AutoProcessor.from_pretrained(source, **common)
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, **common)
    except (OSError, ValueError, KeyError, ImportError, pickle.UnpicklingError, SafetensorError) as exc:
        # transformers reads .bin weights with weights_only=True: a pickled object lands here
        raise IqaError(f"{spec.path}: cannot load the model or processor ({why_refused(exc)})") from None
    model.to(device).eval()
    model.requires_grad_(False)  # frozen: only inputs (e.g. a visual prompt) may receive gradients
    return HfVlmBackend(model, processor, spec, device, dtype, fam)
