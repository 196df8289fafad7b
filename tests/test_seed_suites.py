"""Seeds 002 and 003 as experiments: each seed system's own row is computed by the method here
(PromptIQA from the paper's training mix, Q-Adapt from an instruction file the user gives), and
every row left published-only says why in `iqabench suite show`."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from iqabench.cli.main import cli
from iqabench.data.union import member_names
from iqabench.suite import load_suite
from iqabench.suite.run import why_not_here

# the seed systems' own rows: (suite, row label) -> the method that computes it here
SEED_ROWS = {("seed003-table2-sdn", "PromptIQA (Ours)"): "promptiqa",
             ("seed003-table2-aigiqa", "PromptIQA (Ours)"): "promptiqa",
             ("seed002-table3", "Q-Adapt^Q"): "q-adapt"}
SEED_SUITES = sorted({s for s, _ in SEED_ROWS})
PAPER_MIX = {"live", "csiq", "tid2013", "kadid10k", "livec", "spaq", "koniq10k", "agiqa3k"}  # its 12 with a card


def show(name: str) -> str:
    result = CliRunner().invoke(cli, ["suite", "show", name])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", SEED_SUITES)
def test_no_seed_row_is_published_only_where_the_method_exists_and_the_rest_say_why(name):
    text = show(name)
    rows = text.split("\nrows:\n")[1].split("\npublished:\n")[0].splitlines()
    for (suite, label), method in SEED_ROWS.items():
        if suite == name:
            line = next(r for r in rows if r.startswith(f"  {label}: "))
            assert line.startswith(f"  {label}: {method}"), line
    for line in rows:
        if ": published only" in line:  # every such row gives its reason
            assert re.search(r": published only \(.{10,}\)$", line), line


def test_promptiqa_trains_the_papers_mix_once_per_repetition():
    trains = {}
    for name in ("seed003-table2-sdn", "seed003-table2-aigiqa"):
        cell = next(c for c in load_suite(name).cells() if c.row.label == "PromptIQA (Ours)")
        assert set(member_names(cell.units[0].train_dataset)) == PAPER_MIX
        for unit in cell.units:  # repetition k trains on the train parts of every member's split k
            seed = unit.split.rsplit("seed", 1)[1]
            assert all(s.endswith(f"-seed{seed}") for s in unit.train_split.split("+"))
            trains.setdefault(seed, set()).add((unit.train_dataset, unit.train_split))
    assert len(trains) == 10 and all(len(t) == 1 for t in trains.values())  # both panels share each model


def test_q_adapt_row_needs_the_instruction_file_until_given(tmp_path):
    suite = load_suite("seed002-table3")
    cell = next(c for c in suite.cells() if c.row.label == "Q-Adapt^Q")
    assert cell.units[0].train_dataset == "koniq10k+spaq+kadid10k" and cell.units[0].train_split == "qalign"
    assert "needs -o instructions=... (Q-Instruct's conversations" in "; ".join(why_not_here(cell, tmp_path, "cpu", True))
    given = suite.adapted(options={"instructions": str(tmp_path / "q-instruct.json")})
    cell = next(c for c in given.cells() if c.row.label == "Q-Adapt^Q")
    assert "needs -o instructions" not in "; ".join(why_not_here(cell, tmp_path, "cpu", True))


def test_a_published_only_row_may_not_need_options_and_a_computed_one_gives_no_why(tmp_path):
    from iqabench.errors import IqaError

    base = Path(__file__).parent.parent / "suites" / "seed002-table3.toml"
    text = base.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('label = "LIQE"\npublished_only = true\n',
                                'label = "LIQE"\npublished_only = true\nneeds = { x = "y" }\n'))
    with pytest.raises(IqaError, match=r"rows\[0\] \(LIQE\)\.needs: a published_only row is not computed"):
        load_suite(bad)
    bad.write_text(text.replace('method = "softmax-owl2-qbench"\n', 'method = "softmax-owl2-qbench"\nwhy = "x"\n'))
    with pytest.raises(IqaError, match=r"\(mPLUG-Owl2\)\.why: says why a published_only row"):
        load_suite(bad)
    bad.write_text(text.replace('needs = { instructions', 'needs = { nosuch'))
    with pytest.raises(IqaError, match=r"\(Q-Adapt\^Q\)\.needs\.nosuch: not an option of q-adapt"):
        load_suite(bad)


@pytest.mark.parametrize("name", SEED_SUITES)
def test_every_cell_says_what_computes_it_or_why_not(name):
    cells = show(name).split("\ncells:\n")[1].split("\ncells computed")[0].splitlines()
    for line in cells:
        if ": published only" in line:
            assert re.search(r": published only \(.{10,}\)$", line), line
    for (suite, label), method in SEED_ROWS.items():
        if suite == name:
            mine = [c for c in cells if c.startswith(f"  {label} x ") and ": published only" not in c]
            assert mine and all(f": {method} on " in c for c in mine)
    if name == "seed002-table3":  # the file the row needs, named until it is given
        assert all("cannot run here: needs -o instructions=... (Q-Instruct's conversations" in c
                   for c in cells if c.startswith("  Q-Adapt^Q x ") and ": published only" not in c)
