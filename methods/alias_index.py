"""Which built-in method each alias names, readable without importing any method (generated).

The registry reads ALIASES through the entry point group `iqabench.methods.aliases`, so resolving an
alias (`piqe`, `pixelprompt`) imports that method's module only. The classes stay the source:
tests/test_listing.py checks this table against what they declare. Regenerate after changing an alias:
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
    start, end = text.index("ALIASES = {"), text.index("}\n", text.index("ALIASES = {")) + 2
    table = "".join(f"    {k!r}: {v!r},\n" for k, v in declared().items())
    path.write_text(text[:start] + "ALIASES = {\n" + table + "}\n" + text[end:])
    print(f"{path}: {len(declared())} aliases")
