"""`iqabench list methods|datasets`."""
from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("what", choices=("methods", "datasets"))
    p.add_argument("--all", action="store_true", help="methods: expand families (every pyiqa metric)")


def execute(args) -> int:
    import os

    # Checking availability must never download; without this, hub clients retry for minutes offline.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from iqabench import registry

    if args.what == "datasets":
        return _list_datasets(registry)
    reg = registry.methods
    aliases = reg.aliases()
    names = reg.names(expand_families=args.all)
    shown = names + ([] if args.all else sorted(a for a, t in aliases.items() if ":" in t))
    print(f"{'method':34} {'kind':10} {'needs':48} runs here?")
    for name in shown:
        if name.endswith(":<name>"):
            prefix = name.split(":")[0]
            print(f"{name:34} {'family':10} {'see --all; aliases below':48} -")
            continue
        cls = reg.get(name)
        info = cls.info
        needs = "pyiqa weights, unless weight-free" if name in aliases and aliases[name].startswith("pyiqa:") \
            else (info.needs_weights or "nothing to download")
        if info.needs_gpu:
            needs += " + GPU"
        reason = cls.check_available()
        status = "yes" if reason is None else f"no: {reason}"
        title = name if aliases.get(name, name) == name else f"{name} -> {aliases[name]}"
        print(f"{title:34} {info.kind:10} {needs[:48]:48} {status}")
    return 0


def _list_datasets(registry) -> int:
    print(f"{'dataset':18} {'labels':26} {'default split':28} images")
    for name in registry.datasets.names():
        card = registry.datasets.get(name)
        direction = "higher better" if card.higher_better else "LOWER better"
        labels = f"{card.label_name} {card.score_range[0]:g}-{card.score_range[1]:g} {direction}"
        kind = "synthetic distortions" if card.synthetic_distortions else "authentic/generated"
        print(f"{name:18} {labels:26} {card.default_split:28} {kind}")
    return 0
