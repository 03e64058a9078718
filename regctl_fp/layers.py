"""Deterministic layers: a tree or an explicit list of entries becomes a tar layer in one streaming pass.

The pass writes the tar stream, hashes it (diff_id), compresses it and hashes the compressed bytes
(digest) while they go to a blob sink, so memory stays constant whatever the size. Entries are sorted
by path bytes, owners normalised, user/group names dropped, mtimes fixed by the caller, setuid/setgid
dropped unless asked. Device nodes, sockets, FIFOs, and paths that would escape the layer root are
refused with a ``LayerInputError``.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from . import tarformat as tf
from .errors import LayerInputError
from .oci import mediatypes as mt
from .oci.compression import Compressor, compressor
from .oci.descriptor import Descriptor
from .oci.digest import Digest

Kind = Literal["file", "dir", "symlink", "hardlink"]
CHUNK = 1 << 20
WHITEOUT_PREFIX = b".wh."


class BlobSink(Protocol):
    """Where a blob's bytes go while they are produced; ``commit`` makes it visible under its digest."""

    def write(self, data: bytes) -> None: ...
    def commit(self, media_type: str) -> Descriptor: ...
    def abort(self) -> None: ...


@dataclass(frozen=True)
class Entry:
    """One tar entry. ``path`` is relative to the layer root, ``/``-separated bytes, no trailing slash."""

    path: bytes
    kind: Kind
    mode: int
    size: int = 0
    target: bytes = b""  # symlink target, or hardlink target path within the layer
    opener: Callable[[], BinaryIO] | None = field(default=None, compare=False, repr=False)
    data: bytes | None = field(default=None, repr=False)
    uid: int = 0
    gid: int = 0
    origin: str = field(default="", compare=False)  # where it came from, for error messages

    def show(self) -> str:
        return self.origin or self.path.decode("utf-8", "backslashreplace")


