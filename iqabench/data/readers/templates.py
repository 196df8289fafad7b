"""Name templates (`{image}.{dst_type.tag}.{dst_lev}.png`) and the value maps they look through.

A template mixes literal text with `{name}` and `{name.key}` references; `{{` and `}}` stand for
literal braces. `name` is a metadata column or a field derived earlier (a regex group, `id`, `ref`,
`group`, `group_index`). When a value map is declared for `name`, `{name}` gives the mapped text
(or the canonical key when the map's values are tables) and `{name.key}` one entry of that table.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping

from iqabench.errors import IqaError

_PART = re.compile(r"\{\{|\}\}|\{([^{}.]+)(?:\.([^{}.]+))?\}|[{}]|[^{}]+")


@dataclasses.dataclass(frozen=True, eq=False)
class Template:
    text: str
    parts: tuple[tuple[str, str | None, str | None], ...]  # (literal, name, key)

    @classmethod
    def parse(cls, text: str, where: str) -> "Template":
        if not isinstance(text, str) or not text:
            raise IqaError(f"{where}: expected a non-empty text template, got {text!r}")
        parts = []
        for m in _PART.finditer(text):
            token = m.group(0)
            if token in ("{{", "}}"):
                parts.append((token[0], None, None))
            elif m.group(1) is not None:
                parts.append(("", m.group(1).strip(), m.group(2) and m.group(2).strip()))
            elif token in ("{", "}"):
                raise IqaError(f"{where}: unbalanced brace in template {text!r} (write {{{{ or }}}} for a literal one)")
            else:
                parts.append((token, None, None))
        return cls(text, tuple(parts))

    def names(self) -> list[str]:
        return [name for _, name, _ in self.parts if name is not None]

    def keys(self) -> list[tuple[str, str]]:
        return [(name, key) for _, name, key in self.parts if name is not None and key is not None]

    def bare_name(self) -> str | None:
        """The name when the template is exactly one `{name}` reference."""
        if len(self.parts) == 1 and self.parts[0][1] is not None and self.parts[0][2] is None:
            return self.parts[0][1]
        return None

    def render(self, value_of: Callable[[str, str | None], str | None]) -> str | None:
        """The text, or None when a referenced value is missing (an optional regex did not match)."""
        out = []
        for literal, name, key in self.parts:
            if name is None:
                out.append(literal)
                continue
            value = value_of(name, key)
            if value is None:
                return None
            out.append(value)
        return "".join(out)


@dataclasses.dataclass(frozen=True, eq=False)
class ValueMap:
    """Published values of one column -> canonical entries (text, or a table of keys)."""
    values: Mapping[str, Any]
    aliases: Mapping[str, str]
    ignore_case: bool

    def _norm(self, text: str) -> str:
        text = text.strip()
        return text.lower() if self.ignore_case else text

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_norm", {self._norm(k): k for k in self.values})
        object.__setattr__(self, "_alias_norm", {self._norm(k): v for k, v in self.aliases.items()})

    def lookup(self, value: str) -> str | None:
        """The canonical key for a published value, or None when it is unknown."""
        norm = self._norm(value)
        norm = self._norm(self._alias_norm.get(norm, norm))
        return self._by_norm.get(norm)

    def known(self) -> str:
        return ", ".join(self.values)

    def render(self, key: str, attr: str | None) -> str:
        entry = self.values[key]
        if attr is None:
            return entry if isinstance(entry, str) else key
        return str(entry[attr])
