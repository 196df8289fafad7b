"""Whether a run can start on this machine, asked before it starts and without building a model:
the one check behind a multi-cell `run` (every cell before the first runs) and a suite's cells
(`suite run` before its first cell, `suite show` for each)."""
from __future__ import annotations

from pathlib import Path

from iqabench import registry
from iqabench.config import RunConfig
from iqabench.data.union import member_names
from iqabench.errors import IqaError, one_line


def why_not_runnable(cfg: RunConfig, *, read_data: bool = True) -> tuple[str, ...]:
    """Why the run `cfg` asks for cannot run here, one line per reason (empty: it can run).

    The method and its options come first: when they are wrong nothing else is asked.
    `read_data`: the run's plan is built as `run` builds it (the dataset's metadata read, a dataset
    that is built on first use built), so the split, part, references and a trainable method's
    checkpoint are checked too, and the weights only when the run is not finished (its metrics need
    no model); the first problem is the reason. Without it nothing is read or built: the method can
    run here, and every dataset scored or trained on (each member of a mix) is on disk or buildable;
    each problem is its own reason (a missing method does not hide a missing dataset)."""
    from iqabench.plan import build_run_plan, resolve_method

    try:
        choice = resolve_method(cfg.method, cfg.options)
    except IqaError as exc:
        return (one_line(exc),)
    if not read_data:
        try:
            choice.require_available()
            reasons = []
        except IqaError as exc:
            reasons = [one_line(exc)]
        return tuple(reasons + _missing_datasets(cfg))
    from iqabench.run import check_plan

    try:
        if cfg.images is not None:  # a folder's plan hashes its files: only the method is asked first
            choice.require_available()
        else:
            plan = build_run_plan(cfg)
            check_plan(plan, check_method=not plan.run_dir.exists())
    except IqaError as exc:
        return (one_line(exc),)
    return ()


def _missing_datasets(cfg: RunConfig) -> list[str]:
    names = [d for d in (cfg.dataset, cfg.train_dataset) if d]
    reasons = []
    for name in dict.fromkeys(m for d in names for m in member_names(d)):
        try:
            card = registry.datasets.get(name)
        except IqaError as exc:
            reasons.append(one_line(exc))
            continue
        if card.build is None and card.locate(Path(cfg.data_root)) is None:
            reasons.append(f"dataset {name} not found under {cfg.data_root}")
    return reasons
