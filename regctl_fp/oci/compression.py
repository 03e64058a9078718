"""Layer compression as pure stream transforms: deterministic compressors and streaming decompressors.

gzip is ISA-L's deflate (``isal``) inside a gzip member whose header regfp writes itself (mtime 0,
no name, OS "unknown"), fed fixed-size blocks because ISA-L's output depends on how input is split.
zstd always runs in multi-threaded mode with a fixed job size and no declared content size: its output
is then the same for any thread count, so the digest does not depend on the machine's core count.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, Protocol

import zstandard
from isal import igzip, isal_zlib

from .errors import InvalidInput

COMPRESSIONS = ("gzip", "zstd", "none")
GZIP_BLOCK = 1 << 18  # bytes handed to ISA-L per call; fixed so output never depends on write sizes
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # magic, deflate, no flags, mtime 0, xfl 0, OS 255
ZSTD_JOB = 2 << 20
ZSTD_THREADS = max(1, min(4, os.cpu_count() or 1))  # any count >= 1 gives the same bytes
DEFAULT_LEVEL = {"gzip": 1, "zstd": 3, "none": 0}


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Gzip:
    def __init__(self, level: int) -> None:
        self._deflate = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
        self._crc = 0
        self._length = 0
        self._pending = bytearray()
        self._header_sent = False

    def _start(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return _GZIP_HEADER

    def compress(self, data: bytes) -> bytes:
        self._crc = isal_zlib.crc32(data, self._crc)
        self._length += len(data)
        pending = self._pending
        pending += data
        if len(pending) < GZIP_BLOCK:
            return self._start() if not self._header_sent else b""
        out = [self._start()]
        view = memoryview(pending)
        whole = len(pending) - len(pending) % GZIP_BLOCK
        for start in range(0, whole, GZIP_BLOCK):
            out.append(self._deflate.compress(view[start:start + GZIP_BLOCK]))
        view.release()
        del pending[:whole]
        return b"".join(out)

    def flush(self) -> bytes:
        out = [self._start()]
        if self._pending:
            out.append(self._deflate.compress(bytes(self._pending)))
            self._pending.clear()
        out.append(self._deflate.flush())
        out.append(struct.pack("<II", self._crc & 0xFFFFFFFF, self._length & 0xFFFFFFFF))
        return b"".join(out)


def compressor(compression: str, level: int | None = None) -> Compressor:
    if compression == "none":
        return _Identity()
    lvl = DEFAULT_LEVEL[compression] if level is None else level
    if compression == "gzip":
        if not 0 <= lvl <= 3:
            raise InvalidInput(f"gzip level {lvl} is out of range (0-3, ISA-L levels)")
        return _Gzip(lvl)
    if compression == "zstd":
        if not 1 <= lvl <= 19:
            raise InvalidInput(f"zstd level {lvl} is out of range (1-19)")
        # A fixed job size makes the frame layout (and so the bytes) independent of the thread count,
        # and bounds memory (the level's default job size costs ~90 MB).
        params = zstandard.ZstdCompressionParameters.from_level(lvl, threads=ZSTD_THREADS, job_size=ZSTD_JOB,
                                                                write_checksum=False)
        return zstandard.ZstdCompressor(compression_params=params).compressobj()
    raise InvalidInput(f"unknown compression {compression!r} (one of: {', '.join(COMPRESSIONS)})")


def decompressed(stream: BinaryIO, compression: str) -> BinaryIO:
    """A reader of the uncompressed bytes of ``stream`` (all gzip members / zstd frames)."""
    if compression == "none":
        return stream
    if compression == "gzip":
        return igzip.IGzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True,
                                                          closefd=False)  # type: ignore[return-value]
    raise InvalidInput(f"unknown compression {compression!r}")
