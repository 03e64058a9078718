"""Data artifacts: files and directories (or a Git tree at a commit) stored as an OCI artifact.

The artifact follows the OCI 1.1 guidance that oras and other artifact clients read: an empty config
(``application/vnd.oci.empty.v1+json``, content ``{}``), an ``artifactType``, one layer per path with
``org.opencontainers.image.title``. A file is its layer as it is (never compressed, never read
whole); a directory is a deterministic tar layer whose entries sit under the title, marked with
``io.deis.oras.content.unpack`` as oras marks them. A Git tree becomes one tar layer without a title:
it unpacks at the root of the destination. Nothing here reads the clock: tar times are an input.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import BinaryIO

from ..errors import LayerInputError
from ..gitsource import BlobReader, Commit, GitError, Repository, TreeEntry, walk_dirs
from ..layers import Entry, collect_tree, dir_entry, total_size, write_layer
from ..oci import annotation_keys as A
from ..oci import mediatypes as mt
from ..oci.config import ImageConfig
from ..oci.descriptor import Descriptor, check_media_type
from ..oci.digest import Digest
from ..oci.errors import InvalidDocument, InvalidInput
from ..oci.frozen import EMPTY, frozen_str_map
from ..oci.image import Image, Layer
from ..oci.streams import ByteStream, Opener
from ..oci.verify import VerifyingReader
from ..progress import SILENT, Progress
from ..stores.base import Store
from ..timeutil import rfc3339
from ..values import valueclass

DATA_ARTIFACT_TYPE = "application/vnd.regfp.data.v1"
SOURCE_ARTIFACT_TYPE = "application/vnd.regfp.source.v1"
FILE_MEDIA_TYPE = "application/octet-stream"
TITLE = A.TITLE
UNPACK = A.ORAS_UNPACK  # oras's mark for a tar layer that is a directory
CONTENT_DIGEST = A.ORAS_CONTENT_DIGEST  # oras: sha256 of the uncompressed tar
REVISION = "org.opencontainers.image.revision"
CREATED = "org.opencontainers.image.created"
SOURCE = "org.opencontainers.image.source"
SUBDIR = "dev.regfp.source.subdir"
CHUNK = 1 << 20


@valueclass
class DataOptions:
    """How paths become an artifact. ``epoch`` is the mtime of every entry in directory layers."""

    artifact_type: str = DATA_ARTIFACT_TYPE
    annotations: Mapping[str, str] = field(default_factory=dict)
    compression: mt.Compression = "gzip"
    file_media_type: str = FILE_MEDIA_TYPE
    epoch: int = 0

    def checked(self) -> DataOptions:
        try:
            check_media_type(self.artifact_type, "--artifact-type")
            check_media_type(self.file_media_type, "--media-type")
        except InvalidDocument as e:
            raise InvalidInput(f"{e.what}: {e.reason}") from None
        if self.compression not in mt.OCI_LAYER_FOR:
            raise InvalidInput(f"unknown compression {self.compression!r} (gzip, zstd, none)")
        for key in self.annotations:
            if not key:
                raise InvalidInput("an annotation needs a key (KEY=VALUE)")
        return self


@valueclass
class DataInput:
    """One path to store and the title it gets."""

    path: Path
    title: str
    is_dir: bool


def plan_inputs(paths: Sequence[str | Path]) -> list[DataInput]:
    """Check every path before anything is written: it exists, is a file or a directory, and titles
    (the base names) are unique. A path given on the command line is followed if it is a symlink."""
    if not paths:
        raise InvalidInput("nothing to push: give at least one file or directory")
    out: list[DataInput] = []
    seen: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise LayerInputError(str(path), "no such file or directory") from None
        except OSError as e:
            raise LayerInputError(str(path), f"cannot read: {e.strerror}") from None
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise LayerInputError(str(path), "is neither a regular file nor a directory")
        title = os.path.basename(os.path.normpath(os.path.abspath(path)))
        if not title or title in (".", ".."):
            raise LayerInputError(str(path), "has no name to use as its title")
        if title in seen:
            raise LayerInputError(str(path), f"has the same name as {seen[title]}; titles must be unique")
        seen[title] = path
        out.append(DataInput(path, title, stat.S_ISDIR(st.st_mode)))
    return out


def data_artifact(inputs: Sequence[DataInput], store: Store, options: DataOptions = DataOptions(),
                  progress: Progress = SILENT) -> Image:
    """The artifact for ``inputs``; its blobs are stored in ``store`` (no names move here)."""
    opts = options.checked()
    layers = []
    for item in inputs:
        if item.is_dir:
            layers.append(_dir_layer(item, store, opts, progress))
        else:
            layers.append(store_file(item.path, store, opts.file_media_type, {TITLE: item.title}, progress))
    return artifact_image(tuple(layers), opts.artifact_type, opts.annotations)


def artifact_image(layers: tuple[Layer, ...], artifact_type: str, annotations: Mapping[str, str]) -> Image:
    return Image(config=ImageConfig(EMPTY), layers=layers, annotations=frozen_str_map(dict(annotations)),
                 config_media_type=mt.OCI_EMPTY, artifact_type=artifact_type, raw_config=mt.EMPTY_JSON)


# -- files: stored as they are -------------------------------------------------------------------------
def hash_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> tuple[Digest, int]:
    import hashlib

    h = hashlib.sha256()
    size = 0
    with _open_regular(path) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return Digest("sha256", h.hexdigest()), size


def store_file(path: Path, store: Store, media_type: str, annotations: Mapping[str, str],
               progress: Progress = SILENT) -> Layer:
    """``path`` as a blob of ``store``: hashed in one pass, then streamed from the file again.

    The second read is checked against the first, so a file that changes in between fails the push
    instead of storing something else under its name. Memory stays constant whatever the size.
    """
    digest, size = hash_file(path, progress.task(f"hash {path.name}", os.stat(path).st_size))
    plain = Descriptor(media_type, digest, size)

    def opener() -> ByteStream:
        return VerifyingReader(_open_regular(path), digest, size, f"{path} (changed while it was pushed)")

    on_bytes = progress.task(f"push {path.name}", size)
    put_from = getattr(store, "put_blob_from", None)
    if put_from is not None:  # a registry: a monolithic PUT straight from the file, re-opened to retry
        put_from(opener, plain, on_bytes)
    elif not store.has_blob(digest):
        with opener() as stream:
            store.put_blob(stream, plain)
    desc = Descriptor(media_type, digest, size, annotations=frozen_str_map(dict(annotations)))
    return Layer(desc, None, lambda: store.open_blob(desc))


def _open_regular(path: Path) -> BinaryIO:
    # O_NONBLOCK: a path that turned into a FIFO must not hang the push; it is refused below.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise LayerInputError(str(path), "is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# -- directories: one deterministic tar layer under the title -------------------------------------------
def _dir_layer(item: DataInput, store: Store, opts: DataOptions, progress: Progress) -> Layer:
    mode = stat.S_IMODE(os.stat(item.path).st_mode) & ~(stat.S_ISUID | stat.S_ISGID)
    with progress.scanning(f"scanning {item.path}") as on_found:
        entries = [dir_entry(item.title, mode), *collect_tree(item.path, prefix=item.title, on_found=on_found)]
    written = write_layer(entries, store.blob_sink(), mtime=opts.epoch, compression=opts.compression,
                          on_bytes=progress.task(f"layer of {item.path}", total_size(entries)))
    desc = written.descriptor.with_annotations({TITLE: item.title, UNPACK: "true",
                                                CONTENT_DIGEST: written.diff_id.text})
    return Layer(desc, written.diff_id, lambda: store.open_blob(desc))


# -- a Git tree at a commit ----------------------------------------------------------------------------
@valueclass
class SourceSpec:
    repo: Repository
    commit: Commit
    subdir: str = ""
    url: str | None = None
    artifact_type: str = SOURCE_ARTIFACT_TYPE
    compression: mt.Compression = "gzip"
    annotations: Mapping[str, str] = field(default_factory=dict)


def source_artifact(spec: SourceSpec, store: Store, progress: Progress = SILENT) -> Image:
    """The tree of ``spec.commit`` (below ``subdir``) read from the commit object, never a working tree,
    as one tar layer: entries sorted, uid/gid 0, modes 0644/0755 as Git records them, every mtime the
    commit time. The same commit gives the same digest from any clone."""
    DataOptions(artifact_type=spec.artifact_type, compression=spec.compression,
                annotations=spec.annotations).checked()
    commit = spec.commit
    tree = spec.repo.tree(commit.sha, spec.subdir)
    with spec.repo.blobs() as reader:
        entries = _tree_entries(tree, reader, f"{spec.repo.shown} at {commit.sha[:12]}")
        written = write_layer(entries, store.blob_sink(), mtime=commit.time, compression=spec.compression,
                              on_bytes=progress.task(f"source {commit.sha[:12]}", total_size(entries)))
    desc = written.descriptor.with_annotations({UNPACK: "true", CONTENT_DIGEST: written.diff_id.text})
    layer = Layer(desc, written.diff_id, lambda: store.open_blob(desc))
    annotations = {REVISION: commit.sha, CREATED: rfc3339(commit.time)}
    if spec.url:
        annotations[SOURCE] = spec.url
    sub = spec.subdir.strip("/")
    if sub and sub != ".":
        annotations[SUBDIR] = sub
    return artifact_image((layer,), spec.artifact_type, {**annotations, **spec.annotations})


def _tree_entries(tree: list[TreeEntry], reader: BlobReader, where: str) -> list[Entry]:
    entries: list[Entry] = []
    for te in tree:
        origin = f"{where}: {te.path.decode('utf-8', 'replace')}"
        if te.is_submodule:
            raise GitError(f"{origin} is a submodule; source images do not include submodules")
        if te.is_symlink:
            entries.append(Entry(te.path, "symlink", 0o777, target=reader.read(te.oid), origin=origin))
        else:
            mode = 0o755 if te.mode & 0o111 else 0o644
            entries.append(Entry(te.path, "file", mode, size=te.size, opener=_blob_opener(reader, te.oid),
                                 origin=origin))
    entries.extend(dir_entry(d) for d in walk_dirs(iter(te.path for te in tree)))
    return entries


def _blob_opener(reader: BlobReader, oid: str) -> Opener:
    return lambda: reader.open(oid)
