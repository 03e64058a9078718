"""The remote stage cache: results stored in one registry repository under tags derived from their keys.

``key-<hex>`` holds a stage's output for stage key ``<hex>``; ``dir-<hex>`` the image a ``dir:`` tree
became, found by the hash of its uncompressed tar (so a fresh machine can name a base without
compressing it); ``ledger-<name>`` the newest known rollout ledger. A hit is trusted only after every
blob it needs answers a HEAD in the repository, so an entry whose blobs were deleted is recomputed. An
entry is published only after its blobs and manifest are in the repository (the tag moves last).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import NotFound, RegfpError, VerificationError
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.manifest import Index, Manifest
from .base import Store


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    untrusted: int = 0  # entries found but incomplete (blobs gone): recomputed
    published: int = 0


@dataclass
class RemoteCache:
    store: Store  # a RegistryStore bound to the cache repository
    repository: str
    stats: CacheStats = field(default_factory=CacheStats)

    def _name(self, tag: str) -> str:
        return f"{self.repository}:{tag}"

    def lookup(self, tag: str) -> Descriptor | None:
        """The entry's descriptor when it exists and all its blobs are there; None otherwise."""
        try:
            desc = self.store.resolve(self._name(tag))
        except NotFound:
            self.stats.misses += 1
            return None
        if not self._complete(desc):
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

    def publish(self, tag: str, source: Store, desc: Descriptor) -> None:
        """Blobs and manifests first (uploaded or mounted), the tag last."""
        from .transfer import copy_descriptor

        plain = Descriptor(desc.media_type, desc.digest, desc.size)
        copy_descriptor(source, self.store, plain)
        self.store.set_names({self._name(tag): plain})
        self.stats.published += 1


def key_tag(key: str) -> str:
    return f"key-{key}"


def dir_tag(identity: str) -> str:
    return f"dir-{identity}"


def ledger_tag(name: str) -> str:
    return f"ledger-{name}"
