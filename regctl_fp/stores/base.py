"""The Store protocol every backend implements, and the image-level operations built on it.

A store holds blobs (content-addressed, verified on every read), manifests, and names that point at
manifests. Names use regfp's form ``repository:tag`` (``build/hello:<sha>``); a layout keeps them in
``org.opencontainers.image.ref.name``, a registry maps them under a prefix.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from ..errors import DocumentTooLarge, InvalidDocument, NotFound
from ..oci import mediatypes as mt
from ..oci.annotation_keys import CONTAINS_SECRET
from ..oci.descriptor import Descriptor, Platform
from ..oci.digest import Digest
from ..oci.frozen import frozen_str_map
from ..oci.image import Image, Layer
from ..oci.manifest import Index, Manifest
from ..oci.streams import ByteReader, ByteStream, Opener

if TYPE_CHECKING:  # the layer writer is heavy to import and only its protocol is named here
    from ..layers import BlobSink

# What regfp reads whole. It never writes more than it would read back: see check_size.
MANIFEST_LIMIT = 4 << 20  # bytes; the distribution registry's own limit for manifests
CONFIG_LIMIT = 8 << 20


def carries_secret(annotations: Mapping[str, str]) -> bool:
    return annotations.get(CONTAINS_SECRET) == "true"


class ReadStore(Protocol):
    """What reading images needs: every store has it; some (a skopeo ``dir:``) have nothing more."""

    @property
    def location(self) -> str: ...

    def has_blob(self, digest: Digest) -> bool: ...

    def open_blob(self, desc: Descriptor) -> ByteStream:
        """A stream of the blob that raises if its size or digest is wrong."""
        ...

    def read_blob(self, desc: Descriptor, limit: int) -> bytes:
        """A whole small blob (config, manifest), verified."""
        ...

    def get_manifest(self, desc: Descriptor) -> bytes: ...

    def resolve(self, name: str) -> Descriptor: ...

    def names(self) -> Mapping[str, Descriptor]: ...


class Store(ReadStore, Protocol):
    """A store that is also written: blobs, manifests, then names."""

    def blob_sink(self, *, private: bool = False) -> BlobSink:
        """Where a blob being produced goes. ``private``: it holds a secret, so a store that keeps files
        makes it readable by its owner only."""
        ...

    def put_blob(self, stream: ByteReader, desc: Descriptor, *, private: bool = False) -> None:
        """Copy ``stream`` in as ``desc``; fails (and stores nothing) if the content does not match."""
        ...

    def put_manifest(self, data: bytes, media_type: str) -> Descriptor: ...

    def set_names(self, updates: Mapping[str, Descriptor | None]) -> None:
        """Move (or with ``None`` remove) names, only after everything they point to exists."""
        ...


def read_image(store: ReadStore, desc: Descriptor, platform: Platform | None = None) -> Image:
    """The image ``desc`` points at; an index is resolved to the manifest for ``platform``."""
    seen = 0
    while desc.media_type in mt.INDEX_TYPES:
        seen += 1
        if seen > 8:
            raise InvalidDocument("image index", "nested more than 8 levels deep")
        index = Index.parse(store.get_manifest(desc), desc.media_type)
        desc = index.select(platform)
    if desc.media_type not in mt.MANIFEST_TYPES:
        raise InvalidDocument("manifest", f"{desc.digest} has media type {desc.media_type}, not an image manifest")
    data = store.get_manifest(desc)
    manifest = Manifest.parse(data, desc.media_type)
    config = store.read_blob(manifest.config, CONFIG_LIMIT)
    container = manifest.config.media_type in mt.IMAGE_CONFIG_TYPES
    image = Image.from_manifest(manifest, config, (), data)
    diff_ids = image.config.diff_ids if container else ()
    if container and len(diff_ids) != len(manifest.layers):
        raise InvalidDocument("image config", f"{len(diff_ids)} diff_ids for {len(manifest.layers)} layers "
                                              f"in manifest {desc.digest}")
    layers = tuple(
        Layer(d, diff_ids[i] if container else None, _opener(store, d)) for i, d in enumerate(manifest.layers)
    )
    return Image.from_manifest(manifest, config, layers, data)


def _opener(store: ReadStore, desc: Descriptor) -> Opener:
    return lambda: store.open_blob(desc)


def check_size(what: str, data: bytes, limit: int) -> None:
    """Refuse to write a document larger than regfp reads back (a config grown by recipe labels on a big
    base, an index of thousands of entries): stored, it could never be used again."""
    if len(data) > limit:
        raise DocumentTooLarge(what, len(data), limit)


def write_image(store: Store, image: Image) -> Descriptor:
    """Blobs first (skipping what exists), then the config, then the manifest. Names are not touched.

    The blobs of an image marked as carrying a secret are written private (the manifest, which only
    lists digests, stays readable so the layout can be listed). A config or manifest too large to read
    back is refused before anything is written."""
    check_size(f"the image config ({image.config_media_type})", image.config_bytes, CONFIG_LIMIT)
    check_size("the image manifest", image.manifest_bytes, MANIFEST_LIMIT)
    private = carries_secret(image.annotations)
    for layer in image.layers:
        if not store.has_blob(layer.digest):
            with layer.open() as stream:
                store.put_blob(stream, layer.descriptor, private=private)
    cfg = image.config_descriptor
    if not store.has_blob(cfg.digest):
        store.put_blob(io.BytesIO(image.config_bytes), cfg, private=private)
    return store.put_manifest(image.manifest_bytes, image.media_type)


def write_index(store: Store, images: Mapping[Platform, Image], annotations: Mapping[str, str]) -> Descriptor:
    """An image index of one image per platform, in the order given, each entry carrying its platform:
    the images (blobs first) and then the index. Names are not touched."""
    entries = []
    for platform, image in images.items():
        desc = write_image(store, image)
        entries.append(Descriptor(desc.media_type, desc.digest, desc.size, platform=platform))
    index = Index(manifests=tuple(entries), annotations=frozen_str_map(annotations))
    data = index.to_bytes()
    check_size("the image index", data, MANIFEST_LIMIT)
    return store.put_manifest(data, index.media_type)


def read_index_images(store: ReadStore, desc: Descriptor) -> dict[Platform, Image]:
    """Every platform's image of the index ``desc`` (entries without a platform are skipped)."""
    index = Index.parse(store.get_manifest(desc), desc.media_type)
    return {d.platform: read_image(store, d) for d in index.manifests
            if d.platform is not None and d.media_type in mt.MANIFEST_TYPES}


