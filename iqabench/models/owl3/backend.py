"""The `owl3` MLLM backend: mPLUG-Owl3 checkpoints in-process behind the `MLLMBackend` interface.

Conversations are the official processor's ChatML, each piece tokenized on its own as it does:
`<|im_start|>system\n{system}<|im_end|>` (an empty system turn when there is none), then
`\n<|im_start|>user\n{text}<|im_end|>` split at the image markers, then
`\n<|im_start|>assistant\n` (+ the answer prefix). A text without `<|image|>` gets its images
first, as in the model card (`<|image|>\n{question}`). Each image becomes its crops and global
view (processor.py) and each of those one marker token; a whole-template query is tokenized the
same way without the ChatML turns. Rows are left-padded, so a batch scores each row as alone.

The processor crops each image by its shape, so there is no fixed pixel grid (`pixel_space` is
False): image-level methods (softmax presets, Q-Align levels, Dog-IQA) use `logits(queries)`.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from iqabench.errors import IqaError
from iqabench.models.backend import IMAGE_PLACEHOLDER, BackendSpec, BackendTraits, MLLMBackend, Query, first_text_token

from . import processor

# Owl3 crops each image by its shape (no fixed grid) and takes several images per prompt;
# resize model: crops + global view, squash: the global view only
TRAITS = BackendTraits(grid="tiled", multi_image=True, resize=("model", "squash"))
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
SYSTEM = "<|im_start|>system\n{system}<|im_end|>"
USER = "\n<|im_start|>user\n{content}<|im_end|>"
ASSISTANT = "\n<|im_start|>assistant\n"
_MARK = re.compile(f"({re.escape(processor.IMAGE_MARK)})")


def conversation(query: Query) -> str:
    """The whole text of a query (system, user turn, generation prompt, answer prefix), with one
    `<|image|>` per image still to be expanded into its crops."""
    if query.template:
        text = query.text
    else:
        content = query.text
        if IMAGE_PLACEHOLDER not in content and query.images:
            content = IMAGE_PLACEHOLDER * len(query.images) + "\n" + content
        text = SYSTEM.format(system=query.system or "") + USER.format(content=content) + ASSISTANT
    return query.answer_start(text)


class Owl3Backend(MLLMBackend):
    pixel_space = TRAITS.grid == "fixed"
    multi_image = TRAITS.multi_image
    mean, std = processor.MEAN, processor.STD

    def __init__(self, spec: BackendSpec, device: str = "cpu"):
        from iqabench.models.backend import resolve_dtype

        from .weights import load_owl3

        if spec.trust_remote_code:
            raise IqaError("owl3 backend: runs no remote code; trust_remote_code is for the owl3-worker backend")
        self.spec, self.device = spec, str(device)
        self.dtype = resolve_dtype(spec.dtype, self.device)
        self.model, self.tokenizer, self.folder = load_owl3(spec.path, spec.revision, self.dtype, self.device)
        self.image_size = None  # no fixed grid (see the module docstring)
        self.crop_size = self.model.config.vision.image_size
        self.stop_ids = [i for i in (self.tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS)
                         if i is not None and i != self.tokenizer.unk_token_id]
        self.mark_ids = self._encode(processor.IMAGE_MARK)
        self._ids_cache: dict[str, list[int]] = {}

    # -- text ---------------------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids) if text else []

    def _chunk_ids(self, chunk: str) -> list[int]:
        if chunk not in self._ids_cache:
            self._ids_cache[chunk] = self._encode(chunk)
        return self._ids_cache[chunk]

    def tokenize(self, text: str) -> tuple[list[int], list[int]]:
        """Ids of an expanded conversation and the position of each marker's first token."""
        ids: list[int] = []
        marks: list[int] = []
        for chunk in _MARK.split(text):
            if chunk == processor.IMAGE_MARK:
                marks.append(len(ids))
                ids += self.mark_ids
            else:
                ids += self._chunk_ids(chunk)
        return ids, marks

    def _row(self, query: Query):
        """(ids, marker positions, normalised views) of one query."""
        import torch

        text = conversation(query)
        pieces = _MARK.split(text)
        views, k = [], 0
        for i, piece in enumerate(pieces):
            if piece == processor.IMAGE_MARK:
                image_views, expanded = processor.process_image(query.images[k], self.crop_size,
                                                                crops=self.spec.resize == "model")
                views.append(image_views)
                pieces[i] = expanded
                k += 1
        ids, marks = self.tokenize("".join(pieces))
        return ids, marks, (torch.cat(views) if views else None)

    # -- batches ------------------------------------------------------------------------------
    def inputs(self, queries: Sequence[Query]):
        """Left-padded ids [B, T], mask [B, T] and the batch's Media."""
        import torch

        if not queries:
            raise IqaError("no queries to score")
        rows = [self._row(q) for q in queries]
        width = max(len(ids) for ids, _, _ in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        crops, markers, views, used = [], [], [], 0
        for b, (ids, marks, row_views) in enumerate(rows):
            start = width - len(ids)
            input_ids[b, start:] = torch.tensor(ids, dtype=torch.long)
            mask[b, start:] = True
            markers.append([start + m for m in marks])
            n = 0 if row_views is None else row_views.shape[0]
            crops.append(list(range(used, used + n)))
            used += n
            if n:
                views.append(row_views)
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        features = None
        if views:
            features = self.model.encode_images(torch.cat(views).to(device=self.device, dtype=self.dtype))
        return input_ids, mask, self.model.media(features, crops, markers, mask)

    def logits(self, queries: Sequence[Query]):
        input_ids, mask, media = self.inputs(queries)
        return self.model(input_ids, mask, media)

    def answers(self, queries: Sequence[Query], max_new_tokens: int = 8) -> list[str]:
        import torch

        with torch.no_grad():
            input_ids, mask, media = self.inputs(queries)
            new = self.model.generate_greedy(input_ids, mask, media, max_new_tokens, self.stop_ids)
        return [text.strip() for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    # -- no pixel space -----------------------------------------------------------------------
    def _no_grid(self, what: str):
        raise IqaError(f"owl3 backend: {what} needs a fixed pixel grid; mPLUG-Owl3 crops each image by its "
                       "shape, so pixel-space methods (visual prompts) cannot run on it")

    def to_pixels(self, images: Sequence[Any]):
        self._no_grid("to_pixels")

    def next_token_logits(self, pixel_values, prompt: str):
        self._no_grid("next_token_logits")

    def generate(self, pixel_values, prompt: str, max_new_tokens: int = 8) -> list[str]:
        self._no_grid("generate")

    def token_id(self, word: str) -> int:
        """The first token of " word" that carries text (Qwen's byte-level BPE: "Ġgood", or "7")."""
        tid = first_text_token(self._encode(" " + word.strip()), self.tokenizer.decode)
        if tid is not None:
            return tid
        raise IqaError(f"{self.spec.path}: the tokenizer has no token for {word!r}")

    def fingerprint(self) -> dict[str, Any]:
        from iqabench.models.checkpoint import identity

        template = SYSTEM + USER + ASSISTANT + processor.cut_text(1, 1) + repr(processor.GRIDS)
        return {
            **identity("owl3", self.spec, self.folder, self.dtype),
            "crop_size": self.crop_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "template_sha": hashlib.sha256(template.encode()).hexdigest()[:12],
        }


def load(spec: BackendSpec, device: str = "cpu") -> Owl3Backend:
    return Owl3Backend(spec, device)


def traits(arch: str) -> BackendTraits:
    return TRAITS
