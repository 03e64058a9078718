"""Pictures of a plan: a rich tree, JSON, and Graphviz dot (one node per plan node, every edge)."""

from __future__ import annotations

from typing import Any

from ..engine.graph import Outcome
from ..engine.run import Run
from . import output

_STYLE = {"cached": "green", "build": "yellow", "expired": "magenta", "input": "cyan", "waiting": "dim"}
_COLOR = {"cached": "darkgreen", "build": "orange", "expired": "purple", "input": "steelblue", "waiting": "gray"}


def _names(o: Outcome) -> list[str]:
    names = list(dict.fromkeys([*o.node.names, *(n for n, d in o.names.items() if d is not None)]))
    return names or ([o.node.label] if o.node.label else [])


def as_json(run: Run, outcomes: list[Outcome]) -> dict[str, Any]:
    return {
        "recipe": str(run.lr.path),
        "layout": str(run.layout),
        "commit": run.source.commit.sha if run.source else None,
        "nodes": [{"id": str(o.node.id), "stage": o.node.id.kind, "names": _names(o), "state": o.state,
                   "reason": o.reason, "inputs": [str(i) for i in o.node.inputs], "key": o.key, "digest": o.digest,
                   "unit": o.node.unit} for o in outcomes],
        "units": [str(o.node.id) for o in outcomes if o.node.unit],
    }


def as_dot(outcomes: list[Outcome]) -> str:
    lines = ["digraph regfp {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];"]
    for o in outcomes:
        names = _names(o)
        # An input says what it is (a channel, a commit); a stage node its state.
        parts = [o.node.id.kind, names[0] if names else str(o.node.id), o.reason if o.state == "input" else o.state]
        if o.key:
            parts.append(f"key {o.key[:12]}")
        label = "\\n".join(_esc(p) for p in parts)  # \n: a line break inside a dot label
        lines.append(f'  "{_esc(str(o.node.id))}" [label="{label}", color={_COLOR[o.state]}];')
    for o in outcomes:
        for i in o.node.inputs:
            lines.append(f'  "{_esc(str(i))}" -> "{_esc(str(o.node.id))}";')
    lines.append("}")
    return "\n".join(lines)


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def as_tree(run: Run, outcomes: list[Outcome]) -> None:
    from rich.text import Text
    from rich.tree import Tree

    by_id = {str(o.node.id): o for o in outcomes}
    consumers = {str(i) for o in outcomes for i in o.node.inputs}
    roots = [o for o in outcomes if str(o.node.id) not in consumers]
    tree = Tree(Text.assemble((output.clean(run.lr.recipe.name), "bold"), " → ", output.clean(str(run.layout))))
    shown: set[str] = set()

    def add(parent: Tree, node_id: str) -> None:
        o = by_id[node_id]
        names = _names(o)
        shown_names = ", ".join(names) if len(names) <= 3 else f"{names[0]} (+{len(names) - 1} names)"
        label = Text.assemble((o.node.id.kind, "bold"), " ", output.clean(shown_names))
        if node_id in shown:  # a DAG drawn as a tree: shared inputs are expanded once
            parent.add(label.append(" (above)", "dim"))
            return
        shown.add(node_id)
        if o.key:
            label.append(f" {o.key[:12]}", "dim")
        label.append(f" {o.state}", _STYLE[o.state])
        label.append(f" ({output.clean(o.reason)})", "dim")
        branch = parent.add(label)
        for i in o.node.inputs:
            add(branch, str(i))

    for root in roots:
        add(tree, str(root.node.id))
    output.out_console().print(tree)
