"""Copying content between stores, digests preserved: blobs first, then manifests bottom-up.

Names are the caller's business and move last, once ``copy_descriptor`` has returned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from .errors import VerificationError
from .oci import mediatypes as mt
from .oci.descriptor import Descriptor
from .oci.manifest import Index, Manifest
from .stores.base import Store

OnBytes = Callable[[int], None]


def copy_descriptor(src: Store, dst: Store, desc: Descriptor, on_bytes: OnBytes | None = None) -> Descriptor:
    """Copy what ``desc`` points at, recursively, keeping every byte (and so every digest)."""
    if desc.media_type in mt.INDEX_TYPES:
        data = src.get_manifest(desc)
        for child in Index.parse(data, desc.media_type).manifests:
            copy_descriptor(src, dst, child, on_bytes)
    elif desc.media_type in mt.MANIFEST_TYPES:
        data = src.get_manifest(desc)
        manifest = Manifest.parse(data, desc.media_type)
        for blob in (*manifest.layers, manifest.config):
            copy_blob(src, dst, blob, on_bytes)
    else:
        copy_blob(src, dst, desc, on_bytes)
        return desc
    written = dst.put_manifest(data, desc.media_type)
    if written.digest != desc.digest:  # a sha512-addressed source stored under sha256
        raise VerificationError(f"manifest {desc.digest} was stored as {written.digest}")
    return Descriptor(desc.media_type, desc.digest, desc.size, platform=desc.platform,
                      artifact_type=desc.artifact_type)


def copy_blob(src: Store, dst: Store, desc: Descriptor, on_bytes: OnBytes | None = None) -> None:
    if not dst.has_blob(desc.digest):
        with src.open_blob(desc) as stream:
            dst.put_blob(_Counting(stream, on_bytes) if on_bytes else stream, desc)
    elif on_bytes is not None:
        on_bytes(desc.size)


class _Counting:
    def __init__(self, stream: BinaryIO, on_bytes: OnBytes) -> None:
        self._stream = stream
        self._on_bytes = on_bytes

    def read(self, n: int = -1) -> bytes:
        chunk = self._stream.read(n)
        self._on_bytes(len(chunk))
        return chunk
