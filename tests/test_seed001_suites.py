"""Seed 001's suites (suites/seed001-*.toml): `suite show` lists every row x column, computed on the
study's committed subsets or published only with its reason; the published numbers are the seed
text's own (read from the seed file, when it is on this machine)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from iqabench.cli.main import cli
from iqabench.suite import load_suite

SUITES = ("seed001-table1-fr", "seed001-table1-nr", "seed001-table2", "seed001-table3")
SEED = Path("/work/shared/seeds/001_3e8f73015b0aab25.txt")


def _show(name: str, tmp_path: Path) -> list[str]:
    result = CliRunner().invoke(cli, ["suite", "show", name, "--data-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start, end = lines.index("cells:"), next(i for i, line in enumerate(lines) if line.startswith("cells computed"))
    assert lines[end] == f"cells computed by the harness: {len(load_suite(name).cells())}"
    return lines[start + 1:end]


@pytest.mark.parametrize("name", SUITES)
def test_show_lists_every_cell_computed_or_with_its_reason(name, tmp_path):
    suite = load_suite(name)
    lines = _show(name, tmp_path)
    assert len(lines) == len(suite.rows) * len(suite.columns)  # no row here covers only some columns
    computed = {(c.row.label, c.column.label) for c in suite.cells()}
    for row in suite.rows:
        for col in suite.columns:
            line = next(line for line in lines if line.strip().startswith(f"{row.label} x {col.label}: "))
            if (row.label, col.label) in computed:
                assert re.search(r": \S+ on \S+/seed001-[a-z-]+/test; ", line), line
                # nothing is on disk under an empty data root: the cell says why it cannot run
                assert "cannot run here: " in line and f"not found under {tmp_path}" in line, line
            else:
                assert re.search(r": published only \(.{20,}\)$", line), line


def test_computed_cells_use_the_studys_subsets_and_systems():
    nr = load_suite("seed001-table1-nr")
    cells = {(c.row.label, c.column.key): c for c in nr.cells()}
    cell = cells[("Multiple: mPLUG-Owl2-C", "agiqa3k")]
    assert cell.method == "mllm-prompt" and cell.options["stimulus"] == "multiple" and cell.options["system"] == "cot"
    assert [u.split for u in cell.units] == ["seed001-uniform"]
    assert {c.options.get("stimulus", "single") for c in cells.values()} == {"single", "double", "multiple"}
    assert not any(c.options.get("system") == "in-context" for c in cells.values())  # its examples are unpublished
    fr = load_suite("seed001-table2")
    assert {c.column.key for c in fr.cells()} == {"fr-kadid"}
    assert {u.split for c in fr.cells() for u in c.units} == {"seed001-fr-difficult"}


def _seed_rows(text: str, start: str, end: str) -> list[list[str]]:
    body = text[text.index(start):text.index(end, text.index(start))]
    return [line.split("\t") for line in body.splitlines() if "\t" in line and re.search(r"\d\.\d{3}", line)]


def _number(cell: str) -> float:
    return float(re.sub(r"[^\d.]", "", cell))


@pytest.mark.skipif(not SEED.is_file(), reason=f"{SEED} not on this machine")
def test_published_numbers_are_the_seed_texts():
    text = SEED.read_text(encoding="utf-8")
    # Table 1: three blocks of twelve rows (single, double, multiple), columns FR x4 then NR x3
    rows = _seed_rows(text, "# Comparison of Nine Prompting Systems", "- **Analysis")
    assert len(rows) == 36
    fr, nr = load_suite("seed001-table1-fr"), load_suite("seed001-table1-nr")
    stimuli = ("Single", "Double", "Multiple")
    for n, cells in enumerate(rows):
        label = f"{stimuli[n // 12]}: {cells[0]}"
        values = [_number(c) for c in cells[1:]]
        for suite, part in ((fr, values[:4]), (nr, values[4:])):
            row = next(r for r in suite.rows if r.label == label)
            assert [row.published[c.key]["srcc"] for c in suite.columns] == part, label
    for name, start, n_cols in (("seed001-table2", "**Table 2:**", 4), ("seed001-table3", "**Table 3:**", 3)):
        suite = load_suite(name)
        rows = _seed_rows(text, start, "- ")
        assert len(rows) == len(suite.rows)
        for cells, row in zip(rows, suite.rows):
            assert re.sub(r"\s*\[\d+\]", "", cells[0]) == row.label
            values = [_number(c) for c in cells[1:]]
            assert len(values) == 2 * n_cols
            assert [row.published[c.key][m] for c in suite.columns for m in ("srcc", "plcc")] == values, row.label
