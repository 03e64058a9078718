"""Stage kind ``rollout``: the release stream, kept in the layout as an index (the ledger).

The ledger is history: releases are cut, never recomputed. Its desired state is the stored ledger,
changed by the operator (yank, unyank) and then, when the rollout channel's image is new, by a cut.
Every ``rollouts/<name>:*`` name follows from it (``r<N>``, ``n-<k>``, ``cohort-<b>``, ``ledger``) and
moves with the run's other names in one index replacement, under the layout's ``rollout`` lock, so
two processes never cut the same number and a reader sees the old stream or the new one.

With a remote cache the ledger is shared through it: a newer remote ledger is adopted first, and a
changed ledger is published; if another machine published in between, theirs is taken and the cut
retried on top of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..errors import RegfpError
from ..oci import annotation_keys as A
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.manifest import Manifest
from ..recipe.model import Rollouts
from ..stages.rollout import Cohorts, Ledger, current_names, ledger_name, names
from ..stores.base import Store
from ..stores.layout import LayoutStore
from ..timeutil import rfc3339
from .graph import Node, NodeId, Outcome
from .patch import patch_id
from .run import Run

ROLLOUT = NodeId("rollout")
ATTEMPTS = 5


def cohorts_of(spec: Rollouts) -> Cohorts | None:
    if spec.cohorts is None:
        return None
    return Cohorts(spec.cohorts.buckets, int(spec.cohorts.canary.rstrip("%")))


def read_ledger(store: LayoutStore, name: str) -> Ledger:
    desc = store.names().get(ledger_name(name))
    if desc is None:
        return Ledger(name)
    return Ledger.parse(name, store.get_manifest(desc))


def wanted_names(store_names: Mapping[str, Descriptor], ledger: Ledger, spec: Rollouts,
                 ledger_desc: Descriptor | None) -> dict[str, Descriptor | None]:
    """Every rollout name and what it must hold (None: it must go), given the ledger."""
    wanted: dict[str, Descriptor | None] = {}
    if ledger_desc is not None:
        wanted[ledger_name(ledger.name)] = ledger_desc
    for n, desc in names(ledger, spec.keep, cohorts_of(spec)).items():
        wanted[n] = None if desc is None else Descriptor(desc.media_type, desc.digest, desc.size,
                                                          platform=desc.platform)
    for stale in sorted(current_names(store_names, ledger) - set(wanted)):
        wanted[stale] = None
    return wanted


def update(store: LayoutStore, name: str, spec: Rollouts,
           change: Callable[[Ledger], Ledger]) -> tuple[Ledger, Ledger]:
    """Apply ``change`` to the ledger under the rollout lock and move the rollout names; (before, after).
    For tools and tests that change a stream without a recipe run."""
    with store.exclusive("rollout"):
        before = read_ledger(store, name)
        after = change(before)
        index = after.to_index()
        desc = store.put_manifest(index.to_bytes(), index.media_type)
        store.set_names(wanted_names(store.names(), after, spec, desc))
        return before, after


def rollout_nodes(run: Run) -> list[Node]:
    r = run.lr.recipe
    if r.rollouts is None or (run.channels is not None and r.rollouts.channel not in run.channels):
        return []
    inputs = (patch_id(r.rollouts.channel),) if run.cut and r.patch is not None and run.source is not None else ()
    return [Node(ROLLOUT, (ledger_name(r.name),), inputs)]


def evaluate_rollout(run: Run, node: Node) -> Outcome:
    r = run.lr.recipe
    spec = r.rollouts
    assert spec is not None
    name = ledger_name(r.name)
    image = _candidate(run, node)
    run.hold("rollout")  # until the run's names have moved (nothing in a plan)
    reader = run.readable
    stored = read_ledger(reader, r.name) if reader is not None else Ledger(r.name)
    after = _change(run, stored, image)
    was_cut = after.last > stored.last
    ledger_desc = None
    if not run.dry and run.options.remote is not None:
        after, ledger_desc, was_cut = _shared(run, stored, image)
    elif not run.dry and (after != stored or (after.releases and reader is not None and name not in reader.names())):
        ledger_desc = _store_ledger(run.store, after)
    run.memo["ledger"] = after
    current = run.readable.names() if run.readable is not None else {}
    wanted = wanted_names(current, after, spec, ledger_desc or current.get(name))
    latest = after.latest
    run.memo["rollout"] = {"release": latest.number, "cut": was_cut} if latest is not None else None
    pending = image is None and bool(node.inputs) and run.dry
    if pending:
        reason = f"r{after.last + 1} will be cut if the {spec.channel} image is new"
    elif latest is None:
        reason = "no release yet"
    else:
        reason = f"cut r{latest.number}" if was_cut else f"r{latest.number} is the newest release"
    return Outcome(node, "build" if was_cut or pending else "cached", "pending" if pending else
                   ("made" if was_cut else "layout"), reason,
                   digest=latest.image.digest.text if latest else None, names=wanted)


def _candidate(run: Run, node: Node) -> tuple[Descriptor, str] | None:
    """The rollout channel's image (and its base digest) when this run may cut; None otherwise. A
    multi-platform release is the channel's image index: each of its images names its own base, so the
    ledger entry records none."""
    if not node.inputs:
        return None
    patched = run.outcome(node.inputs[0])
    entry = next((d for d in patched.names.values() if d is not None), None)
    if entry is None:
        return None
    desc = Descriptor(entry.media_type, entry.digest, entry.size)
    store = run.readable
    if store is None or desc.media_type in mt.INDEX_TYPES:
        return desc, ""
    base = Manifest.parse(store.get_manifest(desc), desc.media_type).annotations.get(A.BASE_DIGEST, "")
    return desc, base


def _change(run: Run, ledger: Ledger, image: tuple[Descriptor, str] | None) -> Ledger:
    if run.ledger_change is not None:
        ledger = run.ledger_change.apply(ledger)
    if image is not None:
        spec = run.lr.recipe.rollouts
        assert spec is not None and run.source is not None
        ledger = ledger.cut(image[0], created=rfc3339(run.now), revision=run.source.commit.sha,
                            channel=spec.channel, base_digest=image[1])
    return ledger


def _store_ledger(store: Store, ledger: Ledger) -> Descriptor:
    index = ledger.to_index()
    return store.put_manifest(index.to_bytes(), index.media_type)


def _shared(run: Run, stored: Ledger, image: tuple[Descriptor, str] | None) -> tuple[Ledger, Descriptor, bool]:
    """The stream as shared through the remote cache: theirs when it is newer, then this run's change,
    published (and retried on top of theirs if another machine published in between)."""
    from ..stores.remote_cache import ledger_tag

    remote = run.options.remote
    assert remote is not None
    name = stored.name
    for _attempt in range(ATTEMPTS):
        base = stored
        found = remote.lookup(ledger_tag(name))
        if found is not None:
            theirs = Ledger.parse(name, remote.store.get_manifest(found))
            # The remote stream is the shared truth unless it is older; an incomplete one is not taken.
            if theirs.last >= stored.last and remote.fetch(found, run.store) is not None:
                base = theirs
        after = _change(run, base, image)
        desc = _store_ledger(run.store, after)
        if found is None or found.digest != desc.digest:
            remote.publish(ledger_tag(name), run.store, desc)
        check = remote.lookup(ledger_tag(name))
        if check is not None and check.digest == desc.digest:
            return after, desc, after.last > base.last
    raise RegfpError(f"the rollout ledger of {name} kept moving in the remote cache; try again")
