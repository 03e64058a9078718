"""Layer compression as pure stream transforms: deterministic compressors and streaming decompressors.

Both compressors give bytes that depend only on the input, never on how it was split into writes, on
thread counts, or on the machine's core count. One limit, measured: ISA-L picks its deflate code by the
CPU's features, and an x86-64 CPU without SSE4.2 (before Nehalem, 2008) gets other, equally valid, gzip
bytes: ``qemu-x86_64 -cpu Penryn`` gives another digest for the same input, while ``-cpu Nehalem``,
``-cpu Haswell`` and this project's AVX-512 machines agree. arm64 hosts were not compared.

- gzip is ISA-L's deflate (``isal``) inside a gzip member whose header regfp writes itself (mtime 0,
  no name, OS "unknown"). The stream is cut into ``BLOCK``-sized blocks at fixed offsets; each block is
  deflated on its own with the previous 32 KiB as its dictionary and ends on a byte boundary (a sync
  flush), as pigz does, so blocks can be compressed on several cores and simply concatenated.
- zstd always runs in multi-threaded mode with a fixed job size and no declared content size: its
  output is then the same for any thread count >= 1.

``compressor`` is the plain streaming form (``compress``/``flush``); ``block_compressor`` is the form
the layer writer drives from several threads. The same input gives the same bytes through either.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

from isal import igzip, isal_zlib

if TYPE_CHECKING:  # zstandard costs ~25 ms of start-up: imported when a zstd stream is made or read
    import zstandard

from .errors import InvalidInput
from .mediatypes import COMPRESSIONS, Compression
from .streams import ByteStream

if TYPE_CHECKING:
    import gzip
    from typing import IO

BLOCK = 1 << 20  # gzip: the unit compressed independently; the layer writer cuts its stream the same way
GZIP_BLOCK = BLOCK
GZIP_WINDOW = 1 << 15  # deflate's history: the dictionary each block gets from the one before
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # magic, deflate, no flags, mtime 0, xfl 0, OS 255
ZSTD_JOB = 2 << 20
# Threads never change the bytes (see above); more than the cores only adds switching.
WORKERS = max(1, min(4, os.cpu_count() or 1))
ZSTD_THREADS = WORKERS
DEFAULT_LEVEL: dict[Compression, int] = {"gzip": 1, "zstd": 3, "none": 0}

Buffer = bytes | bytearray | memoryview


class Compressor(Protocol):
    def compress(self, data: Buffer) -> bytes: ...
    def flush(self) -> bytes: ...


class BlockCompressor(Protocol):
    """A compressor driven block by block from several threads.

    The caller cuts the stream into ``BLOCK``-sized blocks (the last one shorter, possibly empty),
    calls ``job`` for each in stream order (it returns the work, to run on any thread when ``workers``
    > 1, or in order on one thread when it is 1, or at once when it is 0), calls ``track`` for each in
    stream order on one thread, writes ``header``, the jobs' outputs in order, then ``trailer()``. A
    block's buffer may be reused once its job and its ``track`` have returned, not before.
    """

    workers: int
    header: bytes

    def job(self, block: Buffer, final: bool) -> Callable[[], Buffer]: ...
    def track(self, block: Buffer) -> None: ...
    def trailer(self) -> bytes: ...


def _deflate_block(level: int, block: Buffer, window: Buffer, final: bool) -> bytes:
    """One block of the gzip stream: a pure function of its inputs, so any thread may run it."""
    if window:
        deflate = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15, zdict=window)
    else:
        deflate = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
    return deflate.compress(block) + deflate.flush(isal_zlib.Z_FINISH if final else isal_zlib.Z_SYNC_FLUSH)


def _window(block: Buffer) -> bytes:
    return bytes(block[-GZIP_WINDOW:])


class _Identity:
    workers = 0
    header = b""

    def compress(self, data: Buffer) -> bytes:
        return bytes(data)

    def flush(self) -> bytes:
        return b""

    def job(self, block: Buffer, final: bool) -> Callable[[], Buffer]:
        return lambda: block  # passed through untouched

    def track(self, block: Buffer) -> None:
        pass

    def trailer(self) -> bytes:
        return b""


class _Gzip:
    """The streaming form: gathers input into blocks at the same offsets as the block form."""

    def __init__(self, level: int) -> None:
        self._level = level
        self._crc = 0
        self._length = 0
        self._pending = bytearray()
        self._window = b""
        self._header_sent = False

    def _start(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return _GZIP_HEADER

    def compress(self, data: Buffer) -> bytes:
        self._crc = isal_zlib.crc32(data, self._crc)
        self._length += len(data)
        out = [self._start()]
        view = memoryview(data)
        start = 0
        if self._pending:
            start = min(len(view), BLOCK - len(self._pending))
            self._pending += view[:start]
            if len(self._pending) < BLOCK:
                return out[0]
            out.append(self._block(self._pending))
            self._pending = bytearray()
        while len(view) - start >= BLOCK:  # whole blocks straight from the caller's buffer, no copy
            out.append(self._block(view[start:start + BLOCK]))
            start += BLOCK
        self._pending += view[start:]
        return b"".join(out)

    def _block(self, block: Buffer) -> bytes:
        out = _deflate_block(self._level, block, self._window, final=False)
        self._window = _window(block)
        return out

    def flush(self) -> bytes:
        tail = _deflate_block(self._level, self._pending, self._window, final=True)
        self._pending = bytearray()
        return self._start() + tail + _gzip_trailer(self._crc, self._length)


def _gzip_trailer(crc: int, length: int) -> bytes:
    return struct.pack("<II", crc & 0xFFFFFFFF, length & 0xFFFFFFFF)


class _GzipBlocks:
    workers = WORKERS
    header = _GZIP_HEADER

    def __init__(self, level: int) -> None:
        self._level = level
        self._window = b""
        self._crc = 0
        self._length = 0

    def job(self, block: Buffer, final: bool) -> Callable[[], bytes]:
        # The next block's dictionary is copied now: the caller may reuse this buffer once the job ran.
        window, level = self._window, self._level
        self._window = _window(block)
        return lambda: _deflate_block(level, block, window, final)

    def track(self, block: Buffer) -> None:
        self._crc = isal_zlib.crc32(block, self._crc)
        self._length += len(block)

    def trailer(self) -> bytes:
        return _gzip_trailer(self._crc, self._length)


class _ZstdBlocks:
    workers = 1  # one frame fed in order; zstd's own threads do the parallel work
    header = b""

    def __init__(self, level: int) -> None:
        self._obj = _zstd(level)

    def job(self, block: Buffer, final: bool) -> Callable[[], bytes]:
        obj = self._obj
        if final:
            return lambda: obj.compress(block) + obj.flush()
        return lambda: obj.compress(block)

    def track(self, block: Buffer) -> None:
        pass

    def trailer(self) -> bytes:
        return b""


def _zstd(level: int) -> zstandard.ZstdCompressionObj:
    import zstandard

    # A fixed job size makes the frame layout (and so the bytes) independent of the thread count,
    # and bounds memory (the level's default job size costs ~90 MB).
    params = zstandard.ZstdCompressionParameters.from_level(level, threads=ZSTD_THREADS, job_size=ZSTD_JOB,
                                                            write_checksum=False)
    return zstandard.ZstdCompressor(compression_params=params).compressobj()


def compression_named(name: str) -> Compression:
    """``name`` (from a command line) as a compression regfp writes; ``InvalidInput`` for any other."""
    for known in COMPRESSIONS:
        if name == known:
            return known
    raise InvalidInput(f"unknown compression {name!r} (one of: {', '.join(COMPRESSIONS)})")


def _level(compression: Compression, level: int | None) -> int:
    if compression not in COMPRESSIONS:  # a caller outside typed code
        raise InvalidInput(f"unknown compression {compression!r} (one of: {', '.join(COMPRESSIONS)})")
    lvl = DEFAULT_LEVEL[compression] if level is None else level
    if compression == "gzip" and not 0 <= lvl <= 3:
        raise InvalidInput(f"gzip level {lvl} is out of range (0-3, ISA-L levels)")
    if compression == "zstd" and not 1 <= lvl <= 19:
        raise InvalidInput(f"zstd level {lvl} is out of range (1-19)")
    return lvl


def compressor(compression: Compression, level: int | None = None) -> Compressor:
    lvl = _level(compression, level)
    if compression == "gzip":
        return _Gzip(lvl)
    if compression == "zstd":
        return _zstd(lvl)
    return _Identity()


def block_compressor(compression: Compression, level: int | None = None) -> BlockCompressor:
    lvl = _level(compression, level)
    if compression == "gzip":
        return _GzipBlocks(lvl)
    if compression == "zstd":
        return _ZstdBlocks(lvl)
    return _Identity()


def decompressed(stream: ByteStream, compression: Compression) -> ByteStream:
    """A reader of the uncompressed bytes of ``stream`` (all gzip members / zstd frames)."""
    if compression == "none":
        return stream
    if compression == "gzip":
        return _gunzipped(stream)
    if compression == "zstd":
        import zstandard

        # zstandard's stubs ask for a whole file object; stream_reader only ever calls read() on it.
        source = cast("IO[bytes]", stream)
        return zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True, closefd=False)
    raise InvalidInput(f"unknown compression {compression!r}")


def _gunzipped(stream: ByteStream) -> gzip.GzipFile:
    # isal's igzip.py carries no annotations; IGzipFile is a gzip.GzipFile that inflates with ISA-L.
    reader: gzip.GzipFile = igzip.IGzipFile(fileobj=stream, mode="rb")  # type: ignore[no-untyped-call]  # isal's igzip is unannotated
    return reader
