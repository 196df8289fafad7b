"""The layout promises: `datasets/` holds data only, and the engine (iqabench/) names no dataset:
every dataset-specific fact lives in its card (datasets/<name>/card.toml)."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

from iqabench.locations import shipped_folder

PACKAGE = Path(__file__).resolve().parents[1] / "iqabench"
DATASETS = shipped_folder("datasets")


def dataset_names() -> set[str]:
    """Names and aliases of the built-in datasets, read from their card files."""
    names = set()
    for path in DATASETS.glob("*/card.toml"):
        card = tomllib.loads(path.read_text(encoding="utf-8"))
        names.add(card["name"])
        names.update(card.get("aliases", ()))
    return names


def docstring_nodes(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


# Help texts show examples to users (`iqabench run --dataset koniq10k`): documentation, not behaviour.
DOC_KEYWORDS = ("help", "epilog", "short_help")


def documentation_nodes(tree: ast.Module) -> set[int]:
    out = docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in DOC_KEYWORDS:
            out.update(id(n) for n in ast.walk(node.value))
    return out


def named_datasets(source: str, names: set[str]) -> list[tuple[int, str, str]]:
    """(line, name, literal) for every string literal (f-string parts included, docstrings and
    help texts not) that holds a dataset name as a whole word (`kadid10k` in "e.g. kadid10k," but
    not in "kadid10k_x" or "synthetic-distortion")."""
    word = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r")(?![\w-])")
    tree = ast.parse(source)
    docs = documentation_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            for m in word.finditer(node.value):
                found.append((node.lineno, m.group(1), node.value))
    return found


def test_no_python_file_under_datasets():
    assert DATASETS.is_dir()
    stray = sorted(p.relative_to(DATASETS).as_posix() for p in DATASETS.rglob("*.py"))
    assert not stray, f"datasets/ is data only (a `datasets` package would shadow Hugging Face's): {stray}"


def test_the_engine_names_no_dataset():
    names = dataset_names()
    assert {"kadid10k", "synthetic", "live"} <= names  # the cards were read
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, name, literal in named_datasets(path.read_text(encoding="utf-8"), names):
            hits.append(f"{path.relative_to(PACKAGE.parent).as_posix()}:{line}: {name!r} in {literal[:60]!r}")
    assert not hits, "dataset names belong in datasets/<name>/card.toml:\n" + "\n".join(hits)


def test_the_name_check_catches_what_it_should_and_nothing_else():
    names = {"kadid10k", "live", "synthetic"}
    source = '''"""Docstrings may name kadid10k."""
def f(x):
    """So may this one: live."""
    a = "kadid10k"
    b = f"{x}: try e.g. live, or the synthetic set"
    c = ("synthetic-distortion set", "kadid10k_dmos.csv", "delivery", "alive")
    d = option("--dataset", help="e.g. kadid10k")
    return a, b, c, d
'''
    found = sorted((line, name) for line, name, _ in named_datasets(source, names))
    assert found == [(4, "kadid10k"), (5, "live"), (5, "synthetic")]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file of the package, relative ones made absolute and
    `from iqabench import x` read as iqabench.x; imports inside functions count too."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return found


def imports_of(folder: Path, forbidden: str) -> list[str]:
    """One "file:line: module" per import statement below `folder` that reaches `forbidden`."""
    hits = {}
    for path in sorted(folder.rglob("*.py")):
        for line, module in sorted(imported_modules(path)):
            if module == forbidden or module.startswith(forbidden + "."):
                hits.setdefault((path.relative_to(PACKAGE.parent).as_posix(), line), module)
    return [f"{where}:{line}: {module}" for (where, line), module in hits.items()]


def test_the_engine_imports_no_method():
    """Built-in methods are plugins: the engine reaches them only through the registry."""
    hits = imports_of(PACKAGE, "iqabench.methods")
    assert not hits, hits


def test_data_imports_no_model():
    """data/ (cards, readers, splits, views) sits below models/: what needs a model to make a
    dataset (the embedded set's FSIM labels) lives in builders/, above both."""
    hits = imports_of(PACKAGE / "data", "iqabench.models") + imports_of(PACKAGE / "data", "iqabench.builders")
    assert not hits, hits


def test_the_import_check_sees_every_spelling(tmp_path, monkeypatch):
    folder = tmp_path / "iqabench" / "data"
    folder.mkdir(parents=True)
    source = folder / "x.py"
    source.write_text("import iqabench.models.a\nfrom iqabench import models\nfrom ..models import b\n"
                      "def f():\n    from iqabench.models.c import d\nfrom iqabench.modelsx import e\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "iqabench")
    assert [h.split(": ")[0] for h in imports_of(folder, "iqabench.models")] == \
        ["iqabench/data/x.py:1", "iqabench/data/x.py:2", "iqabench/data/x.py:3", "iqabench/data/x.py:5"]


def test_every_python_package_is_in_the_wheel():
    """pyproject lists packages by hand (methods/ installs as iqabench.methods): a new sub-package
    that is not listed would work in a checkout and be missing from the wheel."""
    root = PACKAGE.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for base, name in ((root / "iqabench", "iqabench"), (root / "methods", "iqabench.methods")):
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found.add(".".join((name, *rel)))
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"


# -- one error-line helper ------------------------------------------------------------------------
METHODS = PACKAGE.parent / "methods"
ONE_LINE_NAMES = {"one_line", "_one_line", "first_line", "_first_line", "first_error_line"}
# Runs in the Owl3 worker's own virtualenv, where iqabench is not installed.
ONE_LINE_EXEMPT = {"iqabench/models/owl3_worker/worker.py"}


def error_line_copies(source: str) -> list[tuple[int, str]]:
    """(line, what) for each spot that cuts an error to its first line by itself instead of calling
    iqabench.errors.one_line: a function of that name, or `.splitlines()` / `.split("\\n")` of an
    exception caught by `except ... as name` or of a `str(...)` of anything."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in ONE_LINE_NAMES:
            found.append((node.lineno, f"def {node.name}"))
    for handler in [n for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler)]:
        caught = {handler.name} if handler.name else set()
        for node in ast.walk(handler):
            if isinstance(node, ast.Call) and _splits_lines(node) and _mentions(node.func.value, caught):
                found.append((node.lineno, ast.unparse(node)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _splits_lines(node) and _calls_str(node.func.value) \
                and (node.lineno, ast.unparse(node)) not in found:
            found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


def _splits_lines(call: ast.Call) -> bool:
    func = call.func
    if not isinstance(func, ast.Attribute):
        return False
    return func.attr == "splitlines" or (func.attr == "split" and len(call.args) == 1 and isinstance(
        call.args[0], ast.Constant) and call.args[0].value == "\n")


def _mentions(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def _calls_str(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "str" for n in ast.walk(node))


def test_one_error_line_helper():
    """Exception -> one line is iqabench.errors.one_line, defined once and called everywhere."""
    root = PACKAGE.parent
    hits = []
    for path in sorted([*PACKAGE.rglob("*.py"), *METHODS.rglob("*.py")]):
        rel = path.relative_to(root).as_posix()
        if rel == "iqabench/errors.py" or rel in ONE_LINE_EXEMPT:
            continue
        hits += [f"{rel}:{line}: {what}" for line, what in error_line_copies(path.read_text(encoding="utf-8"))]
    assert not hits, "use iqabench.errors.one_line:\n" + "\n".join(hits)


def test_the_error_line_check_catches_what_it_should_and_nothing_else():
    source = '''
def _one_line(exc):
    return exc
def f(path, out):
    try:
        pass
    except ValueError as exc:
        first = (str(exc).strip().splitlines() or ["?"])[0]
        lines = exc.args[0].split("\\n")
        fine = out.stdout.splitlines()
    text = str(path).splitlines()[0]
    doc = __doc__.splitlines()[0]
    return Path(path).read_text().splitlines()
'''
    assert [line for line, _ in error_line_copies(source)] == [2, 8, 9, 11]


# -- the process environment is the user's --------------------------------------------------------
def environment_writes(source: str) -> list[tuple[int, str]]:
    """(line, code) for each write to the process environment: `os.environ[k] = v`, `del
    os.environ[k]`, os.environ.setdefault/update/pop/clear, os.putenv/unsetenv."""
    found = []
    for node in ast.walk(ast.parse(source)):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else \
            node.targets if isinstance(node, ast.Delete) else []
        if any(isinstance(t, ast.Subscript) and ast.unparse(t.value) in ("os.environ", "environ") for t in targets):
            found.append((node.lineno, ast.unparse(node)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner, attr = ast.unparse(node.func.value), node.func.attr
            if (owner in ("os.environ", "environ") and attr in ("setdefault", "update", "pop", "popitem", "clear")) \
                    or (owner == "os" and attr in ("putenv", "unsetenv")):
                found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


def test_nothing_writes_the_process_environment():
    """Offline mode and every other choice is passed as an argument (iqabench.hub.no_downloads), never
    written into os.environ, where it would outlive the command and reach every library."""
    root = PACKAGE.parent
    hits = [f"{path.relative_to(root).as_posix()}:{line}: {code}"
            for path in sorted([*PACKAGE.rglob("*.py"), *METHODS.rglob("*.py")])
            for line, code in environment_writes(path.read_text(encoding="utf-8"))]
    assert not hits, "\n".join(hits)


def test_the_environment_check_catches_what_it_should_and_nothing_else():
    source = '''import os
os.environ["A"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
del os.environ["B"]
os.putenv("C", "1")
env = dict(os.environ)
env["D"] = "1"
value = os.environ.get("E")
os.environ.update(F="1")
'''
    assert [line for line, _ in environment_writes(source)] == [2, 3, 4, 5, 9]


# -- the engine special-cases no method, family or backend ------------------------------------------
# (file, name) -> why that file may hold the name. Backend names are also free in models/, where each
# backend's own module and data table (vlm_families.py) live.
NAMED_ON_PURPOSE = {
    ("iqabench/provenance.py", "pyiqa"): "the pyiqa distribution, whose version every run records",
    ("iqabench/models/pyiqa_support.py", "*"): "the pyiqa family's own support module",
    ("iqabench/builders/embedded.py", "pyiqa"): "the embedded set's labels are computed with pyiqa",
    ("iqabench/builders/embedded.py", "fsim"): "the embedded set's label column is FSIM (its card says so)",
    ("iqabench/models/pyiqa_support.py", "qalign-owl2"): "advice: the method that replaces a refused metric",
    ("iqabench/models/owl3_worker/client.py", "dog-iqa"): "advice: the method whose option sets the worker",
}


def registered_names() -> tuple[set[str], set[str]]:
    """(method, alias and family names; backend names) as the registry has them."""
    from iqabench import registry

    methods = registry.methods
    names = {n for n in methods.names() if not n.endswith(":<name>")} | set(methods.aliases())
    names |= {n.split(":", 1)[0] for n in methods.names() if ":" in n}
    return names, set(registry.backends.names())


def test_the_engine_names_no_method_family_or_backend():
    methods, backends = registered_names()
    assert {"brisque-svr", "pyiqa", "piqe", "vp-owl2"} <= methods and {"owl2", "llava"} <= backends
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        names = methods | (set() if rel.startswith("iqabench/models/") else backends)
        for line, name, literal in named_datasets(path.read_text(encoding="utf-8"), names):
            if (rel, name) not in NAMED_ON_PURPOSE and (rel, "*") not in NAMED_ON_PURPOSE:
                hits.append(f"{rel}:{line}: {name!r} in {literal[:60]!r}")
    assert not hits, "declare it as data (MethodInfo, the family, the backend's traits):\n" + "\n".join(hits)


def test_no_test_skips_because_a_test_dependency_is_missing():
    # torch, transformers, pyiqa (and its clip) are in the test extra: a missing one must fail the suite,
    # never turn a test into a skip that reads as a pass
    tests = Path(__file__).resolve().parent
    found = [f"{p.name}:{n}" for p in sorted(tests.rglob("*.py")) if p.name != Path(__file__).name
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if "importorskip(" in line]
    assert found == [], found
