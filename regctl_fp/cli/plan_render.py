"""Pictures of a plan: a rich tree, JSON, and Graphviz dot."""

from __future__ import annotations

from typing import Any

from ..recipe.plan import Plan
from . import output

_STYLE = {"cached": "green", "build": "yellow", "expired": "magenta", "input": "cyan"}


def as_json(plan: Plan) -> dict[str, Any]:
    return {
        "recipe": str(plan.recipe.path),
        "layout": str(plan.layout),
        "commit": plan.commit.sha,
        "nodes": [{"id": n.id, "stage": n.stage, "names": list(n.names), "state": n.state, "reason": n.reason,
                   "inputs": list(n.inputs), "key": n.key, "digest": n.digest, "unit": plan.is_unit(n)}
                  for n in plan.nodes],
        "units": [n.id for n in plan.nodes if plan.is_unit(n)],
    }


def as_dot(plan: Plan) -> str:
    lines = ["digraph regfp {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];"]
    for n in plan.nodes:
        label = f"{n.stage}\\n{n.names[0] if n.names else n.id}\\n{n.state}"
        color = {"cached": "darkgreen", "build": "orange", "expired": "purple", "input": "steelblue"}[n.state]
        lines.append(f'  "{n.id}" [label="{_esc(label)}", color={color}];')
    for n in plan.nodes:
        for i in n.inputs:
            lines.append(f'  "{i}" -> "{n.id}";')
    lines.append("}")
    return "\n".join(lines)


def _esc(text: str) -> str:
    return text.replace('"', '\\"')


def as_tree(plan: Plan) -> None:
    from rich.text import Text
    from rich.tree import Tree

    by_id = {n.id: n for n in plan.nodes}
    consumers = {i for n in plan.nodes for i in n.inputs}
    roots = [n for n in plan.nodes if n.id not in consumers]
    tree = Tree(Text.assemble((output.clean(plan.recipe.recipe.name), "bold"), " → ",
                              output.clean(str(plan.layout))))

    shown: set[str] = set()

    def add(parent: Tree, node_id: str) -> None:
        n = by_id[node_id]
        label = Text.assemble((n.stage, "bold"), " ", output.clean(", ".join(n.names)))
        if node_id in shown:  # a DAG drawn as a tree: shared inputs are expanded once
            parent.add(label.append(" (above)", "dim"))
            return
        shown.add(node_id)
        if n.key:
            label.append(f" {n.key[:12]}", "dim")
        label.append(f" {n.state}", _STYLE[n.state])
        label.append(f" ({output.clean(n.reason)})", "dim")
        branch = parent.add(label)
        for i in n.inputs:
            add(branch, i)

    for root in roots:
        add(tree, root.id)
    output.out_console().print(tree)
