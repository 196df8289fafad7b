"""What the caller chooses about a report: names, order, metrics, precision, significance."""
from __future__ import annotations

import dataclasses

from iqabench.errors import IqaError
from iqabench.metrics import METRICS

DEFAULT_SEED = 42  # `run --seed`'s default: what the runs' own intervals used unless told otherwise


def default_label(out) -> str:
    """`tab:<name>` from the report folder's name, or from the results folder's when the report is in
    its default place (<results>/report): two reports never share `tab:iqabench`."""
    import re
    from pathlib import Path

    out = Path(out).resolve()
    name = out.parent.name if out.name == "report" and out.parent.name else out.name
    return "tab:" + (re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-").lower() or "iqabench")


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    r"""How to present the results; every field has a default a paper table can start from.

    display_names: {generated label, manifest method_label or method name -> name shown}; the most
        specific key wins. Two runs that end up with one name are told apart by their options.
    method_order: labels, method_labels or method names to list first, in this order.
    dataset_names: {dataset -> name shown} (e.g. {"koniq10k": "KonIQ"}); dataset_order likewise.
    metrics: the columns per dataset, from METRICS.
    part: the part of the split the main table shows (None: every part).
    show_ci: add the bootstrap 95 % interval of single runs (SRCC, KRCC, raw PLCC) to the cells.
    show_spread: add ± half the interquartile range to medians over splits.
    significance: "best" tests every method against the best of each column, "all" every pair,
        "none" no test. significance_test picks the test behind the table's mark.
    bootstrap_seed: the paired bootstrap's seed; unset, the seed the runs were scored with (`run --seed`,
        42 by default) when they agree, else 42. The legend states the one used.
    label: table.tex's \label (runs.tex gets it with "-runs"); unset, one derived from the report's name.
    """

    display_names: dict[str, str] = dataclasses.field(default_factory=dict)
    method_order: tuple[str, ...] = ()
    dataset_names: dict[str, str] = dataclasses.field(default_factory=dict)
    dataset_order: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ("srcc", "plcc")
    decimals: int = 3
    part: str | None = "test"
    show_ci: bool = False
    show_spread: bool = True
    significance: str = "best"
    significance_test: str = "bootstrap"
    alpha: float = 0.05
    bootstrap_resamples: int = 1000
    bootstrap_seed: int | None = None  # None: the seed the runs' own intervals used (see `resolved`)
    plots: bool = True
    progress: bool = True
    caption: str | None = None  # replaces the generated first sentence of the LaTeX caption
    label: str | None = None  # LaTeX \label of table.tex (None: derived from the report's folder, see `resolved`)

    def __post_init__(self):
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise IqaError(f"report metrics: unknown {', '.join(unknown) or '(none given)'}; "
                           f"choose from {', '.join(METRICS)}")
        if not 0 <= self.decimals <= 6:
            raise IqaError(f"report decimals must be 0..6, got {self.decimals}")
        if self.significance not in ("best", "all", "none"):
            raise IqaError(f"report significance must be best, all or none, got {self.significance!r}")
        if self.significance_test not in ("bootstrap", "williams"):
            raise IqaError(f"report significance test must be bootstrap or williams, got {self.significance_test!r}")
        if not 0 < self.alpha < 1:
            raise IqaError(f"report alpha must be between 0 and 1, got {self.alpha}")
        if self.bootstrap_resamples < 100:
            raise IqaError(f"report bootstrap resamples must be at least 100, got {self.bootstrap_resamples}")
        # tuples: a caller may pass lists
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "method_order", tuple(self.method_order))
        object.__setattr__(self, "dataset_order", tuple(self.dataset_order))

    def resolved(self, runs, out) -> "ReportOptions":
        """These options with the seed and the LaTeX label filled in for a report of `runs` written to `out`."""
        seed = self.bootstrap_seed
        if seed is None:
            seeds = {(r.metrics or {}).get("bootstrap_seed", r.manifest.get("seed")) for r in runs}
            seeds.discard(None)
            seed = int(seeds.pop()) if len(seeds) == 1 else DEFAULT_SEED
        return dataclasses.replace(self, bootstrap_seed=seed, label=self.label or default_label(out))

    def header(self, metric: str, tex: bool = False) -> str:
        return METRICS[metric].tex if tex else METRICS[metric].label

    def dataset_name(self, dataset: str) -> str:
        return self.dataset_names.get(dataset, dataset)
