"""The packages' import graph runs one way (README, Layout): core is a leaf, the engine and analysis
build on core alone, search spaces on core and the engine's method registry, trainables on the engine
and core, study on anything. Every import counts: top-level, inside functions and under
TYPE_CHECKING, absolute or relative, so a deferred import cannot hide an arrow running back up."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGES = ("core", "incremental", "analysis", "search_spaces", "trainables", "study")
# package -> the packages it may import (besides itself); the root (incsweep/__init__, cli, __main__) may import any
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "incremental": frozenset({"core"}),
    "analysis": frozenset({"core"}),
    "search_spaces": frozenset({"core", "incremental"}),
    "trainables": frozenset({"core", "incremental"}),
    "study": frozenset({"core", "incremental", "analysis", "search_spaces", "trainables"}),
}
# search_spaces reads one thing of the engine: the method registry (each method's default space)
NARROW = {("search_spaces", "incremental"): {"incsweep.incremental.methods"}}
BARE = ("study", "incremental", "analysis", "search_spaces", "trainables")


def _modules() -> dict[str, Path]:
    """Every module of the installed package: dotted name -> source file (wherever the install keeps it)."""
    found = {}
    root = Path(importlib.util.find_spec("incsweep").origin).parent
    for file in root.glob("*.py"):
        found["incsweep" if file.stem == "__init__" else f"incsweep.{file.stem}"] = file
    for package in PACKAGES:
        spec = importlib.util.find_spec(f"incsweep.{package}")
        (base,) = spec.submodule_search_locations
        for file in Path(base).rglob("*.py"):
            parts = [p for p in file.relative_to(base).with_suffix("").parts if p != "__init__"]
            found[".".join(["incsweep", package, *parts])] = file
    return found


def _imports(name: str, file: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in ``file``, relative ones resolved against ``name``."""
    is_package = file.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
                # `from . import x`: x is a module of that package
                out += [(node.lineno, f"{target}.{a.name}" if not node.module else target) for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "incsweep":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else "root"


MODULES = _modules()


def test_the_graph_sees_every_package():
    seen = {_package(m) for m in MODULES}
    assert seen == {*PACKAGES, "root"}
    assert len(MODULES) > 80  # every module, not a few


def _arrows_up(modules: dict[str, Path]) -> list[str]:
    wrong = []
    for name, file in modules.items():
        here = _package(name)
        if here == "root":
            continue
        for line, target in _imports(name, file):
            there = _package(target)
            if there is None or there == here:
                continue
            narrow = NARROW.get((here, there))
            if there not in ALLOWED[here] or (narrow and not any(target.startswith(n) for n in narrow)):
                wrong.append(f"{file}:{line}: {here} imports {target}")
    return wrong


def test_no_import_runs_back_up_the_layers():
    assert _arrows_up(MODULES) == []


def test_the_allowed_layers_have_no_cycle():
    order: list[str] = []
    while len(order) < len(ALLOWED):
        ready = [p for p in ALLOWED if p not in order and ALLOWED[p] <= set(order)]
        assert ready, f"a cycle among {sorted(set(ALLOWED) - set(order))}"
        order += sorted(ready)


@pytest.mark.parametrize("tree", ["incsweep", "study", "incremental", "analysis", "search_spaces", "trainables",
                                  "tests", "benchmarks", "examples"])
def test_no_folder_is_imported_by_its_bare_name(tree):
    """``import study`` would import the folder, not the package (and pass wherever the checkout is
    on sys.path): the package is ``incsweep.study``. ruff's TID251 says the same at lint time."""
    repo = Path(__file__).resolve().parents[1]
    wrong = []
    for file in (repo / tree).rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            absolute = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for target in absolute:
                if target.split(".")[0] in BARE:
                    wrong.append(f"{file.relative_to(repo)}:{node.lineno}: {target}")
    assert wrong == []


def test_the_check_catches_an_arrow_up(tmp_path):
    """The rule is live: a deferred import of study in the engine, a relative import out of core and
    search_spaces reaching past the registry are each reported; study importing analysis is not."""
    planted = {"incsweep.incremental.x": "def f():\n    from incsweep.study import runner\n",
               "incsweep.core.y": "from ..incremental import run\n",
               "incsweep.search_spaces.z": "from incsweep.incremental.run import run\n",
               "incsweep.study.ok": "from incsweep.analysis import pareto_front\n"}
    modules = {}
    for name, text in planted.items():
        modules[name] = tmp_path / f"{name}.py"
        modules[name].write_text(text)
    wrong = _arrows_up(modules)
    assert [w.split(": ", 1)[1] for w in wrong] == [
        "incremental imports incsweep.study", "core imports incsweep.incremental",
        "search_spaces imports incsweep.incremental.run"]