def file_entry(path: str | bytes, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(_as_bytes(path), "file", mode, size=len(data), data=data, uid=uid, gid=gid)


def dir_entry(path: str | bytes, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(_as_bytes(path), "dir", mode, uid=uid, gid=gid)


def symlink_entry(path: str | bytes, target: str | bytes) -> Entry:
    return Entry(_as_bytes(path), "symlink", 0o777, target=_as_bytes(target))


def whiteout_entry(path: str | bytes) -> Entry:
    """An OCI whiteout: deletes ``path`` from the layers below."""
    p = _as_bytes(path).strip(b"/")
    parent, _, name = p.rpartition(b"/")
    return file_entry((parent + b"/" if parent else b"") + WHITEOUT_PREFIX + name, b"", 0o644)


def opaque_entry(directory: str | bytes) -> Entry:
    """An OCI opaque whiteout: hides everything below ``directory`` in the layers below."""
    d = _as_bytes(directory).strip(b"/")
    return file_entry(d + b"/.wh..wh..opq", b"", 0o644)


def _as_bytes(path: str | bytes) -> bytes:
    return os.fsencode(path) if isinstance(path, str) else path


def normalize(path: bytes, origin: str = "") -> bytes:
    """``path`` relative to the layer root, or a LayerInputError if it is empty or escapes it."""
    show = origin or path.decode("utf-8", "backslashreplace")
    if b"\0" in path:
        raise LayerInputError(show, "path contains a NUL byte")
    parts = []
    for part in path.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            raise LayerInputError(show, "path contains '..' and would escape the layer root")
        parts.append(part)
    if not parts:
        raise LayerInputError(show, "path is empty (the layer root itself)")
    return b"/".join(parts)


# ---- collecting entries from a directory -------------------------------------------------------

def collect_tree(root: str | Path, *, prefix: str | bytes = b"", uid: int = 0, gid: int = 0,
                 keep_special_bits: bool = False, allow_whiteouts: bool = False) -> list[Entry]:
    """Every entry below ``root`` (not ``root`` itself), placed under ``prefix`` in the layer.

    Symlinks are stored as links, never followed. Files that share an inode become hardlinks to the
    first of them in sorted order.
    """
    base = os.fsencode(os.fspath(root))
    try:
        st = os.stat(base)
    except OSError as e:
        raise LayerInputError(os.fsdecode(base), f"cannot read directory: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise LayerInputError(os.fsdecode(base), "not a directory")
    pre = normalize(_as_bytes(prefix)) if _as_bytes(prefix).strip(b"/") else b""
    out: list[Entry] = []
    _walk(base, b"", pre, out, uid, gid, keep_special_bits, allow_whiteouts)
    out.sort(key=lambda e: e.path)
    return _link_hardlinks(out)


def _walk(base: bytes, rel: bytes, pre: bytes, out: list[Entry], uid: int, gid: int, keep: bool,
          allow_whiteouts: bool) -> None:
    directory = os.path.join(base, rel) if rel else base
    try:
        with os.scandir(directory) as it:
            children = sorted(it, key=lambda d: d.name)
    except OSError as e:
        raise LayerInputError(os.fsdecode(directory), f"cannot list directory: {e.strerror}") from None
    for child in children:
        name = child.name
        assert isinstance(name, bytes)
        if name.startswith(WHITEOUT_PREFIX) and not allow_whiteouts:
            raise LayerInputError(os.fsdecode(child.path),
                                  "names starting with '.wh.' are reserved for OCI whiteouts")
        crel = rel + b"/" + name if rel else name
        lpath = pre + b"/" + crel if pre else crel
        origin = os.fsdecode(child.path)
        try:
            st = child.stat(follow_symlinks=False)
        except OSError as e:
            raise LayerInputError(origin, f"cannot stat: {e.strerror}") from None
        mode = stat.S_IMODE(st.st_mode)
        if not keep:
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
        if stat.S_ISDIR(st.st_mode):
            out.append(Entry(lpath, "dir", mode, uid=uid, gid=gid, origin=origin))
            _walk(base, crel, pre, out, uid, gid, keep, allow_whiteouts)
        elif stat.S_ISREG(st.st_mode):
            path = child.path
            ident = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
            out.append(Entry(lpath, "file", mode, size=st.st_size, uid=uid, gid=gid, origin=origin,
                             opener=_file_opener(path), target=repr(ident).encode() if ident else b""))
        elif stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(child.path)
            except OSError as e:
                raise LayerInputError(origin, f"cannot read symlink: {e.strerror}") from None
            out.append(Entry(lpath, "symlink", 0o777, target=target, uid=uid, gid=gid, origin=origin))
        else:
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                    else "a device node" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                    else "a special file")
            raise LayerInputError(origin, f"is {kind}; layers hold only files, directories and links")


def _file_opener(path: bytes) -> Callable[[], BinaryIO]:
    return lambda: open(path, "rb")


def _link_hardlinks(entries: list[Entry]) -> list[Entry]:
    """Files sharing an inode (marked in ``target`` by ``_walk``): the first stays, the rest link to it."""
    first: dict[bytes, bytes] = {}
    out = []
    for e in entries:
        if e.kind == "file" and e.target:
            if e.target in first:
                e = Entry(e.path, "hardlink", e.mode, target=first[e.target], uid=e.uid, gid=e.gid,
                          origin=e.origin)
            else:
                first[e.target] = e.path
                e = Entry(e.path, "file", e.mode, size=e.size, opener=e.opener, uid=e.uid, gid=e.gid,
                          origin=e.origin)
        out.append(e)
    return out


# ---- checking and ordering ------------------------------------------------------------------------

def prepare(entries: Iterable[Entry]) -> list[Entry]:
    """Entries normalised, checked for safety and sorted; raises LayerInputError on the first problem."""
    by_path: dict[bytes, Entry] = {}
    for e in entries:
        path = normalize(e.path, e.origin)
        if e.kind not in ("file", "dir", "symlink", "hardlink"):
            raise LayerInputError(e.show(), f"unknown entry kind {e.kind!r}")
        if path in by_path:
            raise LayerInputError(e.show(), "the same path appears twice in one layer")
        if e.kind == "symlink" and (not e.target or b"\0" in e.target):
            raise LayerInputError(e.show(), "symlink target is empty or contains NUL")
        if e.kind == "file" and e.data is None and e.opener is None:
            raise LayerInputError(e.show(), "file entry has no content")
        if e.uid < 0 or e.gid < 0:
            raise LayerInputError(e.show(), "negative uid or gid")
        by_path[path] = e if path == e.path else _with_path(e, path)
    ordered = [by_path[p] for p in sorted(by_path)]
    for e in ordered:
        # Writing through a symlink is how hostile tars escape: no entry may live below a link.
        parent = e.path
        while b"/" in parent:
            parent = parent.rpartition(b"/")[0]
            above = by_path.get(parent)
            if above is not None and above.kind != "dir":
                raise LayerInputError(e.show(), f"its parent {parent.decode('utf-8', 'replace')!r} is a "
                                                f"{above.kind} in the same layer")
        if e.kind == "hardlink":
            target = normalize(e.target, e.origin)
            linked = by_path.get(target)
            if linked is None or linked.kind != "file" or linked.path >= e.path:
                raise LayerInputError(e.show(), "hardlink target must be a regular file earlier in the layer")
    return ordered


def _with_path(e: Entry, path: bytes) -> Entry:
    return Entry(path, e.kind, e.mode, size=e.size,
                 target=normalize(e.target, e.origin) if e.kind == "hardlink" else e.target,
                 opener=e.opener, data=e.data, uid=e.uid, gid=e.gid, origin=e.origin)


# ---- writing ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WrittenLayer:
    descriptor: Descriptor
    diff_id: Digest
    uncompressed_size: int


def total_size(entries: Sequence[Entry]) -> int:
    return sum(e.size for e in entries if e.kind == "file")


def write_layer(entries: Iterable[Entry], sink: BlobSink, *, mtime: int, compression: str = "gzip",
                level: int | None = None, on_bytes: Callable[[int], None] | None = None) -> WrittenLayer:
    """Stream ``entries`` as one tar layer into ``sink``; the sink is committed on success, aborted on error.

    Two stages overlap on two cores: this thread reads files, writes tar headers and hashes the tar
    stream (diff_id); a worker thread compresses and hands the result to the sink (which hashes it
    for the digest). At most ``_QUEUE_DEPTH`` chunks are in flight, so memory stays bounded.
    """
    ordered = prepare(entries)
    media_type = mt.OCI_LAYER_FOR.get(compression)
    if media_type is None:
        raise LayerInputError(compression, "unknown compression (gzip, zstd, none)")
    comp = compressor(compression, level)
    pipe = _Pipe(comp, sink)
    stream = _TarStream(pipe)
    try:
        for e in ordered:
            size = e.size if e.kind == "file" else 0
            name = e.path + b"/" if e.kind == "dir" else e.path
            stream.add(tf.header(name, typeflag=_TYPE[e.kind], mode=e.mode, uid=e.uid, gid=e.gid, mtime=mtime,
                                 size=size, linkname=e.target if e.kind in ("symlink", "hardlink") else b""))
            if e.kind != "file":
                continue
            if e.data is not None:
                stream.add(e.data)
            else:
                _copy_file(e, stream, on_bytes)
            stream.add(tf.padding(size))
            if on_bytes is not None and e.data is not None:
                on_bytes(size)
        stream.add(tf.END_OF_ARCHIVE)
        stream.flush()
        pipe.finish()
        desc = sink.commit(media_type)
    except BaseException:
        pipe.abandon()
        sink.abort()
        raise
    return WrittenLayer(desc, Digest("sha256", stream.diff.hexdigest()), stream.size)


_QUEUE_DEPTH = 4


class _Pipe:
    """Compress-and-store on a worker thread; chunks arrive in order through a bounded queue."""

    def __init__(self, comp: Compressor, sink: BlobSink) -> None:
        self._comp = comp
        self._sink = sink
        self._queue: queue.Queue[bytes | bytearray | None] = queue.Queue(_QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="regfp-compress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                break
            if self._error is not None:
                continue  # keep draining so the producer never blocks on a dead consumer
            try:
                out = self._comp.compress(chunk)
                if out:
                    self._sink.write(out)
            except BaseException as e:  # handed to the producer thread, which re-raises it
                self._error = e
        if self._error is None:
            try:
                tail = self._comp.flush()
                if tail:
                    self._sink.write(tail)
            except BaseException as e:
                self._error = e

    def put(self, chunk: bytes | bytearray) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        if self._thread.is_alive():
            self._error = self._error or RuntimeError("abandoned")
            self._queue.put(None)
            self._thread.join()


class _TarStream:
    """Collects small pieces into ~1 MiB chunks; hashes each chunk (diff_id) as it leaves."""

    def __init__(self, pipe: _Pipe) -> None:
        self._pipe = pipe
        self._buf = bytearray()
        self.diff = hashlib.sha256()
        self.size = 0

    def add(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= CHUNK:
            self.flush()

    def add_chunk(self, data: bytes) -> None:
        """A piece that is already chunk-sized: sent as is, after whatever is buffered."""
        self.flush()
        self._send(data)

    def flush(self) -> None:
        if self._buf:
            buf, self._buf = self._buf, bytearray()
            self._send(buf)

    def _send(self, data: bytes | bytearray) -> None:
        self.diff.update(data)
        self.size += len(data)
        self._pipe.put(data)


_TYPE = {"file": tf.REGULAR, "dir": tf.DIRECTORY, "symlink": tf.SYMLINK, "hardlink": tf.HARDLINK}


def _copy_file(e: Entry, stream: _TarStream, on_bytes: Callable[[int], None] | None) -> None:
    """Append a file's content; small files join the current chunk, big ones stream chunk by chunk."""
    assert e.opener is not None
    remaining = e.size
    try:
        with e.opener() as f:
            while remaining:
                data = f.read(min(CHUNK, remaining))
                if not data:
                    raise LayerInputError(e.show(), "file shrank while it was being read")
                if len(data) == CHUNK:
                    stream.add_chunk(data)
                else:
                    stream.add(data)
                remaining -= len(data)
                if on_bytes is not None:
                    on_bytes(len(data))
    except OSError as err:
        raise LayerInputError(e.show(), f"cannot read: {err.strerror}") from None
