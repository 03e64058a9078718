"""Remote cache entries vouched for by the recipe's attestation key (recipe ``attest:``).

Without a key, an entry is trusted as far as everyone who can push to the cache repository is. With
one, this machine publishes each entry with a provenance signed by the key (the same statement the run's
attestations hold for that image), and takes a hit only when such a provenance, about the entry's
manifest and naming the node's stage kind, key and input digests, verifies with the key's public half.
A refused entry is made again here and published over the tag. ``dir-`` entries (made below the
engine, in sources.py) get the same through the ``KeyVoucher`` a run installs on its remote cache.
"""

from __future__ import annotations

from collections.abc import Callable

from ..attest.dsse import DSSE_MEDIA, IN_TOTO, sign
from ..attest.keys import SigningKey
from ..attest.provenance import SLSA_PROVENANCE, StageRun, provenance_statement
from ..attest.trust import provenance_problem
from ..oci import annotation_keys as A
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.referrer import Artifact, artifact
from ..stores.base import Store, read_image
from ..stores.remote_cache import RemoteCache
from ..values import valueclass
from .attest import FROM_SOURCE, inputs_of, signing_key, source_ref, stage_run
from .graph import Node, Outcome
from .keys import document_of
from .run import Run


def trust(run: Run, remote: RemoteCache, node: Node, key: str) -> Callable[[Descriptor], bool] | None:
    """The check a hit for ``node`` (stage ``key``) must pass; None without a signing key."""
    signer = signing_key(run)
    if signer is None:
        return None
    kind = node.id.kind
    doc = document_of(key) or {}
    inputs = [i.digest for i in inputs_of(kind, doc.get("inputs") or {}, doc.get("fragment"))]

    def check(desc: Descriptor) -> bool:
        return provenance_problem(remote.store, desc, signer.public, kind, key, inputs) is None

    return check


def provenance(run: Run, node: Node, key: str, name: str, desc: Descriptor) -> list[Artifact]:
    """The signed provenance to publish with the entry ``desc`` (none without a signing key): the
    statement the run's attestations make of it under ``name``, so both are one artifact."""
    signer = signing_key(run)
    if signer is None:
        return []
    plain = Descriptor(desc.media_type, desc.digest, desc.size)
    image = read_image(run.store, plain) if desc.media_type not in mt.INDEX_TYPES else None
    source = source_ref(run) if node.id.kind in FROM_SOURCE else None
    o = Outcome(node, "build", "made", "", key, desc.digest.text)
    payload = provenance_statement(name, desc.digest, stage_run(run, o, source, image))
    return [_signed(plain, payload, signer)]


def _signed(subject: Descriptor, payload: bytes, signer: SigningKey) -> Artifact:
    plain = Descriptor(subject.media_type, subject.digest, subject.size)
    return artifact(plain, IN_TOTO, sign(payload, signer).to_json(), DSSE_MEDIA,
                    {A.PREDICATE_TYPE: SLSA_PROVENANCE, A.ATTEST_KEYID: signer.keyid})


@valueclass
class KeyVoucher:
    """The ``Voucher`` of the entries made below the engine (``dir-`` trees): a provenance of kind
    ``dir`` whose stage key is the tree's identity, signed by the recipe's key."""

    signer: SigningKey

    def vouches(self, store: Store, desc: Descriptor, kind: str, key: str) -> bool:
        return provenance_problem(store, desc, self.signer.public, kind, key) is None

    def sign(self, desc: Descriptor, kind: str, key: str, name: str) -> list[Artifact]:
        payload = provenance_statement(name, desc.digest, StageRun(kind=kind, key=key, recipe={}))
        return [_signed(desc, payload, self.signer)]


def install(run: Run) -> None:
    """Give the run's remote cache this recipe's voucher (nothing without a key or a cache)."""
    signer = signing_key(run)
    if signer is not None and run.options.remote is not None:
        run.options.remote.voucher = KeyVoucher(signer)
