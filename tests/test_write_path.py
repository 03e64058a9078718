"""The layer write pipeline: its bytes never depend on thread counts or how input is split, the block
form of each compressor equals its streaming form, and failures on any thread end the write cleanly."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import threading
import zlib

import pytest
import zstandard

from regctl_fp.errors import LayerInputError
from regctl_fp.layers import Entry, dir_entry, file_entry, write_layer
from regctl_fp.oci import compression
from regctl_fp.oci.compression import BLOCK, compressor
from regctl_fp.oci.descriptor import Descriptor
from regctl_fp.oci.digest import Digest

EPOCH = 1_700_000_000


class Sink:
    """Keeps the blob; with ``room``, fails like a full disk once the blob would grow past it."""

    def __init__(self, room: int | None = None) -> None:
        self.data = bytearray()
        self.room = room
        self.state = "open"

    def write(self, data: bytes) -> None:
        if self.room is not None and len(self.data) + len(data) > self.room:
            raise OSError(28, "No space left on device")
        self.data += data

    def commit(self, media_type: str) -> Descriptor:
        self.state = "committed"
        return Descriptor(media_type, Digest.of(bytes(self.data)), len(self.data))

    def abort(self) -> None:
        self.state = "aborted"


def _data(seed: int, size: int) -> bytes:
    """Text-like, binary-like and random stretches, so both literals and matches get exercised."""
    r = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        pick = r.random()
        if pick < 0.3:
            out += r.randbytes(r.randint(1, 3000))
        elif pick < 0.6:
            out += bytes([r.randint(0, 255)]) * r.randint(1, 5000)
        else:
            out += b" ".join(r.choice((b"layer", b"digest", b"blob", b"tar")) for _ in range(r.randint(1, 400)))
    return bytes(out[:size])


# A tar stream of exactly 2 blocks (header + file + end marker), so the last block is empty, and
# files straddling block boundaries; sizes are fixed so the cases stay the same run to run.
EXACT = (2 * BLOCK) - 512 - 1024
ENTRIES = {
    "exact": [file_entry("f", _data(1, EXACT))],
    "mixed": [dir_entry("d"), file_entry("d/a", _data(2, BLOCK - 700)), file_entry("d/b", _data(3, 3 * BLOCK + 17)),
              *[file_entry(f"d/s{i}", _data(10 + i, 100 * i)) for i in range(30)]],
}


def _layer(entries: list[Entry], comp: str) -> tuple[bytes, str, str]:
    sink = Sink()
    written = write_layer(entries, sink, mtime=EPOCH, compression=comp)
    assert sink.state == "committed"
    return bytes(sink.data), written.descriptor.digest.text, written.diff_id.text


@pytest.mark.parametrize("case", sorted(ENTRIES))
@pytest.mark.parametrize("comp", ["gzip", "zstd"])
def test_bytes_do_not_depend_on_thread_counts(monkeypatch: pytest.MonkeyPatch, case: str, comp: str) -> None:
    tar, _, diff_id = _layer(ENTRIES[case], "none")
    assert diff_id == Digest.of(tar).text
    if case == "exact":
        assert len(tar) == 2 * BLOCK
    blobs = set()
    for threads in (1, 2, 3):
        monkeypatch.setattr(compression._GzipBlocks, "workers", threads)
        monkeypatch.setattr(compression, "ZSTD_THREADS", threads)
        blob, digest, layer_diff_id = _layer(ENTRIES[case], comp)
        assert layer_diff_id == diff_id
        assert digest == Digest.of(blob).text
        blobs.add(blob)
    assert len(blobs) == 1
    blob = blobs.pop()
    # Independent decoders get the tar back.
    if comp == "gzip":
        assert gzip.decompress(blob) == tar
    else:
        assert zstandard.ZstdDecompressor().decompressobj().decompress(blob) == tar
    # The streaming form, fed uneven pieces, gives the very same bytes as the threaded block form.
    stream = compressor(comp)
    r = random.Random(5)
    pieces, pos = [], 0
    while pos < len(tar):
        step = r.choice((1, 511, 4096, BLOCK - 3, BLOCK, BLOCK + 9))
        pieces.append(stream.compress(tar[pos:pos + step]))
        pos += step
    pieces.append(stream.flush())
    assert b"".join(pieces) == blob


def test_gzip_blocks_are_independent_deflate_runs() -> None:
    """Each full block ends byte-aligned on an empty stored block (a sync flush), which is what lets
    the blocks be compressed on separate threads and concatenated."""
    blob, _, _ = _layer(ENTRIES["mixed"], "gzip")
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no mtime, no name: reproducible
    tar, _, _ = _layer(ENTRIES["mixed"], "none")
    full_blocks = len(tar) // BLOCK
    assert blob.count(b"\x00\x00\xff\xff") >= full_blocks
    crc, size = int.from_bytes(blob[-8:-4], "little"), int.from_bytes(blob[-4:], "little")
    assert (crc, size) == (zlib.crc32(tar), len(tar))


class _ReadOnly(io.RawIOBase):
    """A reader with read() only: its inherited readinto raises NotImplementedError."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._data.read(n)

    def readinto(self, b):  # type: ignore[no-untyped-def,override]
        raise NotImplementedError


class _Bare:
    """No readinto at all, and short reads: at most 1000 bytes a call."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, n: int) -> bytes:
        return self._data.read(min(n, 1000))

    def __enter__(self) -> _Bare:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_readers_without_readinto_give_the_same_layer() -> None:
    data = _data(7, BLOCK + 5000)
    plain = [file_entry("x", data)]
    expected = _layer(plain, "gzip")
    for make in (_ReadOnly, io.BytesIO, _Bare):
        entry = Entry(b"x", "file", 0o644, size=len(data), opener=lambda make=make: make(data))  # type: ignore[misc]
        assert _layer([entry], "gzip") == expected, make.__name__


@pytest.mark.parametrize("comp", ["gzip", "zstd", "none"])
def test_sink_failure_aborts_and_leaves_no_threads(comp: str) -> None:
    size = len(_layer(ENTRIES["mixed"], comp)[0])
    before = threading.active_count()
    for room in (0, size // 2, size - 1):  # the first write fails, one in the middle, the last
        sink = Sink(room=room)
        with pytest.raises(OSError, match="No space left"):
            write_layer(ENTRIES["mixed"], sink, mtime=EPOCH, compression=comp)
        assert sink.state == "aborted"
        assert threading.active_count() == before


def test_reader_failure_midway_aborts_and_leaves_no_threads() -> None:
    before = threading.active_count()
    big = _data(9, 3 * BLOCK)
    entries = [file_entry("a", big),
               Entry(b"b", "file", 0o644, size=10 * BLOCK, opener=lambda: io.BytesIO(big), origin="/src/b")]
    sink = Sink()
    with pytest.raises(LayerInputError, match="shrank"):
        write_layer(entries, sink, mtime=EPOCH, compression="gzip")
    assert sink.state == "aborted"
    assert threading.active_count() == before


def test_uncompressed_layer_digest_is_its_diff_id() -> None:
    blob, digest, diff_id = _layer(ENTRIES["mixed"], "none")
    assert digest == diff_id == "sha256:" + hashlib.sha256(blob).hexdigest()
