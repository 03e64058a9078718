"""A run: find the nodes, evaluate each once in order, then move every changed name at once.

Order of writes: blobs and manifests as nodes are made (nothing named); then one ``index.json``
replacement moves every name whose desired entry differs from what the layout holds, the rollout
lock held from reading the ledger until then. A crash before it leaves every name as it was; a re-run
finds the made images by key once named, or makes them again (same inputs, same bytes). The report is
read back from the layout afterwards.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext

from ..oci import annotation_keys as A
from ..oci.descriptor import Descriptor
from ..stores.layout import LayoutStore
from .graph import Node, NodeId, Outcome
from .kinds import BY_NAME, KINDS, STAGES, expand
from .report import ImageResult, Report
from .run import Run
from .source import open_source


def nodes_of(run: Run, stages: Iterable[str] = STAGES, shard: tuple[int, int] | None = None, *,
             with_needs: bool = True) -> list[Node]:
    """The recipe's nodes for ``stages`` (and, ``with_needs``, what they stand on), inputs first."""
    wanted = expand(frozenset(stages)) if with_needs else frozenset(stages)
    if run.source is None:
        r = run.lr.recipe
        from .platforms import from_digest as digest_of

        from_digest = digest_of(run, r.patch.from_) if r.patch and r.patch.from_ and \
            wanted & {"build", "patch", "rollout", "environment"} else None
        run.source = open_source(run.lr, git_cache=run.git_cache, from_digest=from_digest) \
            if wanted & {"build", "patch", "rollout", "environment"} else None
    nodes: list[Node] = []
    seen: set[NodeId] = set()
    for kind in KINDS:
        if kind.stage not in wanted:
            continue
        for node in kind.nodes(run):
            if node.id not in seen:
                seen.add(node.id)
                nodes.append(node)
    if shard is not None:
        nodes = [n for n in nodes if not n.unit or in_shard(str(n.id), *shard)]
    return nodes


def in_shard(unit: str, index: int, count: int) -> bool:
    """Unit ids go to shards by sha256, so every shard agrees without talking to the others."""
    return int(hashlib.sha256(unit.encode()).hexdigest(), 16) % count == index - 1


def evaluate(run: Run, nodes: list[Node]) -> list[Outcome]:
    """Every node's outcome, in order; inputs are checked first (before anything is made)."""
    consumers: dict[NodeId, list[NodeId]] = {}
    for node in nodes:
        for i in node.inputs:
            consumers.setdefault(i, []).append(node.id)
        if node.id.kind == "input" and node.id.part.startswith("ref:"):
            run.lr.image_ref(node.label)  # every reference the run will load is checked before anything is made
    run.memo["consumers"] = consumers
    present = {n.id.kind for n in nodes}
    for kind in KINDS:
        if kind.name in present and kind.check is not None:
            kind.check(run)
    outcomes = []
    for node in nodes:
        outcome = BY_NAME[node.id.kind].evaluate(run, node)
        run.outcomes[node.id] = outcome
        outcomes.append(outcome)
    return outcomes


def plan(run: Run, stages: Iterable[str] = STAGES) -> list[Outcome]:
    """What a run would do, making and writing nothing (``run.dry`` must be set)."""
    assert run.dry
    try:
        return evaluate(run, nodes_of(run, stages))
    finally:
        run.close()


def converge(run: Run, stages: Iterable[str] = STAGES, shard: tuple[int, int] | None = None, *,
             with_needs: bool = True) -> Report:
    """Make the layout hold the desired state of every name the selected stages own; report what is.
    ``with_needs=False`` runs exactly the stages named (a debug image of a release in the ledger)."""
    assert not run.dry
    try:
        scanning: AbstractContextManager[None] = nullcontext()
        if run.lr.recipe.attest is not None:  # a bad key fails before anything is made
            from .attest import scanning as scan_layers
            from .cache_trust import install

            install(run)  # loads the key; remote cache entries are signed with it and checked against it
            scanning = scan_layers(run)  # the SBOM's scan of each layer the run writes, as it is written
        with scanning:
            outcomes = evaluate(run, nodes_of(run, stages, shard, with_needs=with_needs))
        changed = commit(run, outcomes)
    finally:
        run.close()
    report = read_back(run, outcomes, changed)
    report.rollout = run.memo.get("rollout")
    layers = sys.modules.get("regctl_fp.layers")  # never imported: nothing was compressed
    report.layers_compressed = layers.Counters.compressed if layers is not None else 0
    return report


def desired(outcomes: Iterable[Outcome]) -> dict[str, Descriptor | None]:
    out: dict[str, Descriptor | None] = {}
    for o in outcomes:
        out.update(o.names)
    return out


def commit(run: Run, outcomes: list[Outcome]) -> set[str]:
    """One index replacement moving every name whose entry differs from the desired one."""
    want = desired(outcomes)
    if not want:
        return set()
    referrers: list[Descriptor] = []
    if run.lr.recipe.attest is not None:  # listed with the names they attest (engine/attest.py says why)
        from .attest import attest

        referrers = attest(run, outcomes)
    layout = run.readable
    current = layout.names() if layout is not None else {}  # fresh: read again if another run moved names
    changes = {n: d for n, d in want.items() if not same_entry(current.get(n), d)}
    if changes or referrers:
        run.store.set_names(changes, referrers=referrers)
    return set(changes)


def same_entry(have: Descriptor | None, want: Descriptor | None) -> bool:
    if have is None or want is None:
        return have is None and want is None
    # The layout sets ref.name itself; a desired entry taken from the index (the ledger) carries it too.
    def plain(d: Descriptor) -> dict[str, str]:
        return {k: v for k, v in d.annotations.items() if k != A.REF_NAME}

    return (have.digest == want.digest and have.media_type == want.media_type and have.size == want.size
            and plain(have) == plain(want))


def read_back(run: Run, outcomes: list[Outcome], changed: set[str]) -> Report:
    store = run.readable or (LayoutStore.open(run.layout) if (run.layout / "oci-layout").exists() else None)
    names: Mapping[str, Descriptor] = store.names() if store is not None else {}
    report = Report(str(run.layout))
    for o in outcomes:
        if o.node.id.kind == "input":
            continue
        stage = o.node.id.kind
        if o.state == "waiting":
            report.notes.append(f"{o.node.id.part}: {o.reason}")
        for name, want in o.names.items():
            have = names.get(name)
            if have is None:
                if want is None and name in changed:
                    report.removed.append(name)
                continue
            report.images.append(ImageResult(stage=stage, name=name, digest=have.digest.text,
                                             cached=o.cached or name not in changed, state=o.state, reason=o.reason))
    return report
