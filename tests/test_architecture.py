"""The package's shape: import layers (import-linter, as CI runs it), no import cycle anywhere, strict
types (mypy --strict, as CI runs it), and small modules."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from conftest import ROOT, need

PACKAGE = ROOT / "regctl_fp"


def test_every_module_has_a_layer() -> None:
    """A new top-level module must be placed in the layers contract, or it would escape the check."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    named = {part.strip() for layer in layers for part in layer.replace("|", ":").split(":")}
    modules = {f"regctl_fp.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    modules |= {f"regctl_fp.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    assert modules - named == set()


def _script(name: str) -> str:
    """A console script of the test extra: beside this interpreter (a venv's bin, which .ci/run does not
    put on PATH), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else need(name)


def test_import_layers_hold() -> None:
    proc = subprocess.run([_script("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    """Every import counts here, lazy ones inside functions included; only imports for type checking
    are left out (they never run)."""
    graph = grimp.build_graph("regctl_fp", exclude_type_checking_imports=True)
    # A package's __init__ importing its own modules is not a cycle between modules.
    for module in list(graph.modules):
        for imported in list(graph.find_modules_directly_imported_by(module)):
            if module == "regctl_fp" or imported.startswith(module + "."):
                graph.remove_import(importer=module, imported=imported)
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph) == [["p.a", "p.b"]]


def test_mypy_strict() -> None:
    if importlib.util.find_spec("mypy") is None:  # run by this interpreter, as CI's venv has it
        need("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("package", ["engine", "recipe"])
def test_modules_stay_small(package: str) -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / package).glob("*.py")}
    assert max(sizes.values()) <= 420, sizes


def test_recipe_never_imports_the_engine() -> None:
    graph = grimp.build_graph("regctl_fp")
    for module in graph.find_children("regctl_fp.recipe"):
        imported = graph.find_modules_directly_imported_by(module)
        assert not any(m.startswith("regctl_fp.engine") for m in imported), module


def test_every_stage_kind_names_functions_that_exist() -> None:
    """The table of stage kinds names each kind's module and functions (imported on first use): every
    name must resolve to a callable, so a misspelling fails here rather than in the one run that needs it."""
    import importlib

    from regctl_fp.engine.kinds import KINDS

    for kind in KINDS:
        module = importlib.import_module(f"regctl_fp.engine.{kind.module}")
        for name in (kind.nodes_fn, kind.evaluate_fn, kind.check_fn):
            if name is not None:
                assert callable(getattr(module, name, None)), f"{kind.name}: {kind.module}.{name}"
