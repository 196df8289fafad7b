"""`iqabench options METHOD`: a method's options (type, default, help) and its aliases."""
from __future__ import annotations

import json
from typing import Any

import click

from iqabench.cli.settings import Settings, with_settings


@click.command("options", epilog="""\b
Examples:
  iqabench options brisque-svr
  iqabench options piqe
  iqabench run --method brisque-svr --dataset synthetic -o 'c_grid=[1, 4]'""")
@click.argument("method")
@with_settings
def options_command(settings: Settings, method: str) -> None:
    """Print METHOD's options (what -o KEY=VALUE accepts) with their types, defaults and help,
    and the other names the method answers to."""
    from iqabench import hub

    with hub.no_downloads():  # describing a method never downloads
        _describe(method)


def _describe(method: str) -> None:
    from iqabench import registry

    cls = registry.methods.get(method)
    aliases = sorted(a for a, target in registry.methods.aliases().items() if target == cls.name and a != cls.name)
    click.echo(f"{cls.name} ({cls.info.kind}): {cls.info.description}")
    click.echo(f"aliases: {', '.join(aliases) if aliases else 'none'}")
    fields = cls.Options.model_fields
    if not fields:
        click.echo("options: none")
        return
    click.echo("options (-o KEY=VALUE; values are JSON when they parse as JSON):")
    docs = field_help(cls.Options)
    rows = [(name, _type_name(field.annotation), _default_text(field),
             " ".join((field.description or docs.get(name, "")).split())) for name, field in fields.items()]
    widths = [min(max(len(r[i]) for r in rows), 40) for i in range(2)]
    for name, type_name, default, help_text in rows:
        click.echo(f"  {name:{widths[0]}}  {type_name:{widths[1]}}  {default}")
        if help_text:  # on its own line: defaults of nested options are long
            click.echo(f"      {help_text}")


def field_help(options: type) -> dict[str, str]:
    """Field name -> the string literal written under it in the class body that last declares the field,
    when that class is an iqabench Options (as pydantic's use_attribute_docstrings would read it, but
    only when asked: it reads and parses source files)."""
    from iqabench.api import Options

    out: dict[str, str] = {}
    for name in options.model_fields:
        owner = next((k for k in options.__mro__ if name in vars(k).get("__annotations__", {})), None)
        if isinstance(owner, type) and issubclass(owner, Options):
            text = _docstrings_of(owner).get(name)
            if text is not None:
                out[name] = text
    return out


def _docstrings_of(klass: type) -> dict[str, str]:
    import ast
    import inspect
    import textwrap

    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # built in code (pydantic.create_model), or no source on disk
        return {}
    body = next((node.body for node in ast.parse(source).body if isinstance(node, ast.ClassDef)), [])
    return {field.target.id: inspect.cleandoc(after.value.value) for field, after in zip(body, body[1:])
            if isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
            and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)}


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default_text(field: Any) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if hasattr(value, "model_dump"):  # nested options (e.g. a backend spec) as the JSON -o takes
        value = value.model_dump(mode="json")
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return f"default {text}"
