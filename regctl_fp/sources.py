"""Turning references into images: ``oci:`` layouts are read, ``dir:`` trees are built into a store.

Everything that varies by machine or moment (the epoch for timestamps, the platform of a ``dir:``
image) is an explicit argument; the CLI decides it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import LayerInputError, NotFound, RefError
from .layers import collect_tree, total_size, write_layer
from .oci.config import History, ImageConfig
from .oci.descriptor import Descriptor, Platform
from .oci.image import Image, Layer
from .progress import SILENT, Progress
from .refs import DirRef, LayoutRef, Ref, RegistryRef
from .stores.base import Store, read_image
from .stores.layout import LayoutStore
from .timeutil import rfc3339

LINUX_AMD64 = Platform("linux", "amd64")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class BuildOptions:
    """How a ``dir:`` reference becomes an image."""

    epoch: int = 0
    platform: Platform = LINUX_AMD64
    compression: str = "gzip"


def open_layout_ref(ref: LayoutRef) -> tuple[LayoutStore, Descriptor]:
    """The layout and the descriptor a layout reference names (a manifest or an index)."""
    store = LayoutStore.open(ref.path)
    if ref.digest is not None:
        return store, store.resolve_digest(ref.digest)
    if ref.name is not None:
        return store, store.resolve(ref.name)
    entries = store.read_index().manifests
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
        if work is None:
            raise RefError(str(ref), "a dir: image needs somewhere to write its layer")
        return image_from_directory(Path(ref.path), work, options, progress)
    if isinstance(ref, RegistryRef):
        if registry is None:
            raise RefError(str(ref), "a registry reference cannot be used here (no registry access given)")
        store, desc = registry(ref)
        return read_image(store, desc, platform)
    raise RefError(str(ref), "unknown reference kind")


def image_from_directory(path: Path, work: Store, options: BuildOptions,
                         progress: Progress = SILENT) -> Image:
    """A single-layer image of ``path``'s tree; the same tree gives the same digest anywhere."""
    if not path.exists():
        raise NotFound(f"directory {path}", "the filesystem")
    if not path.is_dir():
        raise LayerInputError(str(path), "dir: needs a directory")
    entries = collect_tree(path)
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
    return Image(config=config, layers=(layer,))
