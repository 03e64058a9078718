"""Copying content between stores, digests preserved: blobs first (several at a time if asked), then
manifests bottom-up.

Names are the caller's business and move last, once ``copy_descriptor`` has returned. The blobs of
an image marked as carrying a secret are stored private (in a layout: readable by its owner only).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Set
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from ..errors import VerificationError
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.manifest import Index, Manifest
from ..oci.streams import ByteReader
from ..progress import Progress
from .base import ReadStore, Store, carries_secret

OnBytes = Callable[[int], None]


def copy_descriptor(src: ReadStore, dst: Store, desc: Descriptor, on_bytes: OnBytes | None = None, *,
                    jobs: int = 1, progress: Progress | None = None) -> Descriptor:
    """Copy what ``desc`` points at, recursively, keeping every byte (and so every digest).

    Every blob is stored before the first manifest, and a manifest only after its children, so a
    failure part-way leaves nothing that points at missing content. ``jobs`` blobs move at a time;
    ``progress`` (if given) gets one task per blob.
    """
    if desc.media_type not in mt.INDEX_TYPES | mt.MANIFEST_TYPES:
        copy_blobs(src, dst, [desc], on_bytes, jobs=1, progress=progress)
        return desc
    manifests: list[tuple[Descriptor, bytes]] = []
    blobs: dict[Digest, Descriptor] = {}
    private: set[Digest] = set()
    _walk(src, desc, manifests, blobs, set(), private)
    copy_blobs(src, dst, list(blobs.values()), on_bytes, jobs=jobs, progress=progress, private=private)
    for child, data in manifests:
        written = dst.put_manifest(data, child.media_type)
        if written.digest != child.digest:  # a sha512-addressed source stored under sha256
            raise VerificationError(f"manifest {child.digest} was stored as {written.digest}")
    return Descriptor(desc.media_type, desc.digest, desc.size, platform=desc.platform,
                      artifact_type=desc.artifact_type)


def _walk(src: ReadStore, desc: Descriptor, manifests: list[tuple[Descriptor, bytes]],
          blobs: dict[Digest, Descriptor], seen: set[Digest], private: set[Digest]) -> None:
    """Manifests in post-order (children first), the blobs they reference, and which of those blobs
    belong to an image carrying a secret."""
    if desc.digest in seen:
        return
    seen.add(desc.digest)
    data = src.get_manifest(desc)
    if desc.media_type in mt.INDEX_TYPES:
        for child in Index.parse(data, desc.media_type).manifests:
            if child.media_type in mt.INDEX_TYPES | mt.MANIFEST_TYPES:
                _walk(src, child, manifests, blobs, seen, private)
            else:
                blobs.setdefault(child.digest, child)
    else:
        manifest = Manifest.parse(data, desc.media_type)
        for blob in (*manifest.layers, manifest.config):
            blobs.setdefault(blob.digest, blob)
        if carries_secret(manifest.annotations):
            private.update(blob.digest for blob in (*manifest.layers, manifest.config))
    manifests.append((desc, data))


def copy_blobs(src: ReadStore, dst: Store, descs: list[Descriptor], on_bytes: OnBytes | None = None, *,
               jobs: int = 1, progress: Progress | None = None, private: Set[Digest] = frozenset()) -> None:
    """Copy blobs, up to ``jobs`` at a time (largest first); the first failure stops the rest.
    Those in ``private`` are stored private.

    An interrupt (Ctrl-C, SIGTERM) of the calling thread stops the copies in flight at their next read
    (each removes its temp file) and cancels those not started, instead of finishing them all first.
    """
    stop = threading.Event()

    def one(d: Descriptor) -> None:
        counter = on_bytes
        if progress is not None:
            task = progress.task(f"{d.digest.short} {_kind(d.media_type)}", d.size)
            counter = task if on_bytes is None else _both(task, on_bytes)
        copy_blob(src, dst, d, _stoppable(counter, stop) if jobs > 1 else counter, private=d.digest in private)

    ordered = sorted(descs, key=lambda d: -d.size)
    if jobs <= 1 or len(ordered) <= 1:
        for d in ordered:
            one(d)
        return
    with ThreadPoolExecutor(max_workers=min(jobs, len(ordered)), thread_name_prefix="regfp-blob") as pool:
        futures = [pool.submit(one, d) for d in ordered]
        try:
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:
            stop.set()
            for f in futures:
                f.cancel()
            raise
        for f in pending:
            f.cancel()
        for f in futures:
            if f.done() and not f.cancelled() and (error := f.exception()) is not None:
                raise error
        for f in done:
            f.result()


def copy_blob(src: ReadStore, dst: Store, desc: Descriptor, on_bytes: OnBytes | None = None, *,
              private: bool = False) -> None:
    put_from = getattr(dst, "put_blob_from", None)
    if put_from is not None:
        # The destination can re-open the source to retry an upload that broke off mid-blob.
        if not put_from(lambda: src.open_blob(desc), desc, on_bytes) and on_bytes is not None:
            on_bytes(desc.size)
        return
    if not dst.has_blob(desc.digest):
        with src.open_blob(desc) as stream:
            dst.put_blob(_Counting(stream, on_bytes) if on_bytes else stream, desc, private=private)
    elif on_bytes is not None:
        on_bytes(desc.size)


def _kind(media_type: str) -> str:
    if media_type in mt.IMAGE_CONFIG_TYPES:
        return "config"
    return "layer" if mt.is_layer(media_type) else "blob"


class _Stopped(Exception):
    """A copy on a worker thread given up because the command was interrupted."""


def _stoppable(on_bytes: OnBytes | None, stop: threading.Event) -> OnBytes:
    def call(n: int) -> None:
        if stop.is_set():
            raise _Stopped()
        if on_bytes is not None:
            on_bytes(n)
    return call


def _both(a: OnBytes, b: OnBytes) -> OnBytes:
    def call(n: int) -> None:
        a(n)
        b(n)
    return call


class _Counting:
    def __init__(self, stream: ByteReader, on_bytes: OnBytes) -> None:
        self._stream = stream
        self._on_bytes = on_bytes

    @property
    def verifies(self) -> object:
        return getattr(self._stream, "verifies", None)

    @property
    def local_file(self) -> object:
        return getattr(self._stream, "local_file", None)

    def read(self, n: int = -1) -> bytes:
        chunk = self._stream.read(n)
        self._on_bytes(len(chunk))
        return chunk
