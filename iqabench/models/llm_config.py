"""Reading an official `config.json` into a family's frozen size dataclasses (mPLUG-Owl2, mPLUG-Owl3):
the rules the families share. Each family keeps its own dataclasses (their defaults are its
checkpoint's sizes) and the checks only it needs."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from iqabench.errors import IqaError


def pick(kind, raw: dict[str, Any]):
    """A `kind` dataclass from the fields of `raw` it has; absent and null values keep the defaults."""
    fields = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in raw.items() if k in fields and v is not None})


def text_sizes(kind, raw: dict[str, Any]):
    """The language model's sizes; no `num_key_value_heads` means one K/V head per attention head."""
    text = pick(kind, raw)
    if raw.get("num_key_value_heads") is None:
        text = dataclasses.replace(text, num_key_value_heads=text.num_attention_heads)
    return text


def refuse_rope_scaling(raw: dict[str, Any], source: str, arch: str) -> None:
    """Only plain RoPE is implemented: any other `rope_scaling` is one line."""
    rope_scaling = raw.get("rope_scaling")
    if rope_scaling not in (None, {}) and (rope_scaling.get("type") or rope_scaling.get("rope_type")) != "default":
        raise IqaError(f"{source}: rope_scaling {rope_scaling!r} is not supported by the {arch} backend")


def head_problems(parts: Iterable[tuple[str, int, int]]) -> list[str]:
    """(name, hidden_size, heads) -> a problem for each hidden size its heads do not divide."""
    return [f"{name} hidden_size {hidden} not divisible by {heads} heads"
            for name, hidden, heads in parts if hidden % heads]


def refuse_problems(source: str, family: str, problems: list[str]) -> None:
    if problems:
        raise IqaError(f"{source}: unsupported {family} config: " + "; ".join(problems))
