"""What `run` and `train` share: the method/dataset options, name lists, and printing results.

Imports only click and the standard library at module level (subcommand `--help` stays light).
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable

import click


def method_options(limit_help: str, dataset_required: bool = True,
                   batch_help: str | None = None) -> Callable[[Callable], Callable]:
    """The options `run` and `train` both take, validated here rather than deep in the engine.
    `run` also scores a folder of images instead of a dataset, so there --dataset is optional.
    `batch_help` given (train): --batch-size has no default, unset meaning the method's recipe."""
    opts = [
        click.option("--method", "methods", multiple=True, required=True, metavar="NAME[,NAME...]",
                     help="Registered method name, e.g. piqe, pyiqa:niqe, brisque-svr. Comma-separated or "
                          "repeated: each method is its own run; quote a name holding a comma: '\"x,y\",piqe'."),
        click.option("--dataset", "datasets", multiple=True, required=dataset_required, metavar="NAME[,NAME...]",
                     help="Registered dataset name, e.g. synthetic, koniq10k. Comma-separated or repeated."),
        click.option("--split", default=None, metavar="NAME",
                     help="Split name (default: the dataset's own, see `iqabench list datasets`). "
                          "'ratio80-0-20-seed{1..10}' expands to ten splits."),
        click.option("-o", "--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
                     help="Method option (repeatable); values are JSON when they parse as JSON. "
                          "See `iqabench options METHOD`."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None if batch_help else 1,
                     show_default=not batch_help, help=batch_help or "Images per method call."),
        click.option("--device", default="auto", show_default=True,
                     help="auto (CUDA when available, else CPU), cpu, cuda, cuda:1, mps."),
        click.option("--limit", type=click.IntRange(min=1), default=None, help=limit_help),
        click.option("--seed", type=click.IntRange(min=0), default=42, show_default=True,
                     help="Seeds training and the bootstrap intervals."),
        click.option("--accept-out-of-range", is_flag=True,
                     help="Accept labels outside the range the dataset card declares (otherwise an error)."),
    ]

    def decorate(f: Callable) -> Callable:
        for opt in reversed(opts):
            f = opt(f)
        return f

    return decorate


def split_names(values: Iterable[str]) -> list[str]:
    """('a,b', 'c') -> ['a', 'b', 'c'], first occurrence kept, empty items dropped. A name holding a
    comma is quoted as in CSV: `--method '"x,y",piqe'` -> ['x,y', 'piqe']."""
    import csv

    out: list[str] = []
    for value in values:
        for name in next(csv.reader([value], skipinitialspace=True), []):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    if not out:
        raise click.BadParameter("no name given")
    return out


def expand_splits(split: str | None) -> list[str | None]:
    """`ratio80-0-20-seed{1..10}` -> ten split names (the PromptIQA protocol); anything else as is."""
    from iqabench.data.splits import expand
    from iqabench.errors import IqaError

    try:
        return expand(split)
    except IqaError as exc:  # an empty range, or one past the family cap
        raise click.BadParameter(str(exc).removeprefix("split "), param_hint="'--split'") from None


def combinations(methods: Iterable[str], datasets: Iterable[str],
                 split: str | None) -> list[tuple[str, str, str | None]]:
    """Every (method, dataset, split) to run, methods outermost."""
    return list(itertools.product(split_names(methods), split_names(datasets), expand_splits(split)))


def check_names(methods: list[str], datasets: list[str]) -> None:
    """Fail on a misspelt name before the first of several runs starts, not after hours of work."""
    from iqabench import registry

    for name in methods:
        registry.methods.get(name)
    for name in datasets:
        registry.datasets.get(name)


def describe(method: str, dataset: str, split: str | None) -> str:
    return f"{method} on {dataset}" + (f" split {split}" if split else "")


