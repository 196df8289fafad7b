"""A third-party method, installed as a distribution with an entry point, runs with no engine edit."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from iqabench import registry
from iqabench.errors import IqaError

PLUGINS = Path(__file__).parent / "plugins"

THIRD_PARTY = textwrap.dedent('''
    import numpy as np
    from iqabench.api import Method, MethodInfo, Options

    class ColourfulnessOptions(Options):
        weight: float = 0.3

    class Colourfulness(Method):
        """Hasler and Suesstrunk's colourfulness: a third party's scorer."""
        name = "colourfulness"
        aliases = ("hasler",)
        info = MethodInfo(kind="classic", description="colourfulness (third-party plugin)")
        Options = ColourfulnessOptions

        def score(self, samples):
            out = []
            for s in samples:
                rgb = np.asarray(s.image, dtype=np.float64)
                rg = rgb[..., 0] - rgb[..., 1]
                yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
                out.append(float(np.hypot(rg.std(), yb.std()) + self.options.weight * np.hypot(rg.mean(), yb.mean())))
            return out
''')


def install_fake_distribution(site: Path) -> None:
    """What `pip install thirdparty-iqa` would leave in site-packages: the module and its dist-info."""
    (site / "thirdparty_iqa.py").write_text(THIRD_PARTY)
    info = site / "thirdparty_iqa-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-iqa\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[iqabench.methods]\ncolourfulness = thirdparty_iqa:Colourfulness\n")


def test_entry_point_plugin_lists_and_runs(tmp_path, tiny_root):
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(site)
    env = {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    base = [sys.executable, "-m", "iqabench.cli.main", "--plugin", str(PLUGINS / "tiny_dataset_plugin.py")]
    listed = subprocess.run(base + ["list", "methods"], capture_output=True, text=True, env=env, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "colourfulness" in listed.stdout
    ran = subprocess.run(base + ["run", "--method", "hasler", "--dataset", "tiny", "--split", "all", "--data-root",
                                 str(tiny_root), "--results", str(tmp_path / "res"), "--no-progress",
                                  "-o", "weight=0.5"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr
    metrics = json.loads(next((tmp_path / "res").rglob("metrics.json")).read_text())
    assert metrics["method"] == "colourfulness" and metrics["n"] == 36 and metrics["n_failed"] == 0
    assert metrics["method_label"] == "colourfulness[weight=0.5]"


def test_did_you_mean():
    with pytest.raises(IqaError, match="did you mean.*slow-sharpness"):
        registry.methods.get("slow-sharpnes")
    with pytest.raises(IqaError, match="did you mean.*synthetic"):
        registry.datasets.get("synthetc")


def test_bad_option_names_the_option():
    from iqabench.plan import resolve_method

    with pytest.raises(IqaError, match="delya"):
        resolve_method("slow-sharpness", {"delya": 1})


# -- names in any case, and every spelling a card declares ------------------------------------------

def test_every_spelling_of_a_card_in_any_case_names_the_dataset():
    cards = [registry.datasets.get(name) for name in registry.datasets.names()]

    def owners(spelling: str) -> list:
        """Who a spelling names: the card with that name or alias, else every card with that folder name."""
        named = [c for c in cards if spelling.casefold() in {n.casefold() for n in (c.name, *c.aliases)}]
        return named or [c for c in cards if spelling.casefold() in {f.casefold() for f in c.folder_names}]

    for card in cards:
        for spelling in (card.name, *card.aliases, *card.folder_names):
            for variant in (spelling, spelling.upper(), spelling.lower(), spelling.swapcase()):
                expected = owners(variant)
                if len(expected) == 1:
                    assert registry.datasets.get(variant) is expected[0], variant
                else:  # a folder name two cards share names neither: refused, never a guess
                    with pytest.raises(IqaError, match="unknown dataset"):
                        registry.datasets.get(variant)
    assert registry.datasets.get("KADID-10k").name == "kadid10k"  # the issue's own examples
    assert registry.datasets.get("KonIQ-10k").name == "koniq10k"  # an alias wins over a shared folder name


def test_methods_match_in_any_case_and_unknown_names_still_fail():
    piqe = registry.methods.get("pyiqa:piqe")
    for variant in ("PIQE", "Piqe", "pyiqa:PIQE", "PyIQA:piqe"):
        assert registry.methods.get(variant) is piqe, variant
    assert registry.methods.get("SLOW-Sharpness").name == "slow-sharpness"
    with pytest.raises(IqaError, match="unknown method 'PIQEE'"):
        registry.methods.get("PIQEE")
    with pytest.raises(IqaError, match="unknown pyiqa metric 'PIQEE'"):
        registry.methods.get("pyiqa:PIQEE")


def test_a_run_named_in_another_case_is_filed_under_the_registered_names(tiny_root, tmp_path):
    from click.testing import CliRunner

    from iqabench.cli.main import cli
    from iqabench.runs import find_runs

    result = CliRunner().invoke(cli, ["run", "--method", "SLOW-Sharpness", "--dataset", "TINY", "--split", "all",
                                      "--limit", "2", "--no-progress", "--data-root", str(tiny_root),
                                      "--results", str(tmp_path / "r")])
    assert result.exit_code == 0, result.stderr
    [run] = find_runs(tmp_path / "r")
    assert (run.method, run.dataset) == ("slow-sharpness", "tiny")
    assert run.run_dir.relative_to(tmp_path / "r").parts[:2] == ("runs", "tiny")
