"""Reading a directory written by the ``dir:`` transport of skopeo, buildah and podman (containers/image):
``manifest.json``, one file per blob named by the hex of its digest, ``<hex>.manifest.json`` for the
instances of an index, and a ``version`` file ``Directory Transport Version: 1.1``.

Such a directory holds an image, not a tree to put in one: ``dir:PATH`` reads it as that image, as
skopeo does, every blob verified against its digest and size while it streams. Read-only.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import BinaryIO

from ..errors import InvalidDocument, InvalidInput, NotFound
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.verify import VerifyingReader, read_verified
from .base import MANIFEST_LIMIT
from .localblob import LocalBlobReader

VERSION_FILE = "version"
VERSION_PREFIX = b"Directory Transport Version: "
SUPPORTED = ("1.1",)  # 1.1 names blobs by their digest's hex; what every containers/image of the last years writes
_VERSION_LIMIT = 256  # bytes; the file is one short line


def _open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (never through a symlink, never a FIFO)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInput(f"{path}: not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def transport_version(path: Path) -> str | None:
    """The ``dir:`` transport version when ``path`` holds ``manifest.json`` and a ``version`` file
    naming one (both regular files); None for any other directory (a tree to tar)."""
    try:
        if not stat.S_ISREG(os.lstat(path / "manifest.json").st_mode):
            return None
        with _open_regular(path / VERSION_FILE) as f:
            head = f.read(_VERSION_LIMIT)
    except (OSError, InvalidInput):
        return None
    if not head.startswith(VERSION_PREFIX):
        return None
    return head[len(VERSION_PREFIX):].decode("utf-8", "replace").strip()


def _media_type(data: bytes, shown: str) -> str:
    """The manifest's media type: its ``mediaType`` field, else what its fields say (OCI allows leaving
    the field out)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise InvalidDocument(f"manifest {shown}", f"not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise InvalidDocument(f"manifest {shown}", "top level must be a JSON object")
    if doc.get("schemaVersion") == 1:
        raise InvalidDocument(f"manifest {shown}", "Docker schema 1 manifests are not supported; convert the "
                                                   "image first (skopeo copy --format oci)")
    media_type = doc.get("mediaType")
    if isinstance(media_type, str):
        return media_type
    return mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST


class SkopeoDirStore:
    """The blobs and manifests of a ``dir:`` transport directory (a ``ReadStore``: it has no names and is
    never written)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._top: bytes | None = None  # manifest.json, once read

    @property
    def location(self) -> str:
        return f"the skopeo dir: directory {self.path}"

    def top(self) -> Descriptor:
        """``manifest.json``: the image (or index) the directory holds."""
        shown = str(self.path / "manifest.json")
        try:
            with _open_regular(self.path / "manifest.json") as f:
                data = f.read(MANIFEST_LIMIT + 1)
        except OSError as e:
            raise InvalidInput(f"{shown}: cannot read ({e.strerror or e})") from None
        if len(data) > MANIFEST_LIMIT:
            raise InvalidDocument(f"manifest {shown}", f"larger than {MANIFEST_LIMIT} bytes")
        self._top = data
        return Descriptor(_media_type(data, shown), Digest.of(data), len(data))

    def _blob_path(self, digest: Digest) -> Path:
        return self.path / digest.hex

    def has_blob(self, digest: Digest) -> bool:
        return self._blob_path(digest).is_file()

    def open_blob(self, desc: Descriptor) -> VerifyingReader:
        path = self._blob_path(desc.digest)
        try:
            raw = _open_regular(path)
        except FileNotFoundError:
            raise NotFound(f"blob {desc.digest}", self.location) from None
        except OSError as e:
            raise InvalidInput(f"{path}: cannot read ({e.strerror or e})") from None
        return LocalBlobReader(raw, path, desc.digest, desc.size, f"blob {desc.digest} in {self.path}")

    def read_blob(self, desc: Descriptor, limit: int) -> bytes:
        with self.open_blob(desc) as f:
            return read_verified(f, desc.digest, desc.size, f"blob {desc.digest} in {self.path}", limit)

    def get_manifest(self, desc: Descriptor) -> bytes:
        if self._top is not None and Digest.of(self._top, desc.digest.algorithm) == desc.digest:
            return self._top
        path = self.path / f"{desc.digest.hex}.manifest.json"  # an instance of an index (skopeo copy --all)
        try:
            raw = _open_regular(path)
        except FileNotFoundError:
            raise NotFound(f"manifest {desc.digest}", self.location) from None
        with raw:
            return read_verified(raw, desc.digest, desc.size, f"manifest {desc.digest} in {self.path}",
                                 MANIFEST_LIMIT)

    def resolve(self, name: str) -> Descriptor:
        raise NotFound(f"name {name!r}", self.location)

    def names(self) -> dict[str, Descriptor]:
        return {}


def open_skopeo_dir(path: Path) -> tuple[SkopeoDirStore, Descriptor] | None:
    """The store and top descriptor of a ``dir:`` transport directory; None if ``path`` is not one. A
    version regfp does not know is refused rather than guessed at."""
    version = transport_version(path)
    if version is None:
        return None
    if version not in SUPPORTED:
        raise InvalidInput(f"{path}: a skopeo dir: directory of transport version {version!r}; regfp reads "
                           f"version {', '.join(SUPPORTED)}: convert it (skopeo copy dir:{path} oci:LAYOUT:NAME)")
    store = SkopeoDirStore(path)
    return store, store.top()
