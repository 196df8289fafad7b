"""The demo's line-up file (suites/demo.toml: `dataset`, `zero_shot` and `trained` method lists, read
by `iqabench demo`), and the same line-up as a suite with no published numbers, so that
`iqabench suite run demo` runs it offline like any paper table: one column (the dataset's default
split, test part), one row per method, trained methods trained on that split's train part."""
from __future__ import annotations

import tomllib
from pathlib import Path

from iqabench.errors import IqaError

LINEUP_KEYS = ("dataset", "zero_shot", "trained")


def is_lineup(data: dict) -> bool:
    return "kind" not in data and "dataset" in data


def read_lineup(path: Path) -> dict:
    """The line-up: `dataset` (a name) and the `zero_shot` and `trained` method lists."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IqaError(f"{path}: the demo suite file is missing from this installation") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IqaError(f"{path}: not valid TOML ({exc})") from None
    return check_lineup(data, path)


def check_lineup(data: dict, path: Path) -> dict:
    if not isinstance(data.get("dataset"), str) or not data["dataset"]:
        raise IqaError(f"{path}: `dataset` must be a dataset name")
    for key in ("zero_shot", "trained"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise IqaError(f"{path}: `{key}` must be a list of method names")
        data[key] = value
    if not data["zero_shot"] + data["trained"]:
        raise IqaError(f"{path}: names no method (`zero_shot`, `trained`)")
    return data


def as_suite_data(data: dict, path: Path) -> dict:
    """The line-up in the suite file's format (iqabench.suite.spec), ready for validation."""
    data = check_lineup(data, path)
    methods = list(dict.fromkeys(data["zero_shot"] + data["trained"]))
    return {"kind": "paper-table", "title": data.get("description") or Path(path).stem,
            "source": {"paper": "iqabench", "table": "the demo line-up (no published numbers)"},
            "metrics": ["srcc", "krcc", "plcc"],
            "notes": "The demo's line-up (the file `iqabench demo` reads), run as a suite: no published numbers.",
            "protocol": {"training": "within" if data["trained"] else "none"},
            "columns": [{"label": data["dataset"], "dataset": data["dataset"]}],
            "rows": [{"label": name, "method": name} for name in methods]}
