"""`iqabench datasets`: which datasets are found under the data root, and what is expected if not."""
from __future__ import annotations

import click

from iqabench.cli.settings import Settings, with_settings


@click.command("datasets", epilog="""\b
Examples:
  iqabench datasets
  iqabench datasets --data-root /mnt/iqa-data""")
@with_settings
def datasets_command(settings: Settings) -> None:
    """Show which datasets are found under the data root; for the others, the files expected and
    where each dataset is published."""
    from iqabench import registry

    root = settings.data_root
    for name in registry.datasets.names():
        card = registry.datasets.get(name)
        folder = card.locate(root)
        if folder is not None:
            click.echo(f"{name:18} found     {folder}")
        elif card.build is not None:
            click.echo(f"{name:18} built on first use under {root / card.folder_names[0]}")
        else:
            click.echo(f"{name:18} missing   {card.describe_missing(root).split(': ', 1)[-1]}")
