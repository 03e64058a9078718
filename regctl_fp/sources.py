"""Turning references into images: ``oci:`` layouts are read, ``dir:`` trees are built into a store.

Everything that varies by machine or moment (the epoch for timestamps, the platform of a ``dir:``
image) is an explicit argument; the CLI decides it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

from .dircache import DirCache
from .errors import LayerInputError, NotFound, RefError, RegfpError
from .oci.annotation_keys import SUBJECT
from .oci.config import History, ImageConfig
from .oci.descriptor import Descriptor, Platform
from .oci.image import Image, Layer
from .oci.mediatypes import Compression
from .progress import SILENT, Progress
from .refs import DirRef, LayoutRef, Ref, RegistryRef
from .stores.base import Store, read_image, write_image
from .stores.layout import LayoutStore
from .stores.null import NullStore
from .stores.remote_cache import RemoteCache, dir_tag
from .timeutil import rfc3339
from .values import valueclass

if TYPE_CHECKING:
    from .filedigests import FileDigests
    from .layers import Entry

LINUX_AMD64 = Platform("linux", "amd64")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@valueclass
class BuildOptions:
    """How a ``dir:`` reference becomes an image."""

    epoch: int = 0
    platform: Platform = LINUX_AMD64
    compression: Compression = "gzip"
    cache: DirCache | None = field(default=None, compare=False)  # skip re-tarring unchanged trees
    remote: RemoteCache | None = field(default=None, compare=False)  # a registry stage cache, shared by CI
    # Opens registry references (the CLI supplies one with its flags and credentials).
    registry: Callable[[RegistryRef], tuple[Store, Descriptor]] | None = field(default=None, compare=False)
    # The digest cache of the files under a directory (work items), dated by the CLI's clock.
    file_digests: Callable[[str], FileDigests] | None = field(default=None, compare=False)


def open_layout_ref(ref: LayoutRef) -> tuple[LayoutStore, Descriptor]:
    """The layout and the descriptor a layout reference names (a manifest or an index)."""
    store = LayoutStore.open(ref.path)
    if ref.digest is not None:
        return store, store.resolve_digest(ref.digest)
    if ref.name is not None:
        return store, store.resolve(ref.name)
    # Referrers (SBOMs, signatures: unnamed entries with a subject) are not the layout's images.
    entries = [d for d in store.read_index().manifests if SUBJECT not in d.annotations]
    if len(entries) != 1:
        names = sorted(d.ref_name for d in entries if d.ref_name)
        hint = f"; names: {', '.join(names[:10])}" if names else ""
        raise RefError(str(ref), f"the layout holds {len(entries)} images; add :NAME or @DIGEST{hint}")
    return store, entries[0]


def load_image(ref: Ref, *, work: Store | None, platform: Platform | None = None,
               options: BuildOptions = BuildOptions(), progress: Progress = SILENT,
               registry: Callable[[RegistryRef], tuple[Store, Descriptor]] | None = None) -> Image:
    """The image ``ref`` names. ``work`` receives the blobs of images that must be computed (``dir:``);
    ``registry`` opens a registry reference (the CLI supplies one with its flags and credentials)."""
    if isinstance(ref, LayoutRef):
        store, desc = open_layout_ref(ref)
        return read_image(store, desc, platform)
    if isinstance(ref, DirRef):
        from .stores.skopeodir import open_skopeo_dir

        held = open_skopeo_dir(Path(ref.path))  # a directory skopeo's dir: transport wrote holds an image
        if held is not None:
            return read_image(held[0], held[1], platform or options.platform)
        if work is None:
            raise RefError(str(ref), "a dir: image needs somewhere to write its layer")
        return image_from_directory(Path(ref.path), work, options, progress)
    if isinstance(ref, RegistryRef):
        registry = registry or options.registry
        if registry is None:
            raise RefError(str(ref), "a registry reference cannot be used here (no registry access given)")
        remote, desc = registry(ref)
        return read_image(remote, desc, platform)
    raise RefError(str(ref), "unknown reference kind")


def image_from_directory(path: Path, work: Store, options: BuildOptions,
                         progress: Progress = SILENT) -> Image:
    """A single-layer image of ``path``'s tree; the same tree gives the same digest anywhere."""
    if not path.exists():
        raise NotFound(f"directory {path}", "the filesystem")
    if not path.is_dir():
        raise LayerInputError(str(path), "dir: needs a directory")
    key = ""
    print_ = None
    if options.cache is not None:
        p = options.platform
        key = f"{path.resolve()}|{options.epoch}|{p}|{options.compression}|v1"
        with progress.scanning(f"checking {path} for changes") as on_found:
            print_ = options.cache.fingerprint(path, on_found)
        record = options.cache.get(key, print_)
        if record is not None:
            cached = _from_record(record, work)
            if cached is not None:
                return cached
    from .layers import collect_tree, total_size, write_layer  # only to tar a tree: a cache hit needs none
    with progress.scanning(f"scanning {path}") as on_found:
        entries = collect_tree(path, on_found=on_found)
    identity = None
    if options.remote is not None:
        on_bytes = progress.task(f"hashing {path} for the stage cache", total_size(entries))
        identity = _tree_identity(entries, options, on_bytes)
        found = options.remote.lookup(dir_tag(identity), options.remote.vouched("dir", identity))
        if found is not None:  # another machine made this image already: no compression here
            return read_image(options.remote.store, found, options.platform)
    on_bytes = progress.task(f"layer of {path}", total_size(entries))
    written = write_layer(entries, work.blob_sink(), mtime=options.epoch, compression=options.compression,
                          on_bytes=on_bytes)
    created = rfc3339(options.epoch)
    p = options.platform
    config = (ImageConfig.new(os=p.os, architecture=p.architecture, variant=p.variant, created=created)
              .with_container(Env=[DEFAULT_PATH])
              .with_appended_layer(written.diff_id, History(created=created, created_by="regfp: dir")))
    desc = written.descriptor
    layer = Layer(desc, written.diff_id, lambda: work.open_blob(desc))
    image = Image(config=config, layers=(layer,))
    if options.cache is not None and print_ is not None and print_ == options.cache.fingerprint(path):
        # Unchanged while it was read; a racy fingerprint (a change just before the scan) is not stored.
        options.cache.put(key, print_, {"layer": desc.to_dict(), "diffID": written.diff_id.text,
                                        "config": config.to_bytes().decode()})
    if identity is not None and options.remote is not None and not isinstance(work, NullStore):
        entry = write_image(work, image)  # not ``desc``: the layer's lambda above reads that name
        options.remote.publish(dir_tag(identity), work, entry,
                               options.remote.signed(entry, "dir", identity, dir_tag(identity)))
    return image


def _tree_identity(entries: list[Entry], options: BuildOptions, on_bytes: Callable[[int], None]) -> str:
    """What a tree's image is, from its uncompressed tar (one hashing pass, no compression)."""
    from .layers import write_layer
    from .oci.canonical import canonical_json
    from .stores.null import DigestSink

    tar = write_layer(entries, DigestSink(), mtime=options.epoch, compression="none", on_bytes=on_bytes)
    doc = {"diffID": tar.diff_id.text, "epoch": options.epoch, "platform": str(options.platform),
           "compression": options.compression, "v": 1}
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def _from_record(record: dict[str, object], work: Store) -> Image | None:
    """The cached image, if the store has its layer (a digest-only store needs no blob)."""
    import json

    from .oci.digest import Digest

    try:
        desc = Descriptor.from_dict(record["layer"])
        diff_id = Digest.parse(str(record["diffID"]))
        config = ImageConfig.from_dict(json.loads(str(record["config"])))
    except (KeyError, ValueError, RegfpError):
        return None
    if not isinstance(work, NullStore) and not work.has_blob(desc.digest):
        return None
    return Image(config=config, layers=(Layer(desc, diff_id, lambda: work.open_blob(desc)),))
