"""One validation style for what users write: method options, dataset cards, reader specs, suites.

Each is a pydantic model that refuses unknown keys (`Strict`), and every ValidationError becomes
one line through `validation_line`: where (a file, or a method), then each problem at its place, a
misspelt key with the closest valid name:

    datasets/x/card.toml: [reader]: unknown key 'colum' (did you mean 'column'?)
    method piqe: unknown option 'blcok' (did you mean 'block'?); valid options: ...
"""
from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

import pydantic

MAX_PROBLEMS = 3  # problems spelt out in one line; the rest are counted


class Strict(pydantic.BaseModel):
    """A model of a user's file: unknown keys refused, no silent coercion ("yes" is not true)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True)


Place = Callable[[tuple], str]


def dotted(loc: tuple) -> str:
    """('rows', 2, 'label') -> 'rows[2].label'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def toml_place(loc: tuple) -> str:
    """A key of a TOML file: ('reader', 'match', 0, 'pattern') -> '[reader].match[0].pattern';
    a top-level key stays bare ('score_range')."""
    if len(loc) < 2 or isinstance(loc[0], int):
        return dotted(loc)
    rest = dotted(loc[1:])
    return f"[{loc[0]}]" + (rest if rest.startswith("[") else f".{rest}")


# the place of a table (where an unknown or missing key is): ('reader',) -> '[reader]'
toml_place.table = lambda loc: f"[{loc[0]}]" if len(loc) == 1 and isinstance(loc[0], str) else toml_place(loc)


def known_keys(model: type[pydantic.BaseModel], loc: Sequence) -> list[str]:
    """The field names of the (nested) model at `loc`, for a "did you mean"; [] when not a model."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation, part)
        if annotation is None:
            return []
    annotation = _unwrap(annotation, None)
    return list(annotation.model_fields) if _is_model(annotation) else []


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


def _unwrap(annotation: Any, part: Any) -> Any:
    """One step down `loc`: a model's field, a list's item, a dict's value; Optional[X] is X."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        models = [a for a in args if a is not type(None)]
        return _unwrap(models[0], part) if len(models) == 1 else None
    if origin is typing.Annotated:
        return _unwrap(args[0], part)
    if part is None:
        return annotation
    if _is_model(annotation):
        field = annotation.model_fields.get(str(part))
        return None if field is None else field.annotation
    if origin in (list, tuple, Sequence) and isinstance(part, int):
        return args[0] if args else None
    if origin is dict and isinstance(part, str):
        return args[1] if len(args) == 2 else None
    return None


def _clean(model: type[pydantic.BaseModel], loc: tuple) -> tuple[tuple, bool]:
    """`loc` without what is no key of the file: a union member's tag (('sheet', 'int') -> ('sheet',))
    and a dict key's marker; and whether a union tag was dropped."""
    out, annotation, tagged = [], model, False
    for part in loc:
        if part == "[key]":
            continue
        union = annotation is not None and typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(
            [a for a in typing.get_args(annotation) if a is not type(None)]) > 1
        if union and isinstance(part, str):
            tagged, annotation = True, None  # the member's tag: the member is not followed further
            continue
        out.append(part)
        annotation = _unwrap(annotation, part) if annotation is not None else None
    return tuple(out), tagged


def problems(exc: pydantic.ValidationError, model: type[pydantic.BaseModel], place: Place = dotted,
             noun: str = "key", at: tuple = ()) -> list[str]:
    """Each problem as `<place>: <what>`; an unknown top-level name is `unknown <noun> 'x'`. `at`:
    where `model` sits in the file (('reader',) for a card's [reader] table)."""
    out: dict[tuple, list[str]] = {}  # place -> what is wrong there (several: the members of a union)
    given_at: dict[tuple, str] = {}
    # an unknown key first: its "did you mean" usually explains the missing key that follows
    for error in sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden"):
        loc, tagged = _clean(model, tuple(error.get("loc", ())))
        kind = error.get("type")
        if kind in ("extra_forbidden", "missing") and loc and not tagged:
            inner, name = loc[:-1], loc[-1]
            parent = at + inner
            word = noun if not parent else "key"
            if kind == "extra_forbidden":
                close = difflib.get_close_matches(str(name), known_keys(model, inner), n=1, cutoff=0.5)
                text = f"unknown {word} {str(name)!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            else:
                text = f"missing {word} {str(name)!r}"
            table = getattr(place, "table", place)  # a place that writes tables its own way (TOML)
            out.setdefault(("whole", at + loc), []).append(f"{table(parent)}: {text}" if parent else text)
            continue
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        loc = at + loc
        messages = out.setdefault(("at", loc), [])
        if messages and message.startswith("Input should be "):
            message = message.removeprefix("Input should be ")  # "a valid string or a valid integer"
        if message not in messages:
            messages.append(message)
        given = error.get("input")
        if not isinstance(given, (dict, list, pydantic.BaseModel)):
            text = repr(given)
            given_at[loc] = f" (got {text if len(text) <= 60 else text[:57] + '...'})"
    lines = []
    for (kind, loc), messages in out.items():
        if kind == "whole":
            lines += messages
            continue
        text = " or ".join(messages) + given_at.get(loc, "")
        lines.append(f"{place(loc)}: {text}" if loc else text)  # a whole-model check has no place
    return list(dict.fromkeys(lines))


def validation_line(where: str, exc: pydantic.ValidationError, model: type[pydantic.BaseModel],
                    place: Place = dotted, noun: str = "key", tail: str = "", at: tuple = ()) -> str:
    """`<where>: <problem>; <problem>; ...<tail>`, at most MAX_PROBLEMS spelt out."""
    found = problems(exc, model, place, noun, at)
    shown = "; ".join(found[:MAX_PROBLEMS])
    more = f" (and {len(found) - MAX_PROBLEMS} more problem(s))" if len(found) > MAX_PROBLEMS else ""
    return f"{where}: {shown}{more}{tail}"


def validate(model: type[pydantic.BaseModel], data: Any, where: str, place: Place = dotted, noun: str = "key",
             tail: str = "", at: tuple = ()) -> Any:
    """`model(**data)`, or one IqaError line naming `where` and each problem."""
    from iqabench.errors import IqaError

    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise IqaError(validation_line(where, exc, model, place, noun, tail, at)) from None


def option_problems(cls: Any, exc: pydantic.ValidationError) -> str:
    """The line for a method's options (`cls.Options`): each problem, then every option it accepts."""
    valid = list(cls.Options.model_fields)
    tail = f"; valid options: {', '.join(valid) or 'none'} (types and defaults: `iqabench options {cls.name}`)"
    return validation_line(f"method {cls.name}", exc, cls.Options, lambda loc: "option " + dotted(loc),
                           noun="option", tail=tail)
