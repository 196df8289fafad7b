"""Stage-1 language-model loss (seed 002, eq. 2) on one conversation, for each backend.

A conversation becomes one token sequence: the backend's own prompt for the first question
(with its image placeholder), then the answer and EOS, then each later question in the
backend's template and its answer. Only answer tokens (and their EOS) are predicted; the loss
is the summed token cross-entropy, returned with the token count so a batch averages per token.
Answers are tokenised on their own (no leading space), so an answer starting with "good"
begins with the same token the softmax score reads.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from iqabench.errors import IqaError

from .instructions import Conversation

OWL2_TURN = "USER: {question} ASSISTANT:"  # mPLUG-Owl2's template for a turn without the image


@dataclasses.dataclass(frozen=True)
class Encoded:
    ids: tuple[int, ...]
    targets: tuple[int, ...]  # indices of the tokens the loss predicts


class _Encoder:
    def __init__(self, backend):
        self.backend = backend
        self.tokenizer = backend.tokenizer
        self.eos = self.tokenizer.eos_token_id
        if self.eos is None:
            raise IqaError(f"q-adapt: the tokenizer of {backend.spec.path} has no EOS token to end answers with")

    def text_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def encode(self, conv: Conversation) -> Encoded:
        ids: list[int] = []
        targets: list[int] = []
        for turn, (question, answer) in enumerate(conv.turns):
            if turn == 0:
                ids += self.first_turn(question)  # not cached: instruction sets hold ~10^5 distinct questions
            else:
                ids += self.later_turn(question)
            start = len(ids)
            ids += self.text_ids(answer) + [self.eos]
            targets += range(start, len(ids))
        return Encoded(tuple(ids), tuple(targets))


class Owl2Encoder(_Encoder):
    def first_turn(self, question: str) -> list[int]:
        """The ids `Owl2Backend.prompt_ids` builds (BOS, each text chunk on its own, the image id
        between them), made here so that the backend's per-prompt cache does not grow with them."""
        from iqabench.models.owl2.backend import IMAGE_PLACEHOLDER, full_prompt
        from iqabench.models.owl2.modeling import IMAGE_TOKEN_INDEX

        bos = self.tokenizer.bos_token_id
        ids = [] if bos is None else [bos]
        for i, chunk in enumerate(full_prompt(question).split(IMAGE_PLACEHOLDER)):
            if i:
                ids.append(IMAGE_TOKEN_INDEX)
            if chunk:
                ids += self.text_ids(chunk)
        return ids

    def later_turn(self, question: str) -> list[int]:
        return self.text_ids(OWL2_TURN.format(question=question))

    def loss(self, encoded: Encoded, pixels: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Owl2Model splices the image's visual tokens in place of the one placeholder id."""
        from iqabench.models.owl2.modeling import IMAGE_TOKEN_INDEX

        model = self.backend.model
        ids = torch.tensor(encoded.ids, dtype=torch.long, device=pixels.device)
        where = (ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist()
        if len(where) != 1:
            raise IqaError("q-adapt: an owl2 conversation needs exactly one image placeholder")
        shift = model.config.num_visual_tokens - 1  # one placeholder becomes this many more positions
        positions = [t - 1 + (shift if t - 1 > where[0] else 0) for t in encoded.targets]
        logits = model(ids, pixels.to(self.backend.dtype), positions=positions)[0]
        labels = ids[list(encoded.targets)]
        return F.cross_entropy(logits.float(), labels, reduction="sum"), len(encoded.targets)


class HfEncoder(_Encoder):
    def first_turn(self, question: str) -> list[int]:
        """The backend's conversation text through its processor with one blank image (the ids
        do not depend on the pixels); no special tokens added when the text already opens with
        BOS, as the backend does."""
        from PIL import Image

        size = self.backend.image_size
        if not size:
            raise IqaError(f"q-adapt: backend {self.backend.spec.arch} tiles images by their size; "
                           f"stage 1 needs a fixed pixel grid (Llava-style models)")
        text = self.backend.conversation(question)
        bos = self.tokenizer.bos_token
        blank = Image.new("RGB", (size, size), (128, 128, 128))
        enc = self.backend.processor(text=[text], images=[[blank]], return_tensors="pt",
                                     add_special_tokens=not (bos and text.startswith(bos)))
        return enc["input_ids"][0].tolist()

    def later_turn(self, question: str) -> list[int]:
        from iqabench.models.hf_vlm import PLAIN_TEMPLATE

        if self.backend.chat_template:
            messages = [{"role": "user", "content": [{"type": "text", "text": question}]}]
            text = self.backend.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            text = PLAIN_TEMPLATE.format(image="", question=question).replace("USER: \n", "USER: ")
        return self.text_ids(text)

    def loss(self, encoded: Encoded, pixels: torch.Tensor) -> tuple[torch.Tensor, int]:
        model = self.backend.model
        ids = torch.tensor([encoded.ids], dtype=torch.long, device=pixels.device)
        keep = torch.tensor([t - 1 for t in encoded.targets], dtype=torch.long, device=pixels.device)
        out = model(input_ids=ids, pixel_values=pixels.to(self.backend.dtype), use_cache=False, logits_to_keep=keep)
        labels = ids[0, list(encoded.targets)]
        return F.cross_entropy(out.logits[0].float(), labels, reduction="sum"), len(encoded.targets)


def encoder_for(backend, kind: str) -> _Encoder:
    return Owl2Encoder(backend) if kind == "owl2" else HfEncoder(backend)