def fmt(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def run_state(m: dict) -> str:
    """The run's state as `iqabench.runs.Run.state` reads it from its folder (complete, partial,
    smoke test, inconsistent, unfinished); from the metrics alone when they name no folder."""
    from pathlib import Path

    from iqabench import runs

    if m.get("run_dir") and (Path(m["run_dir"]) / "manifest.json").is_file():
        return runs.read_run(Path(m["run_dir"])).state
    if m.get("limit") is not None:
        return "smoke test"
    return str(m.get("status") or "unfinished")


def counts(m: dict) -> str:
    """n, and how many of them were scored, are missing and failed: what the numbers stand on."""
    return f"n={m.get('n')} scored={m.get('n_scored')} missing={m.get('n_missing')} failed={m.get('n_failed')}"


def _not_a_result(state: str, m: dict) -> str:
    """Why a run that is not complete is not a result, and what to do about it."""
    if state == "partial":
        return f"partial: not a result, rerun the same command to score the {m.get('n_missing')} missing image(s)"
    if state == "smoke test":
        return f"smoke test (--limit {m.get('limit')}): not a result"
    if state == "inconsistent":
        return "inconsistent: not a result, conflicting records (see record_problems in metrics.json)"
    return f"{state}: not a result"


def print_metrics(m: dict) -> None:
    if m.get("labels") is False:
        print_scores(m)
        return
    ci = (m.get("ci95") or {}).get("srcc")
    ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    label = m.get("method_label") or m.get("method", "?")
    from iqabench.metrics import METRICS

    values = "  ".join(f"{x.label} {fmt(m.get(k))}" + (ci_text if k == "srcc" else "") for k, x in METRICS.items())
    state = run_state(m)
    head = f"{label} | {m.get('dataset')} {m.get('split')}/{m.get('part')} | {counts(m)}"
    if state == "complete":
        click.echo(f"{head} | complete | {values}")
    else:  # the numbers of the images scored so far, never on the line that reads as the run's result
        click.echo(f"{head} | {_not_a_result(state, m)}")
        click.echo(f"  over the {m.get('n_scored')} scored image(s) only: {values}")
    if m.get("undefined_reason"):
        click.echo(f"  metrics undefined: {m['undefined_reason']}")
    boot = m.get("bootstrap") or {}
    if ci and boot.get("note"):  # few references: why the interval is wide, beside the interval
        click.echo(f"  interval: {boot['note']}")
    if m.get("model_identity_changed"):
        click.echo("  WARNING: attempts of this run used different model snapshots "
                   "(see runtime_attempts in metrics.json)")
    if m.get("n_failed"):
        click.echo(f"  failures by kind: {m.get('failures_by_kind')} (see predictions.csv, column error)")
    if m.get("run_dir"):
        click.echo(f"  -> {m['run_dir']}")


def print_scores(m: dict) -> None:
    """A run on the user's own images: how many were scored, and where the scores are."""
    label = m.get("method_label") or m.get("method", "?")
    summary = m.get("score_summary") or {}
    spread = (f" | scores {summary['min']:.4g} .. {summary['max']:.4g} (median {summary['median']:.4g})"
              if summary else "")
    click.echo(f"{label} | {m.get('dataset')} | {counts(m)} | {run_state(m)}{spread} | "
               "no labels: scores only, no correlations")
    if m.get("n_failed"):
        click.echo(f"  failures by kind: {m.get('failures_by_kind')} (see predictions.csv, column error)")
    if m.get("run_dir"):
        click.echo(f"  -> {m['run_dir']}/predictions.csv")


def print_summary(done: list[dict]) -> None:
    """One table for several runs (a run that is not complete shows its status, no numbers), then
    the median over the complete runs that differ only by split."""
    if len(done) < 2:
        return
    from iqabench.metrics import label as metric_label

    headers = ("method", "dataset", "split/part", "n", "scored", "missing", "failed", "status",
               metric_label("srcc"), metric_label("plcc"), metric_label("rmse"))
    states = [run_state(m) for m in done]
    rows = []
    for m, state in zip(done, states, strict=True):
        if m.get("labels") is False:  # scores only: there is nothing to correlate
            values = ("no labels", "-", "-")
        elif state != "complete":  # never shown as a result
            values = ("-", "-", "-")
        else:
            values = (fmt(m.get("srcc")), fmt(m.get("plcc")), fmt(m.get("rmse")))
        rows.append((m.get("method_label") or m.get("method", "?"), str(m.get("dataset")),
                     f"{m.get('split')}/{m.get('part')}", str(m.get("n")), str(m.get("n_scored")),
                     str(m.get("n_missing")), str(m.get("n_failed")), state.replace(" ", "-"), *values))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    click.echo()
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    left_out = sum(state != "complete" for state in states)
    if left_out:
        click.echo(f"{left_out} run(s) not complete: shown with their status, left out of every median")
    complete = [m for m, state in zip(done, states, strict=True) if state == "complete" and m.get("labels") is not False]
    pooled, listed = pool_splits(complete)
    import statistics

    several = len(pooled) > 1
    for (label, dataset, protocol, part), runs in pooled:
        prefix = f"{label} on {dataset} {protocol}/{part}: " if several else ""
        for key in ("srcc", "plcc"):
            values = [m.get(key) for m in runs]
            text = "undefined in some split" if None in values else f"{statistics.median(values):.4f}"
            click.echo(f"{prefix}median {key.upper()} over {len(runs)} splits: {text}")
    for line in listed:
        click.echo(line)


def _row_key(m: dict) -> tuple:
    """What makes runs one table row (the report's identity: method, options, batch size, training
    source), from the run folder when there is one; else the method label."""
    from pathlib import Path

    from iqabench import runs
    from iqabench.report.identity import identity_of

    if m.get("run_dir") and (Path(m["run_dir"]) / "manifest.json").is_file():
        return ("identity", identity_of(runs.read_run(Path(m["run_dir"]))))
    return ("label", m.get("method_label") or m.get("method"))


def pool_splits(complete: list[dict]) -> tuple[list[tuple[tuple, list[dict]]], list[str]]:
    """Which complete runs a median may pool: runs of one row (identity) on one dataset, one split
    protocol and one part that differ only by the split seed, one run per seed. Returns the pooled
    groups ((label, dataset, protocol, part), runs) and one line per set of runs left unpooled: two
    runs of the same split (e.g. batch 1 and batch 8 are two settings, not two splits), or one
    method's runs over several protocols or parts, are listed, never a median."""
    from iqabench.report.identity import protocol_of

    groups: dict[tuple, list[dict]] = {}
    for m in complete:
        protocol, seed = protocol_of(str(m.get("split") or ""))
        groups.setdefault((_row_key(m), m.get("dataset"), protocol, m.get("part")), []).append(m)
    pooled, listed = [], []
    by_method: dict[tuple, list[tuple]] = {}
    for key, runs in groups.items():
        row, dataset, protocol, part = key
        label = runs[0].get("method_label") or runs[0].get("method")
        seeds = [protocol_of(str(m.get("split") or ""))[1] for m in runs]
        if len(runs) > 1 and None not in seeds and len(set(seeds)) == len(seeds):
            pooled.append(((label, dataset, protocol, part), runs))
            by_method.setdefault((label, dataset), []).append(key)
        elif len(runs) > 1:  # the same split more than once: a rerun or a copy, not another split
            listed.append(f"{label} on {dataset}: {len(runs)} runs of split(s) "
                          f"{', '.join(sorted({str(m.get('split')) for m in runs}))}/{part}: "
                          "the same split, not pooled into a median")
        else:
            by_method.setdefault((label, dataset), []).append(key)
    for (label, dataset), keys in by_method.items():
        columns = {(k[2], k[3]) for k in keys}
        if len(columns) > 1:
            what = sorted(f"{protocol}/{part}" for protocol, part in columns)
            listed.append(f"{label} on {dataset}: runs of {len(what)} split protocols or parts ({', '.join(what)}): "
                          "listed, not pooled (a median pools only the seeds of one protocol and one part)")
        for protocol, part in sorted(columns, key=str):
            rows = {k[0] for k in keys if (k[2], k[3]) == (protocol, part)}
            if len(rows) > 1:
                listed.append(f"{label} on {dataset} {protocol}/{part}: {len(rows)} settings of the method (options, "
                              "batch size or training differ): each is its own row, not another split")
    return pooled, listed
