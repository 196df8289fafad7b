"""Which built-in method each alias names, and the published split each method's recipe runs on,
readable without importing any method (generated).

The registry reads ALIASES through the entry point group `iqabench.methods.aliases`, so resolving an
alias (`piqe`, `pixelprompt`) imports that method's module only. The classes stay the source:
tests/test_listing.py checks these tables against what they declare. Regenerate after changing one:
    python -m iqabench.methods.alias_index
"""
from __future__ import annotations

ALIASES = {
    'brisque': 'pyiqa:brisque',
    'clipiqa': 'pyiqa:clipiqa',
    'cw_ssim': 'pyiqa:cw_ssim',
    'dbcnn': 'pyiqa:dbcnn',
    'dists': 'pyiqa:dists',
    'entropy': 'pyiqa:entropy',
    'fsim': 'pyiqa:fsim',
    'gmsd': 'pyiqa:gmsd',
    'hyperiqa': 'pyiqa:hyperiqa',
    'ilniqe': 'pyiqa:ilniqe',
    'liqe': 'pyiqa:liqe',
    'lpips': 'pyiqa:lpips',
    'mad': 'pyiqa:mad',
    'maniqa': 'pyiqa:maniqa',
    'ms_ssim': 'pyiqa:ms_ssim',
    'musiq': 'pyiqa:musiq',
    'nima': 'pyiqa:nima',
    'niqe': 'pyiqa:niqe',
    'nlpd': 'pyiqa:nlpd',
    'paq2piq': 'pyiqa:paq2piq',
    'piqe': 'pyiqa:piqe',
    'pixelprompt': 'vp-owl2',
    'psnr': 'pyiqa:psnr',
    'ssim': 'pyiqa:ssim',
    'topiq_nr': 'pyiqa:topiq_nr',
    'vif': 'pyiqa:vif',
    'vp-mplug-owl2': 'vp-owl2',
    'vsi': 'pyiqa:vsi',
}

# method -> {dataset card: the split its recipe evaluates on there} (Method.recipe_split), read by
# `iqabench list splits` through the entry point group `iqabench.methods.recipe_splits`
RECIPE_SPLITS = {
    'brisque-svr': {},
    'dog-iqa': {},
    'mllm-prompt': {},
    'mllm-prompt-fr': {},
    'promptiqa': {},
    'pyiqa': {},
    'q-adapt': {},
    'qalign-owl2': {},
    'softmax-llava': {},
    'softmax-owl2': {},
    'softmax-owl2-qbench': {},
    'vp-llava': {'agiqa3k': 'seed000-vp', 'kadid10k': 'seed000-vp'},
    'vp-owl2': {'agiqa3k': 'seed000-vp', 'kadid10k': 'seed000-vp'},
}


def declared_recipe_splits() -> dict[str, dict[str, str]]:
    """method -> {dataset: the split its recipe runs on there} for every built-in method (a family: {}),
    by importing every one of them and asking it of every registered dataset."""
    import importlib.metadata

    from iqabench import registry

    datasets = registry.datasets.names()
    out: dict[str, dict[str, str]] = {}
    for ep in sorted(importlib.metadata.entry_points(group="iqabench.methods"), key=lambda ep: ep.name):
        if not ep.value.startswith("iqabench.methods."):
            continue
        target = registry.methods.get(ep.name)
        found = {d: target.recipe_split(d) for d in datasets} if isinstance(target, type) else {}
        out[ep.name] = {d: split[0] for d, split in found.items() if split is not None}
    return out


def declared() -> dict[str, str]:
    """The aliases the built-in methods declare, by importing every one of them."""
    import importlib.metadata

    from iqabench import registry

    ours = {ep.name for ep in importlib.metadata.entry_points(group="iqabench.methods")
            if ep.value.startswith("iqabench.methods.")}
    return dict(sorted((alias, target) for alias, target in registry.methods.aliases().items()
                       if target.partition(":")[0] in ours))


if __name__ == "__main__":
    from pathlib import Path

    path = Path(__file__)
    text = path.read_text()
    for table, values in (("ALIASES", declared()), ("RECIPE_SPLITS", declared_recipe_splits())):
        start = text.index(f"{table} = {{")
        end = text.index("}\n", start) + 2
        rows = "".join(f"    {k!r}: {v!r},\n" for k, v in values.items())
        text = text[:start] + f"{table} = {{\n" + rows + "}\n" + text[end:]
    path.write_text(text)
    print(f"{path}: {len(declared())} aliases, {len(declared_recipe_splits())} methods' recipe splits")
