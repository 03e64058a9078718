"""Reading an image layer as a tar stream, with one answer for every way the stream can be broken.

A layer's blob can match its digest and still not be a whole tar archive: some writers cut the tar
short (an entry's data ends early) while the compressed stream around it ends cleanly, and the
diff_id in the config is then the hash of the cut tar, so digest checks alone never notice. Every
reader of layer tars (file lookups, matrix listings, diff, unpack) goes through here and turns a
broken tar or compression stream into ``CorruptLayer`` naming the layer, after reading the rest of the
blob so that a blob that does not match its digest is reported as that instead.
"""

from __future__ import annotations

import gzip
import sys
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, cast

from isal import isal_zlib

from .errors import CorruptLayer
from .oci.compression import decompressed
from .oci.image import Layer
from .oci.streams import ByteReader

CHUNK = 1 << 20
BLOCK = 512
# What a damaged tar or compression stream raises while it is read.
BROKEN: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile,
                                           cast("type[BaseException]", isal_zlib.error))


def is_broken(e: BaseException) -> bool:
    """Whether ``e`` is a damaged stream's error. zstandard's is looked up only if zstandard was loaded
    (it is whenever a zstd stream was read): a run with no zstd layer never pays its import."""
    zstd = sys.modules.get("zstandard")
    return isinstance(e, BROKEN) or (zstd is not None and isinstance(e, zstd.ZstdError))


def describe(e: BaseException) -> str:
    """Why a layer stream could not be read, in words (the library's own message in brackets)."""
    if isinstance(e, tarfile.ReadError) and "unexpected end of data" in str(e):
        return "its tar archive is cut short: an entry's data ends before its recorded size"
    if isinstance(e, EOFError):
        return f"its compressed stream ends early ({e})"
    if isinstance(e, tarfile.TarError):
        return f"it is not a readable tar archive ({e})"
    return f"it cannot be decompressed ({type(e).__name__}: {e})"


def _drain(raw: ByteReader) -> None:
    while raw.read(CHUNK):
        pass


@contextmanager
def broken_as_corrupt(layer: Layer, raw: ByteReader) -> Iterator[None]:
    """Inside the block, a broken tar or compression stream becomes ``CorruptLayer``. The rest of ``raw``
    (the stored blob, verifying itself) is read first: a digest mismatch is the better explanation."""
    try:
        yield
    except Exception as e:
        if not is_broken(e):
            raise
        _drain(raw)
        raise CorruptLayer(layer.digest.text, describe(e)) from None


def read_tar_stream(source: ByteReader) -> tarfile.TarFile:
    """``source`` read as a tar archive front to back (tarfile's stream mode); names that are not
    UTF-8 are kept as surrogate escapes."""
    # typeshed asks any fileobj of tarfile.open for write, seek and tell too; stream mode only reads.
    return tarfile.open(fileobj=cast("IO[bytes]", source), mode="r|", errors="surrogateescape")


@contextmanager
def open_tar(layer: Layer) -> Iterator[tarfile.TarFile]:
    """The layer's tar in stream mode; once the caller is done, the blob is read to its end so its digest
    is checked even when the caller stopped early."""
    with layer.open() as raw, broken_as_corrupt(layer, raw):
        stream = decompressed(raw, layer.compression or "none")
        with read_tar_stream(stream) as tar:
            yield tar
        _drain(raw)


class _Window:
    """The uncompressed stream, remembering how much was read and its last few blocks, so the block
    where tarfile stopped can be looked at afterwards (tarfile ends quietly on a truncated header or a
    garbage block after the first entry, and says nothing about whether an end marker was there)."""

    KEEP = 64 << 10  # more than tarfile reads at once (a 10 KiB record)

    def __init__(self, stream: ByteReader) -> None:
        self._stream = stream
        self.total = 0
        self.tail = bytearray()

    def read(self, n: int = -1) -> bytes:
        chunk = self._stream.read(n)
        self.total += len(chunk)
        self.tail += chunk
        if len(self.tail) > 2 * self.KEEP:
            del self.tail[: len(self.tail) - self.KEEP]
        return chunk

    def block_at(self, offset: int) -> bytes | None:
        start = self.total - len(self.tail)
        if offset < start:
            return None
        return bytes(self.tail[offset - start: offset - start + BLOCK])


def check_tar(layer: Layer) -> None:
    """Read the layer's tar to its end, every entry's data included (``verify --deep``): raise
    ``CorruptLayer`` if it is cut short, holds a header that does not parse, or lacks the zero block
    that ends a tar archive."""
    with layer.open() as raw, broken_as_corrupt(layer, raw):
        window = _Window(decompressed(raw, layer.compression or "none"))
        with read_tar_stream(window) as tar:
            for member in tar:
                if member.isreg():
                    data = tar.extractfile(member)
                    assert data is not None
                    while data.read(CHUNK):
                        pass
            end = tar.offset
        block = window.block_at(end)
        while window.read(CHUNK):  # padding after the end marker still belongs to the diff_id
            pass
        _drain(raw)
    if block is None or len(block) < BLOCK:
        raise CorruptLayer(layer.digest.text, f"its tar archive is cut short: it ends at byte {window.total} "
                                              "without the zero blocks that end a tar archive")
    if block.count(0) != BLOCK:
        raise CorruptLayer(layer.digest.text, f"its tar archive holds an unreadable header at byte {end}")
