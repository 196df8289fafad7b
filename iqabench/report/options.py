"""What the caller chooses about a report: names, order, metrics, precision, significance."""
from __future__ import annotations

import dataclasses

from iqabench.errors import IqaError
from iqabench.metrics import METRICS


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    """How to present the results; every field has a default a paper table can start from.

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
    bootstrap_seed: int = 0
    plots: bool = True
    progress: bool = True
    caption: str | None = None  # replaces the generated first sentence of the LaTeX caption
    label: str = "tab:iqabench"  # LaTeX \label of table.tex

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

    def header(self, metric: str, tex: bool = False) -> str:
        return METRICS[metric].tex if tex else METRICS[metric].label

    def dataset_name(self, dataset: str) -> str:
        return self.dataset_names.get(dataset, dataset)
