"""A store that keeps nothing: blobs are hashed and dropped. For computing digests without writing
(``regfp plan``) and for benchmarks; reading from it is an error."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from ..errors import NotFound
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.streams import ByteReader, ByteStream


class DigestSink:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)
        self._size += len(data)

    def commit(self, media_type: str) -> Descriptor:
        return Descriptor(media_type, Digest("sha256", self._hash.hexdigest()), self._size)

    def abort(self) -> None:
        pass


class NullStore:
    location = "nowhere (digest-only)"

    def has_blob(self, digest: Digest) -> bool:
        return False

    def open_blob(self, desc: Descriptor) -> ByteStream:
        raise NotFound(f"blob {desc.digest}", self.location)

    def read_blob(self, desc: Descriptor, limit: int) -> bytes:
        raise NotFound(f"blob {desc.digest}", self.location)

    def blob_sink(self, *, private: bool = False) -> DigestSink:
        return DigestSink()

    def put_blob(self, stream: ByteReader, desc: Descriptor, *, private: bool = False) -> None:
        while stream.read(1 << 20):
            pass

    def get_manifest(self, desc: Descriptor) -> bytes:
        raise NotFound(f"manifest {desc.digest}", self.location)

    def put_manifest(self, data: bytes, media_type: str) -> Descriptor:
        return Descriptor(media_type, Digest.of(data), len(data))

    def resolve(self, name: str) -> Descriptor:
        raise NotFound(f"name {name!r}", self.location)

    def names(self) -> dict[str, Descriptor]:
        return {}

    def set_names(self, updates: Mapping[str, Descriptor | None]) -> None:
        pass
