"""`iqabench list methods|datasets|backends|splits DATASET`."""
from __future__ import annotations

import click

from iqabench.cli.settings import Settings, global_options, with_settings


@click.group("list", invoke_without_command=True, epilog="""\b
Examples:
  iqabench list methods
  iqabench list methods --all
  iqabench list datasets
  iqabench list backends
  iqabench list splits koniq10k""")
@global_options
@click.pass_context
def list_group(ctx: click.Context) -> None:
    """List registered methods, datasets, MLLM backends, or the splits of a dataset."""
    if ctx.invoked_subcommand is None:  # bare `iqabench list`: what can be listed
        click.echo(ctx.get_help())


@list_group.command("methods", short_help="Methods, what they need, whether they run here.", epilog="""\b
Examples:
  iqabench list methods
  iqabench list methods --all --plugin mypkg/sharpness.py""")
@click.option("--all", "expand", is_flag=True, help="Expand families (every pyiqa metric).")
@with_settings
def list_methods(settings: Settings, expand: bool) -> None:
    """Every method: its kind, what it needs, and whether it can run here (and why not)."""
    from iqabench import hub

    with hub.no_downloads():  # "runs here?" is answered from what is on disk, never by fetching
        _print_methods(expand)


def _print_methods(expand: bool) -> None:
    from iqabench import registry

    reg = registry.methods
    aliases = reg.aliases()
    names = reg.names(expand_families=expand)
    shown = names + ([] if expand else sorted(a for a, t in aliases.items() if ":" in t))
    click.echo(f"{'method':34} {'kind':10} {'needs':48} runs here?")
    for name in shown:
        if name.endswith(":<name>"):
            click.echo(f"{name:34} {'family':10} {'see --all; aliases below':48} -")
            continue
        cls = reg.get(name)
        info = cls.info
        needs = info.needs_weights or "nothing to download"
        if info.needs_gpu:
            needs += " + GPU"
        reason = cls.check_available()
        status = "yes" if reason is None else f"no: {reason}"
        title = name if aliases.get(name, name) == name else f"{name} -> {aliases[name]}"
        click.echo(f"{title:34} {info.kind:10} {needs[:48]:48} {status}")


@list_group.command("datasets", short_help="Datasets, their labels and default split.", epilog="""\b
Example:
  iqabench list datasets""")
@with_settings
def list_datasets(settings: Settings) -> None:
    """Every dataset: label name, range and direction, default split, kind of images."""
    from iqabench import registry

    click.echo(f"{'dataset':18} {'labels':26} {'default split':28} images")
    for name in registry.datasets.names():
        card = registry.datasets.get(name)
        direction = "higher better" if card.higher_better else "LOWER better"
        labels = f"{card.label_name} {card.score_range[0]:g}-{card.score_range[1]:g} {direction}"
        kind = "synthetic-distortion set" if card.synthetic_distortions else "authentic/generated"
        click.echo(f"{name:18} {labels:26} {card.default_split:28} {kind}")


@list_group.command("splits", short_help="The split names a dataset accepts.", epilog="""\b
Examples:
  iqabench list splits koniq10k
  iqabench run --method piqe --dataset koniq10k --split official""")
@click.argument("dataset")
@with_settings
def list_splits(settings: Settings, dataset: str) -> None:
    """The split names DATASET accepts, after its default: committed split files first (each with
    its train/val/test sizes and its source), then the computed forms (braces mark a template: ratio{TR}-{VA}-{TE}-seed{S} is e.g. ratio80-0-20-seed1)."""
    from iqabench import registry
    from iqabench.data import splits
    from iqabench.errors import IqaError

    card = registry.datasets.get(dataset)  # an unknown name fails here with "did you mean"
    if not hasattr(splits, "available_splits"):
        raise IqaError("this iqabench cannot list splits (iqabench.data.splits.available_splits is missing)")
    recipes: dict[str, list[str]] = {}  # split -> the methods whose recipe runs on it by default
    for name, chosen in _recipe_splits(card.name).items():
        recipes.setdefault(chosen, []).append(name)
    by_method = "".join(f"; {', '.join(m)}: {split} (their recipe's)" for split, m in recipes.items())
    click.echo(f"default: {card.default_split}{by_method}")
    committed = splits.file_splits(card.name)
    names = splits.available_splits(card.name, _columns_of(card, settings.data_root))
    width = max((len(n) for n in names if n in committed), default=0)
    for name in names:
        if name not in committed:
            click.echo(name)
            continue
        split = splits.read_split_file(committed[name], card.name)
        sizes = ", ".join(f"{p} {len(split.parts[p])}" for p in splits.PARTS if split.parts[p])
        click.echo(f"{name:{width}}  {sizes:31}  {split.source}")


def _recipe_splits(dataset: str) -> dict[str, str]:
    """method -> the split its recipe runs on by default on `dataset`, for the methods that have one:
    from the methods' generated index (nothing imported); a method no index covers (a plugin's) is asked."""
    from iqabench import registry

    reg = registry.methods
    indexed = reg.declared("recipe_splits")
    names = reg.declared_names()
    if not set(names) <= set(indexed):  # as before the index: import every method, a broken plugin warned of
        names = [n for n in reg.names() if not n.endswith(":<name>")]  # families name no split
    out = {}
    for name in names:
        if name in indexed:
            chosen = indexed[name].get(dataset)
        else:
            found = reg.get(name).recipe_split(dataset)
            chosen = found[0] if found is not None else None
        if chosen is not None:
            out[name] = chosen
    return out


def _columns_of(card, data_root):
    """A table with the columns the card's reader yields (whether a split can use `ref` or
    `official_set`), from its [reader] spec, else from its files when present; None: unknown."""
    from iqabench.data.columns import Columns
    from iqabench.data.readers import ReaderSpec

    if isinstance(card.reader, ReaderSpec):
        made = [column for column in ("ref", "official_set") if getattr(card.reader, column) is not None]
        return Columns({column: [] for column in ("id", *made)})
    folder = card.locate(data_root)
    return None if folder is None else card.read(folder).rows(0)


@list_group.command("backends", short_help="MLLM backend families and the methods each runs.", epilog="""\b
Examples:
  iqabench list backends
  iqabench run --method softmax-owl2 --dataset koniq10k -o backend=qwen2_5_vl \\
      -o backend_path=Qwen/Qwen2.5-VL-7B-Instruct""")
@with_settings
def list_backends(settings: Settings) -> None:
    """Every registered MLLM backend: its image grid, whether it takes several images per prompt, and
    which MLLM methods and presets run on it (`-o backend=ARCH -o backend_path=DIR_OR_HUB_ID`)."""
    from iqabench import registry
    from iqabench.models.backend import traits_of

    mllm = [n for n in registry.methods.names() if not n.endswith(":<name>")
            and (registry.methods.get(n).info.extra == "mllm")]
    pixel_space = [n for n in mllm if registry.methods.get(n).info.fixed_grid]
    click.echo(f"{'backend':16} {'grid':6} {'images/prompt':14} methods and presets")
    for arch in registry.backends.names():
        traits = traits_of(arch)
        grid = traits.grid or "-"
        multi = "several" if traits.multi_image else "one"
        runs = [n for n in mllm if grid == "fixed" or n not in pixel_space]
        click.echo(f"{arch:16} {grid:6} {multi:14} {', '.join(runs) if grid != '-' else 'see its documentation'}")
