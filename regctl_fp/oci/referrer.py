"""OCI 1.1 referrers as values: the artifact manifest that points at an image through ``subject``, the
descriptor a referrers list shows for it, and the referrers tag of the distribution spec's fallback.

Everything here is pure and deterministic: the same subject, type, content and annotations give the
same manifest bytes, so an attestation's digest is reproducible.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from functools import cached_property

from ..values import valueclass
from . import mediatypes as mt
from .descriptor import Descriptor
from .digest import Digest
from .frozen import frozen_str_map
from .manifest import Index, Manifest

REF_NAME = "org.opencontainers.image.ref.name"

# The empty descriptor of image-spec 1.1 (manifest.md, "Guidance for an Empty Descriptor"): the config of
# an artifact that has none, its two bytes embedded as ``data`` so a client need not fetch them.
EMPTY_DESCRIPTOR = Descriptor(mt.OCI_EMPTY, Digest.of(mt.EMPTY_JSON), len(mt.EMPTY_JSON),
                              data=base64.b64encode(mt.EMPTY_JSON).decode("ascii"))


def subject_of(desc: Descriptor) -> Descriptor:
    """The ``subject`` field for an image: media type, digest and size only (a layout's name or a
    platform is where the image is kept, not what it is)."""
    return Descriptor(desc.media_type, desc.digest, desc.size)


@valueclass
class Artifact:
    """An artifact manifest and the bytes of its one layer (its config is the empty descriptor)."""

    manifest: Manifest
    content: bytes

    @cached_property
    def manifest_bytes(self) -> bytes:
        return self.manifest.to_bytes()

    @property
    def descriptor(self) -> Descriptor:
        """The manifest's descriptor as a referrers list shows it (artifactType, annotations)."""
        data = self.manifest_bytes
        return referrer_descriptor(Descriptor(mt.OCI_MANIFEST, Digest.of(data), len(data)), self.manifest)

    @property
    def layer(self) -> Descriptor:
        return self.manifest.layers[0]

    @property
    def blobs(self) -> tuple[tuple[Descriptor, bytes], ...]:
        """What must be stored before the manifest: the empty config and the layer."""
        return ((self.manifest.config, mt.EMPTY_JSON), (self.layer, self.content))


def artifact(subject: Descriptor, artifact_type: str, content: bytes, media_type: str,
             annotations: Mapping[str, str] | None = None,
             layer_annotations: Mapping[str, str] | None = None) -> Artifact:
    """An OCI 1.1 artifact manifest: ``artifactType``, the empty config, one layer of ``content`` typed
    ``media_type``, ``subject`` = the image's manifest descriptor, and ``annotations``. A ref.name
    annotation is refused: an artifact is found through its subject, and a name would make it a root."""
    annotations = dict(annotations or {})
    if REF_NAME in annotations:
        raise ValueError(f"an artifact manifest does not carry {REF_NAME}")
    layer = Descriptor(media_type, Digest.of(content), len(content),
                       annotations=frozen_str_map(layer_annotations or {}))
    manifest = Manifest(config=EMPTY_DESCRIPTOR, layers=(layer,), media_type=mt.OCI_MANIFEST,
                        annotations=frozen_str_map(annotations), artifact_type=artifact_type,
                        subject=subject_of(subject))
    return Artifact(manifest, content)


def referrer_descriptor(desc: Descriptor, document: Manifest | Index) -> Descriptor:
    """The entry for a referrer in a referrers list (distribution-spec "Listing Referrers"): its
    ``artifactType``, else (for a manifest) its config's media type; and all its annotations."""
    artifact_type = document.artifact_type
    if artifact_type is None and isinstance(document, Manifest):
        artifact_type = document.config.media_type
    return Descriptor(desc.media_type, desc.digest, desc.size, annotations=document.annotations,
                      artifact_type=artifact_type)


def referrers_tag(digest: Digest) -> str:
    """The referrers tag schema's tag for a subject: ``<alg>-<hex>``, each part truncated (32, 64)."""
    return f"{digest.algorithm[:32]}-{digest.hex[:64]}"


def is_referrers_tag(tag: str) -> bool:
    alg, sep, encoded = tag.partition("-")
    return bool(sep) and alg in ("sha256", "sha512") and len(encoded) == 64 and \
        all(c in "0123456789abcdef" for c in encoded)


def referrers_index(entries: Iterable[Descriptor]) -> Index:
    """The referrers list as an image index: one entry per digest, sorted by digest, so that the same
    set of referrers always serialises to the same bytes whoever wrote it and in what order."""
    unique = {d.digest: d for d in entries}
    return Index(manifests=tuple(unique[k] for k in sorted(unique)), media_type=mt.OCI_INDEX)


def filtered(entries: Iterable[Descriptor], artifact_type: str | None) -> list[Descriptor]:
    return [d for d in entries if artifact_type is None or d.artifact_type == artifact_type]
