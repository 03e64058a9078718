"""`regfp plan --format dot`: a faithful picture of the plan, drawn by the real Graphviz."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import ROOT, need, regfp
from test_units import units_project


def test_dot_is_the_plans_dag(tmp_path: Path) -> None:
    units_project(tmp_path)
    dot = regfp("plan", str(tmp_path / "recipe.yaml"), "--format", "dot").stdout
    declared = re.findall(r'^  "([^"]+)" \[label="([^"]*)"', dot, re.M)
    ids = [i for i, _ in declared]
    assert len(ids) == len(set(ids)), "a node is drawn twice"
    edges = re.findall(r'^  "([^"]+)" -> "([^"]+)";', dot, re.M)
    assert all(a in ids and b in ids for a, b in edges), "an edge to a node that is not drawn"
    inputs = [label.split("\\n")[1] for i, label in declared if i.startswith("input:")]
    assert len(inputs) == len(set(inputs)), f"one image reference drawn as two inputs: {inputs}"
    targets = {b for _, b in edges}
    for node in ids:
        if node.startswith(("matrix:", "work:", "patch:", "build")):
            assert node in targets, f"{node} has no inputs drawn"
    # The build's base is the stable channel: one node feeds the build and the stable patch.
    base = next(a for a, b in edges if b == "build" and a.startswith("input:ref:"))
    assert (base, "patch:stable") in edges
    # A node whose inputs are known shows its key (a patch waits for its build's digest, a rollout has none).
    keyed = [label for i, label in declared if i == "build" or i.startswith(("matrix:", "work:"))]
    assert keyed and all("\\nkey " in label for label in keyed)
    svg = subprocess.run([need("dot"), "-Tsvg"], input=dot, capture_output=True, text=True, check=True).stdout
    assert svg.count('class="node"') == len(ids) and svg.count('class="edge"') == len(edges)


def test_dot_and_json_together_are_refused(tmp_path: Path) -> None:
    units_project(tmp_path)
    proc = regfp("plan", str(tmp_path / "recipe.yaml"), "--format", "dot", "--json", check=False)
    assert proc.returncode == 2 and "give one" in proc.stderr and proc.stdout.count("digraph") == 0


def test_readme_shows_the_demo_plan() -> None:
    picture = ROOT / "recipes" / "app-plan.svg"
    assert "recipes/app-plan.svg" in (ROOT / "README.md").read_text()
    text = picture.read_text()
    assert text.lstrip().startswith("<?xml") and 'class="node"' in text and "matrix/models" in text
