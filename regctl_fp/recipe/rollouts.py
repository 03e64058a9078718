"""Rollout operations against a layout: read the ledger, change it, store it and move its names.

Order of writes (what a reader can observe): the released image already exists under its patch name;
the new ledger index blob is stored; then ONE atomic index.json update moves ``ledger``, ``r<N>``,
``n-*`` and ``cohort-*`` together. A crash before that update leaves the previous state intact and
re-running cuts the same release number; after it, everything is consistent. The whole
read-modify-write runs under the layout's ``rollout`` lock, so two processes never cut the same number.
"""

from __future__ import annotations

from collections.abc import Callable

from ..oci.descriptor import Descriptor
from ..stages.rollout import Cohorts, Ledger, current_names, ledger_name, names
from ..stores.layout import LayoutStore
from .model import Rollouts


def cohorts_of(spec: Rollouts) -> Cohorts | None:
    if spec.cohorts is None:
        return None
    return Cohorts(spec.cohorts.buckets, int(spec.cohorts.canary.rstrip("%")))


def read_ledger(store: LayoutStore, name: str) -> Ledger:
    desc = store.names().get(ledger_name(name))
    if desc is None:
        return Ledger(name)
    return Ledger.parse(name, store.get_manifest(desc))


def update(store: LayoutStore, name: str, spec: Rollouts,
           change: Callable[[Ledger], Ledger]) -> tuple[Ledger, Ledger]:
    """Apply ``change`` to the ledger under the rollout lock; returns (before, after)."""
    with store.exclusive("rollout"):
        before = read_ledger(store, name)
        after = change(before)
        if after == before and ledger_name(name) in store.names():
            _sync_names(store, after, spec)  # heal names a crash may have left behind
            return before, after
        index = after.to_index()
        desc = store.put_manifest(index.to_bytes(), index.media_type)
        _sync_names(store, after, spec, ledger_desc=desc)
        return before, after


def _sync_names(store: LayoutStore, ledger: Ledger, spec: Rollouts, ledger_desc: Descriptor | None = None) -> None:
    wanted = names(ledger, spec.keep, cohorts_of(spec))
    existing = store.names()
    updates: dict[str, Descriptor | None] = {}
    for stale in current_names(existing, ledger) - set(wanted):
        updates[stale] = None
    for n, desc in wanted.items():
        have = existing.get(n)
        if desc is None:
            if have is not None:
                updates[n] = None
        elif have is None or have.digest != desc.digest:
            updates[n] = desc
    if ledger_desc is not None:
        updates[ledger_name(ledger.name)] = ledger_desc
    if updates:
        store.set_names(updates)
