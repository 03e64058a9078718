"""The plan's vocabulary: node ids, nodes, and what evaluating a node gave (an outcome)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..oci.descriptor import Descriptor
from ..values import valueclass

KindName = Literal["input", "build", "from", "patch", "rollout", "environment", "matrix", "work", "debug"]
# What a node's names will hold, as a plan shows it: an input, already there, to be made (state
# "build", for any kind), an expired build, or nothing yet (an environment waiting for a release).
State = Literal["input", "cached", "build", "expired", "waiting"]
# Where a node's result came from: the layout (by key), the remote cache, made now, not known (a plan
# that makes nothing), or there is nothing to hold.
How = Literal["input", "layout", "remote", "made", "pending", "none"]


@dataclass(frozen=True, order=True)
class NodeId:
    kind: KindName
    part: str = ""  # the channel, environment label, cell or chunk name, input name

    def __str__(self) -> str:
        return f"{self.kind}:{self.part}" if self.part else self.kind


@valueclass
class Node:
    id: NodeId
    names: tuple[str, ...] = ()  # names known before evaluation (an environment's :live, a patch name)
    inputs: tuple[NodeId, ...] = ()
    unit: bool = False  # an independent unit: what ``--shard`` splits
    label: str = ""  # for inputs: the reference as written


@valueclass
class Outcome:
    """What one node's evaluation gave. ``names`` is the desired index entry of every name the node
    owns (None: the name must not exist); ``digest`` its main output, for the nodes that consume it."""

    node: Node
    state: State
    how: How
    reason: str
    key: str | None = None
    digest: str | None = None
    names: Mapping[str, Descriptor | None] = field(default_factory=dict)

    @property
    def cached(self) -> bool:
        return self.how in ("layout", "remote")
