"""The one table of stage kinds: for each, the stage it belongs to (what ``--only`` names), the stages
it stands on, how it finds its nodes in a recipe, how it checks its inputs before anything is made,
and how one node is evaluated (through ``reuse.reuse_or_make`` for the keyed kinds).

Each kind names the engine module that implements it, imported on first use: a run imports only the
kinds its recipe has (a recipe of matrix cells never loads the debug or environment machinery, and the
start-up of every command is shorter for it)."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import cast

from ..values import valueclass
from .graph import KindName, Node, Outcome
from .run import Run

Stage = str  # build, patch, rollout, environment, matrix, work, debug


Nodes = Callable[[Run], list[Node]]
Evaluate = Callable[[Run, Node], Outcome]
Check = Callable[[Run], None]


@functools.cache
def _function(module: str, name: str) -> Callable[..., object]:
    return cast(Callable[..., object], getattr(importlib.import_module(f"{__package__}.{module}"), name))


@valueclass
class Kind:
    name: KindName
    stage: Stage
    needs: frozenset[Stage]
    module: str  # the engine module implementing the kind (imported when the kind is first used)
    nodes_fn: str | None  # how it finds its nodes in a recipe (None: it has none of its own)
    evaluate_fn: str
    check_fn: str | None = None  # read and check inputs before anything is made
    # Whether the recipe can have nodes of this kind at all, told without importing the kind's module.
    present: Callable[[Run], bool] = lambda run: True

    def nodes(self, run: Run) -> list[Node]:
        if self.nodes_fn is None or not self.present(run):
            return []
        return cast(Nodes, _function(self.module, self.nodes_fn))(run)

    def evaluate(self, run: Run, node: Node) -> Outcome:
        return cast(Evaluate, _function(self.module, self.evaluate_fn))(run, node)

    @property
    def check(self) -> Check | None:
        return cast(Check, _function(self.module, self.check_fn)) if self.check_fn else None


KINDS: tuple[Kind, ...] = (
    Kind("input", "input", frozenset(), "build", None, "evaluate_input"),
    Kind("build", "build", frozenset(), "build", "build_nodes", "evaluate_build", "check_build",
         present=lambda run: run.source is not None),
    Kind("from", "build", frozenset(), "build", "from_nodes", "evaluate_from",
         present=lambda run: run.source is not None),
    Kind("patch", "patch", frozenset({"build"}), "patch", "patch_nodes", "evaluate_patch", "check_channels",
         present=lambda run: run.source is not None and run.lr.recipe.patch is not None),
    Kind("rollout", "rollout", frozenset({"build", "patch"}), "rollout", "rollout_nodes", "evaluate_rollout",
         present=lambda run: run.lr.recipe.rollouts is not None),
    Kind("environment", "environment", frozenset({"build", "patch", "rollout"}), "environment",
         "environment_nodes", "evaluate_environment", "check_inputs",
         present=lambda run: run.lr.recipe.rollouts is not None and bool(run.lr.recipe.environments)),
    Kind("matrix", "matrix", frozenset(), "units", "matrix_nodes", "evaluate_cell", "check_matrix",
         present=lambda run: bool(run.lr.recipe.matrix)),
    Kind("work", "work", frozenset(), "units", "work_nodes", "evaluate_chunk", "check_work",
         present=lambda run: bool(run.lr.recipe.work)),
    Kind("debug", "debug", frozenset({"build", "patch"}), "debug", "debug_nodes", "evaluate_debug", "check_debug",
         present=lambda run: run.debug is not None),
)
BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}
STAGES: tuple[Stage, ...] = ("build", "patch", "rollout", "environment", "matrix", "work")


def expand(stages: frozenset[Stage]) -> frozenset[Stage]:
    """The stages asked for and every stage they stand on."""
    out = set(stages)
    for kind in KINDS:
        if kind.stage in stages:
            out |= kind.needs
    return frozenset(out)
