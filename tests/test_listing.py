"""`iqabench list methods` answers from presets and files on disk: fast, and without a network."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest

# Runs the real command in a fresh process with every socket connection refused (and recorded).
GUARDED = textwrap.dedent("""
    import socket, sys
    attempts = []
    def refuse(self, *args, **kwargs):
        attempts.append(args)
        raise OSError("network blocked by the test")
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    from iqabench.cli.main import main
    code = main(["list", "methods", "--all"])
    print("CONNECT ATTEMPTS", len(attempts), file=sys.stderr)
    # numpy, scipy, huggingface_hub's download code and the served backend's HTTP stack (http.client,
    # ssl): none is needed to say what runs here
    heavy = sorted(m for m in ("torch", "transformers", "pyiqa", "timm", "sklearn", "peft", "numpy", "scipy",
                               "huggingface_hub.file_download", "http.client", "ssl") if m in sys.modules)
    print("HEAVY IMPORTS", ",".join(heavy) or "none", file=sys.stderr)
    sys.exit(code)
""")


def test_list_methods_is_offline_and_imports_no_model_library():
    """What listing imports, not how long it takes (a timing goal belongs in benchmarks/bench_listing.py,
    which prints its CPU time beside `--help`'s: a unit test must not depend on the machine's load)."""
    done = subprocess.run([sys.executable, "-c", GUARDED], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "CONNECT ATTEMPTS 0" in done.stderr, done.stderr
    assert "HEAVY IMPORTS none" in done.stderr, done.stderr
    for name in ("brisque-svr", "vp-owl2", "dog-iqa", "pyiqa:piqe", "pyiqa:psnr", "q-adapt", "promptiqa"):
        assert name in done.stdout, name


def test_the_alias_index_equals_what_the_methods_declare():
    """methods/alias_index.py is generated; a stale table would send an alias to the wrong method."""
    from iqabench.methods import alias_index

    assert alias_index.ALIASES == alias_index.declared(), "run: python -m iqabench.methods.alias_index"


def test_the_recipe_split_index_equals_what_the_methods_declare():
    """`list splits` reads RECIPE_SPLITS instead of importing every method: a stale table would hide a recipe."""
    from iqabench.methods import alias_index

    declared = alias_index.declared_recipe_splits()
    assert alias_index.RECIPE_SPLITS == declared, "run: python -m iqabench.methods.alias_index"
    assert declared["vp-owl2"]["agiqa3k"] == "seed000-vp"  # the table is not vacuous


SPLITS = textwrap.dedent("""
    import sys
    from iqabench.cli.main import main
    code = main(["list", "splits", "agiqa3k"])
    print("MODULES", ",".join(sorted(m for m in sys.modules if m.startswith("iqabench.methods."))), file=sys.stderr)
    sys.exit(code)
""")


def test_list_splits_names_the_recipe_splits_without_importing_a_method():
    done = subprocess.run([sys.executable, "-c", SPLITS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].endswith("vp-llava, vp-owl2: seed000-vp (their recipe's)"), done.stdout
    assert done.stderr.split("MODULES ", 1)[1].strip() == "iqabench.methods.alias_index", done.stderr


def test_list_splits_still_asks_a_plugin_method_no_index_covers(tmp_path):
    plugin = tmp_path / "recipe_plugin.py"
    plugin.write_text(textwrap.dedent("""
        from iqabench.api import Method, MethodInfo
        from iqabench.registry import register_method

        @register_method
        class Mine(Method):
            name = "mine"
            info = MethodInfo(kind="classic", description="a plugin with a recipe split")

            @classmethod
            def recipe_split(cls, dataset):
                return ("seed000-vp", "the plugin's paper") if dataset == "agiqa3k" else None
    """))
    done = subprocess.run([sys.executable, "-m", "iqabench.cli.main", "--plugin", str(plugin), "list", "splits",
                           "agiqa3k"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "mine, vp-llava, vp-owl2: seed000-vp" in done.stdout.splitlines()[0], done.stdout


RESOLVE = textwrap.dedent("""
    import sys
    from iqabench import registry
    cls = registry.methods.get(sys.argv[1])
    print("RESOLVED", cls.name)
    print("MODULES", ",".join(sorted(m for m in sys.modules if m.startswith("iqabench.methods."))))
""")


@pytest.mark.parametrize("name, own", [
    ("piqe", "iqabench.methods.pyiqa"), ("PIQE", "iqabench.methods.pyiqa"),
    ("pyiqa:niqe", "iqabench.methods.pyiqa"), ("pixelprompt", "iqabench.methods.vp_owl2"),
    ("brisque-svr", "iqabench.methods.brisque_svr")])
def test_resolving_one_name_or_alias_imports_that_method_only(name, own):
    done = subprocess.run([sys.executable, "-c", RESOLVE, name], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    modules = done.stdout.split("MODULES ", 1)[1].strip().split(",")
    # the alias index, the method's own package, and helpers it imports that are no method of their own
    targets = {ep.value.partition(":")[0] for ep in importlib.metadata.entry_points(group="iqabench.methods")}
    other_methods = [m for m in modules if m in targets and not m.startswith(own)]
    assert not other_methods, modules
    assert any(m.startswith(own) for m in modules), modules


@pytest.mark.parametrize("layout", ["no folder", "config cached", "other revision", "folder without config"])
def test_the_cache_shortcut_answers_as_huggingface_hub_does(tmp_path, monkeypatch, layout):
    """availability._cached_config skips huggingface_hub's lookup only when the repo has no cache folder."""
    from huggingface_hub import constants, try_to_load_from_cache

    from iqabench.models.scoring import availability

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--owner--name"
    if layout != "no folder":
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("abc")
        (repo / "snapshots" / "abc").mkdir(parents=True)
        if layout != "folder without config":
            (repo / "snapshots" / "abc" / "config.json").write_text("{}")
    revision = "other" if layout == "other revision" else None
    expected = isinstance(try_to_load_from_cache("owner/name", "config.json", revision=revision), str)
    assert availability._cached_config("owner/name", revision) is expected
    assert expected is (layout == "config cached")
