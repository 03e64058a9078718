"""The one table of stage kinds: for each, the stage it belongs to (what ``--only`` names), the stages
it stands on, how it finds its nodes in a recipe, how it checks its inputs before anything is made,
and how one node is evaluated (through ``reuse.reuse_or_make`` for the keyed kinds)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import build, debug, environment, patch, rollout, units
from .graph import KindName, Node, Outcome
from .run import Run

Stage = str  # build, patch, rollout, environment, matrix, work, debug


@dataclass(frozen=True)
class Kind:
    name: KindName
    stage: Stage
    needs: frozenset[Stage]
    nodes: Callable[[Run], list[Node]]
    evaluate: Callable[[Run, Node], Outcome]
    check: Callable[[Run], None] | None = None  # read and check inputs before anything is made


def _none(run: Run) -> list[Node]:
    return []


KINDS: tuple[Kind, ...] = (
    Kind("input", "input", frozenset(), _none, build.evaluate_input),
    Kind("build", "build", frozenset(), build.build_nodes, build.evaluate_build, build.check_build),
    Kind("from", "build", frozenset(), build.from_nodes, build.evaluate_from),
    Kind("patch", "patch", frozenset({"build"}), patch.patch_nodes, patch.evaluate_patch, patch.check_channels),
    Kind("rollout", "rollout", frozenset({"build", "patch"}), rollout.rollout_nodes, rollout.evaluate_rollout),
    Kind("environment", "environment", frozenset({"build", "patch", "rollout"}), environment.environment_nodes,
         environment.evaluate_environment, environment.check_inputs),
    Kind("matrix", "matrix", frozenset(), units.matrix_nodes, units.evaluate_cell),
    Kind("work", "work", frozenset(), units.work_nodes, units.evaluate_chunk),
    Kind("debug", "debug", frozenset({"build", "patch"}), debug.debug_nodes, debug.evaluate_debug, debug.check_debug),
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
