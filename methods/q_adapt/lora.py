"""LoRA on the vision encoder and the language model (stage 1), through peft.

peft's `inject_adapter_in_model` swaps each target nn.Linear for a LoRA layer in place, so the
backend keeps calling the same model object. Rank 128, alpha 256 and dropout 0.05 on every
linear layer of the vision encoder and the LLM (not the connector, not the LM head) are the
public Q-Adapt training scripts' settings; the paper itself gives no LoRA sizes.
"""
from __future__ import annotations

import torch
from torch import nn

from iqabench.errors import IqaError

from .anatomy import Parts

ADAPTER = "default"


def inject(parts: Parts, rank: int, alpha: float, dropout: float, seed: int) -> list[str]:
    """Add LoRA layers (A: peft's Kaiming init from `seed`, B: zeros); returns the targets."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = parts.lora_targets()
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, parts.model, adapter_name=ADAPTER)
    # new modules start in training mode: LoRA's dropout would then act while scoring
    set_dropout_training(parts.model, False)
    return targets


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if ".lora_A." in name or ".lora_B." in name}


def set_dropout_training(model: nn.Module, training: bool) -> None:
    """The backbone stays in eval mode; only LoRA's own dropout follows the stage."""
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.eval()
            module.lora_dropout.train(training)


def load_tensors(params: dict[str, nn.Parameter], tensors: dict[str, torch.Tensor], source: str, what: str) -> None:
    """Copy saved tensors into parameters, checking names and shapes first."""
    if set(tensors) != set(params):
        missing, extra = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
        raise IqaError(f"{source}: {what} do not match this model (missing {missing[:3]}, unexpected {extra[:3]}); "
                       f"was it trained with other options or another model?")
    for name, p in params.items():
        if tuple(tensors[name].shape) != tuple(p.shape):
            raise IqaError(f"{source}: {what} tensor {name} has shape {tuple(tensors[name].shape)}, "
                           f"the model needs {tuple(p.shape)}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[name].to(device=p.device, dtype=p.dtype))
