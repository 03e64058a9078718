"""The one reuse-or-make path every keyed stage kind goes through.

layout hit (an index entry with this key) -> remote cache hit -> make and write -> publish to the
remote cache. With a signing key, a remote hit must be vouched for and an entry is published with its
signed provenance (cache_trust.py). Names are not moved here: the run moves every changed name at once, at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..oci import annotation_keys as A
from ..oci.descriptor import Descriptor
from .graph import How, Node, Outcome, State
from .run import Run

REMOTE_HIT = "in the remote cache"


def reuse_or_make(run: Run, node: Node, key: str, names: Iterable[str], make: Callable[[], Descriptor], *,
                  cached_reason: str, make_reason: str, state: State = "build",
                  entry: dict[str, str] | None = None, fresh: bool = False) -> Outcome:
    """``make`` runs only when neither the layout nor the remote cache holds an image with ``key``, or
    when ``fresh`` (an expired build is made again, whatever is stored under its key)."""
    names = tuple(names)
    extra = {A.KEY: key, **(entry or {})}
    hit = None if fresh else run.snapshot.by_key(key)
    if hit is not None:
        return _outcome(run, node, key, names, hit, extra, "cached", "layout", cached_reason)
    if run.dry:
        return Outcome(node, state, "pending", make_reason, key)
    remote = run.options.remote
    if remote is not None and not fresh:
        from ..stores.remote_cache import key_tag
        from .cache_trust import trust

        found = remote.lookup(key_tag(key), trust(run, remote, node, key))
        fetched = remote.fetch(found, run.store) if found is not None else None
        if fetched is not None:
            return _outcome(run, node, key, names, fetched, extra, "cached", "remote", REMOTE_HIT)
    desc = make()
    if remote is not None:
        from ..stores.remote_cache import key_tag
        from .cache_trust import provenance

        # Named as the run's attestation will name it (its first name), so both are the same artifact.
        signed = provenance(run, node, key, names[0] if names else key_tag(key), desc)
        remote.publish(key_tag(key), run.store, desc, signed)
    return _outcome(run, node, key, names, desc, extra, state, "made", make_reason)


def _outcome(run: Run, node: Node, key: str, names: tuple[str, ...], desc: Descriptor, extra: dict[str, str],
             state: State, how: How, reason: str) -> Outcome:
    entry = run.entry(desc, **extra)
    return Outcome(node, state, how, reason, key, desc.digest.text, {n: entry for n in names})
