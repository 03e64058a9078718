"""The remote stage cache: results stored in one registry repository under tags derived from their keys.

``key-<hex>`` holds a stage's output for stage key ``<hex>``; ``dir-<hex>`` the image a ``dir:`` tree
became, found by the hash of its uncompressed tar (so a fresh machine can name a base without
compressing it); ``ledger-<name>`` the newest known rollout ledger. A hit is trusted only after every
blob it needs answers a HEAD in the repository, so an entry whose blobs were deleted is recomputed. An
entry is published only after its blobs and manifest are in the repository (the tag moves last).

A complete entry is only as right as everyone who can push to the repository is honest. With a signing
key (recipe ``attest:``) the caller passes ``trust`` to ``lookup`` (the entry's signed provenance must
match the stage) and ``referrers`` to ``publish`` (that provenance, listed before the tag moves); for
``dir-`` entries, made below the engine, the engine installs a ``Voucher`` that does both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import NotFound, RegfpError, VerificationError
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.manifest import Index, Manifest
from ..oci.referrer import Artifact
from .base import Store


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    untrusted: int = 0  # entries found but incomplete (blobs gone) or not vouched for (trust): recomputed
    published: int = 0


class Voucher(Protocol):
    """Signs the entries this machine publishes and checks those it finds (engine/cache_trust.py)."""

    def vouches(self, store: Store, desc: Descriptor, kind: str, key: str) -> bool: ...

    def sign(self, desc: Descriptor, kind: str, key: str, name: str) -> list[Artifact]: ...


@dataclass
class RemoteCache:
    store: Store  # a RegistryStore bound to the cache repository
    repository: str
    stats: CacheStats = field(default_factory=CacheStats)
    voucher: Voucher | None = field(default=None, compare=False)  # set by a run with a signing key

    def vouched(self, kind: str, key: str) -> Callable[[Descriptor], bool] | None:
        """The ``trust`` of ``lookup`` for an entry of ``kind`` and ``key`` (None: no voucher)."""
        voucher = self.voucher
        if voucher is None:
            return None
        return lambda desc: voucher.vouches(self.store, desc, kind, key)

    def signed(self, desc: Descriptor, kind: str, key: str, name: str) -> list[Artifact]:
        """The ``referrers`` of ``publish`` for that entry (none without a voucher)."""
        return [] if self.voucher is None else self.voucher.sign(desc, kind, key, name)

    def _name(self, tag: str) -> str:
        return f"{self.repository}:{tag}"

    def lookup(self, tag: str, trust: Callable[[Descriptor], bool] | None = None) -> Descriptor | None:
        """The entry's descriptor when it exists, all its blobs are there and ``trust`` (if given) accepts
        it; None otherwise."""
        try:
            desc = self.store.resolve(self._name(tag))
        except NotFound:
            self.stats.misses += 1
            return None
        if not self._complete(desc) or (trust is not None and not trust(desc)):
            self.stats.untrusted += 1
            return None
        self.stats.hits += 1
        return Descriptor(desc.media_type, desc.digest, desc.size)

    def _complete(self, desc: Descriptor) -> bool:
        try:
            data = self.store.get_manifest(desc)
            if desc.media_type in mt.INDEX_TYPES:
                return all(self._complete(d) for d in Index.parse(data, desc.media_type).manifests)
            if desc.media_type in mt.MANIFEST_TYPES:
                m = Manifest.parse(data, desc.media_type)
                return all(self.store.has_blob(d.digest) for d in (m.config, *m.layers) if not d.urls)
            return self.store.has_blob(desc.digest)
        except RegfpError:
            return False

    def fetch(self, desc: Descriptor, into: Store) -> Descriptor | None:
        """Copy the entry into ``into`` (only the blobs it lacks travel). None when a blob turns out to be
        missing or wrong after all (a HEAD can answer for a blob whose data is gone): recompute then."""
        from .transfer import copy_descriptor

        try:
            return copy_descriptor(self.store, into, desc)
        except (NotFound, VerificationError):
            self.stats.hits -= 1
            self.stats.untrusted += 1
            return None

    def publish(self, tag: str, source: Store, desc: Descriptor, referrers: Sequence[Artifact] = ()) -> None:
        """Blobs and manifests first (uploaded or mounted), then the ``referrers`` of the entry (pushed and
        listed), the tag last: whoever sees the tag finds them."""
        from .referrers import write_artifact
        from .transfer import copy_descriptor

        plain = Descriptor(desc.media_type, desc.digest, desc.size)
        copy_descriptor(source, self.store, plain)
        if referrers:
            from .referrers import publish as list_referrers
            from .registry import RegistryStore

            if not isinstance(self.store, RegistryStore):
                raise RegfpError(f"{self.store.location} cannot hold referrers: not a registry")
            pushed = [write_artifact(self.store, art) for art in referrers]
            # No settle pause (referrers.py): a listing a concurrent writer drops costs the next reader a
            # recompute (no provenance: untrusted), never a wrong hit; the pause would cost every entry.
            list_referrers(self.store, self.store._write_repo(), pushed, settle=0.0)
        self.store.set_names({self._name(tag): plain})
        self.stats.published += 1


def key_tag(key: str) -> str:
    return f"key-{key}"


def dir_tag(identity: str) -> str:
    return f"dir-{identity}"


def ledger_tag(name: str) -> str:
    return f"ledger-{name}"
