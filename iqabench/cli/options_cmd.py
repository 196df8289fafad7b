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
    rows = [(name, _type_name(field.annotation), _default_text(field), " ".join((field.description or "").split()))
            for name, field in fields.items()]
    widths = [min(max(len(r[i]) for r in rows), 40) for i in range(2)]
    for name, type_name, default, help_text in rows:
        click.echo(f"  {name:{widths[0]}}  {type_name:{widths[1]}}  {default}")
        if help_text:  # on its own line: defaults of nested options are long
            click.echo(f"      {help_text}")


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
