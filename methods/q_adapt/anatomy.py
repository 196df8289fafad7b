"""Where the vision encoder, the connector and the language model sit in a backend's torch model.

Q-Adapt needs the three parts an LMM is made of (seed 002, section 3.1): LoRA goes on the
linear layers of the vision encoder and of the language model (not the connector, not the LM
head); the connector is tuned in both stages; the visual prompt rewrites the features the
connector reads. The backends store their torch model as `backend.model` (owl2: Owl2Model;
hf-vlm: a transformers image-text-to-text model); this module reads that attribute only.
"""
from __future__ import annotations

import dataclasses

from torch import nn

from iqabench.errors import IqaError

# transformers' Llava-family attribute names (LlavaModel; PaliGemma uses the same ones)
_HF_VISION = ("vision_tower", "vision_model")
_HF_CONNECTOR = ("multi_modal_projector", "mm_projector", "connector")
_HF_LANGUAGE = ("language_model", "text_model")


@dataclasses.dataclass
class Parts:
    model: nn.Module
    vision: nn.Module
    connector: nn.Module
    language: nn.Module
    feature_dim: int  # width of the features the connector reads
    kind: str  # "owl2" or "hf"

    def lora_targets(self) -> list[str]:
        """Full names of every nn.Linear in the vision encoder and the language model."""
        wanted = {id(self.vision), id(self.language)}
        names: list[str] = []
        prefixes = [name for name, module in self.model.named_modules() if id(module) in wanted]
        for name, module in self.model.named_modules():
            if not isinstance(module, nn.Linear) or not any(name.startswith(p + ".") for p in prefixes):
                continue
            if ".lora_" in name:  # peft's own A/B layers, once injected
                continue
            names.append(name.removesuffix(".base_layer"))  # an injected layer keeps its original inside
        if not names:
            raise IqaError("q-adapt: found no linear layer in the vision encoder or the language model for LoRA")
        return names

    def connector_prefix(self) -> str:
        return next(name for name, module in self.model.named_modules() if module is self.connector)


def torch_model(backend) -> nn.Module:
    model = getattr(backend, "model", None)
    if not isinstance(model, nn.Module):
        raise IqaError(f"q-adapt: backend {type(backend).__name__} exposes no torch model (.model); "
                       f"LoRA and the visual prompt need one")
    return model


def find_parts(backend) -> Parts:
    model = torch_model(backend)
    if all(hasattr(model, a) for a in ("vision", "abstractor", "decoder")):  # the project's mPLUG-Owl2
        return Parts(model, model.vision, model.abstractor, model.decoder, model.config.vision.hidden_size, "owl2")
    inner = getattr(model, "model", model)
    found = {}
    for role, names in (("vision", _HF_VISION), ("connector", _HF_CONNECTOR), ("language", _HF_LANGUAGE)):
        found[role] = next((getattr(inner, n) for n in names if isinstance(getattr(inner, n, None), nn.Module)), None)
    missing = [role for role, module in found.items() if module is None]
    if missing:
        raise IqaError(f"q-adapt: cannot find the {', '.join(missing)} of {type(model).__name__} "
                       f"(supported: mPLUG-Owl2 and Llava-style models with a separate connector)")
    first = next((m for m in found["connector"].modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        raise IqaError(f"q-adapt: the connector of {type(model).__name__} has no linear layer to read its width from")
    return Parts(model, found["vision"], found["connector"], found["language"], first.in_features, "hf")