def children(store: ReadStore, desc: Descriptor) -> Iterator[Descriptor]:
    """The descriptors ``desc`` owns: index entries, or a manifest's config and layers.

    A ``subject`` is not owned: an artifact that refers to an image does not keep it alive.
    """
    if desc.media_type in mt.INDEX_TYPES:
        yield from Index.parse(store.get_manifest(desc), desc.media_type).manifests
    elif desc.media_type in mt.MANIFEST_TYPES:
        manifest = Manifest.parse(store.get_manifest(desc), desc.media_type)
        yield manifest.config
        yield from manifest.layers


def closure(store: ReadStore, roots: list[Descriptor], *, missing_ok: bool = False) -> dict[Digest, Descriptor]:
    """Every blob reachable from ``roots`` (roots included), by digest.

    ``missing_ok`` skips missing blobs that own nothing (layers, configs: a foreign layout may leave
    out non-distributable layers). A missing manifest or index always raises: what it would reach is
    unknown, so a caller deciding what to keep (gc) must not guess.
    """
    found: dict[Digest, Descriptor] = {}
    todo = list(roots)
    while todo:
        desc = todo.pop()
        if desc.digest in found:
            continue
        if not store.has_blob(desc.digest):
            if missing_ok and desc.media_type not in mt.INDEX_TYPES | mt.MANIFEST_TYPES:
                continue
            raise NotFound(f"blob {desc.digest} ({desc.media_type})", store.location)
        found[desc.digest] = desc
        if desc.media_type in mt.INDEX_TYPES | mt.MANIFEST_TYPES:
            todo.extend(children(store, desc))
    return found


def manifest_annotations(store: ReadStore, desc: Descriptor) -> list[dict[str, str]]:
    """The annotations of every image manifest ``desc`` reaches (itself, or each platform of an index)."""
    found: list[dict[str, str]] = []
    todo = [desc]
    while todo:
        d = todo.pop()
        if d.media_type in mt.INDEX_TYPES:
            todo.extend(Index.parse(store.get_manifest(d), d.media_type).manifests)
        elif d.media_type in mt.MANIFEST_TYPES:
            found.append(dict(Manifest.parse(store.get_manifest(d), d.media_type).annotations))
    return found
