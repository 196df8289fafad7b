"""Method options as the user types them: `-o key=value` strings, values read as JSON when they parse.

Kept free of heavy imports (no pydantic, no registry): the command line parses options before
anything else so that a malformed pair fails at once, before any model or dataset is touched.
"""
from __future__ import annotations

import json
from typing import Any

from iqabench.errors import IqaError


def parse_option_pairs(pairs: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """`["c_grid=[1,4]", "name=foo"]` -> `{"c_grid": [1, 4], "name": "foo"}`.

    A value that is valid JSON (number, list, object, true/false/null, quoted string) is decoded;
    anything else is kept as the plain string, so paths need no quoting; a value that opens like JSON
    ({, [ or ") but does not parse is refused, with the position of the typo. A key given twice is an
    error rather than a silent last-one-wins."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise IqaError(f"option {pair!r}: expected key=value (e.g. -o resize_short_side=512)")
        if key in out:
            raise IqaError(f"option {key!r} is given twice")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as exc:
            if value.lstrip()[:1] in ("{", "[", '"'):  # meant as JSON: a typo, not a plain string
                raise IqaError(f"option {key}: {value!r} is not valid JSON: {exc.msg} at position {exc.pos} "
                               "(quote the whole pair in the shell, e.g. -o 'key={\"a\": 1}')") from None
            out[key] = value
    return out
