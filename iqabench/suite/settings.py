"""What a suite ran with (`--dataset-map`, `-o`), recorded under the results folder by `suite run`
so that `report --suite` finds the same runs without the flags."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from iqabench.errors import IqaError


@dataclasses.dataclass(frozen=True)
class SuiteSettings:
    """The dataset map and `-o` options a suite was run with: `suite run` records them under the
    results folder (ResultsLayout.suite_settings) so that `report --suite` finds the same runs."""

    dataset_map: dict[str, str] = dataclasses.field(default_factory=dict)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        words = [f"--dataset-map {k}={v}" for k, v in self.dataset_map.items()]
        words += [f"-o {k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in self.options.items()]
        return " ".join(words) or "no --dataset-map or -o"


def record_settings(results: Path, suite: str, settings: SuiteSettings) -> Path:
    from iqabench import io
    from iqabench.layout import ResultsLayout

    path = ResultsLayout(results).suite_settings(suite)
    with io.machine_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    io.write_json_atomic(path, {"suite": suite, **dataclasses.asdict(settings)})
    return path


def recorded_settings(results: Path, suite: str) -> SuiteSettings | None:
    """What the last `suite run` of `suite` under `results` ran with, or None if it never ran there."""
    from iqabench import io
    from iqabench.layout import ResultsLayout

    path = ResultsLayout(results).suite_settings(suite)
    if not path.is_file():
        return None
    data = io.read_json(path, "suite settings", advice="delete it and give --dataset-map and -o yourself")
    dataset_map, options = (data.get(k) if isinstance(data, dict) else None for k in ("dataset_map", "options"))
    if not isinstance(dataset_map, dict) or not isinstance(options, dict):
        raise IqaError(f"{path}: not a suite settings record (no dataset_map and options); delete it and give "
                       "--dataset-map and -o yourself")
    return SuiteSettings({str(k): str(v) for k, v in dataset_map.items()}, options)

