"""Deterministic layers: a tree or an explicit list of entries becomes a tar layer in one streaming pass.

The pass writes the tar stream, hashes it (diff_id), compresses it and hashes the compressed bytes
(digest) while they go to a blob sink, so memory stays constant whatever the size. Entries are sorted
by path, one component at a time (``a``, ``a/x``, ``a-b``: depth first, as GNU ``tar --sort=name``
writes them), owners normalised, user/group names dropped, mtimes fixed by the caller, setuid/setgid
dropped unless asked. Device nodes, sockets, FIFOs, paths that would escape the layer root, and
``.wh.`` names that regfp did not make as whiteouts on purpose are refused with a ``LayerInputError``.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from . import tarformat as tf
from .errors import LayerInputError
from .imagepath import WHITEOUT_PREFIX, WHITEOUT_REASON, is_whiteout_name, whiteout_component
from .oci import mediatypes as mt
from .oci.compression import BLOCK, BlockCompressor, Buffer, block_compressor
from .oci.descriptor import Descriptor
from .oci.digest import Digest
from .oci.streams import ByteStream, Opener
from .regularfile import describe_mode
from .values import valueclass

if TYPE_CHECKING:  # futures (and logging with them) only when a layer is written
    from concurrent.futures import Future

Kind = Literal["file", "dir", "symlink", "hardlink"]
CHUNK = BLOCK  # the tar stream is cut here; gzip compresses each block on its own


class BlobSink(Protocol):
    """Where a blob's bytes go while they are produced; ``commit`` makes it visible under its digest."""

    def write(self, data: Buffer) -> None: ...
    def commit(self, media_type: str) -> Descriptor: ...
    def abort(self) -> None: ...


@valueclass
class Entry:
    """One tar entry. ``path`` is relative to the layer root, ``/``-separated bytes, no trailing slash."""

    path: bytes
    kind: Kind
    mode: int
    size: int = 0
    target: bytes = b""  # symlink target, or hardlink target path within the layer
    opener: Opener | None = field(default=None, compare=False, repr=False)
    data: bytes | None = field(default=None, repr=False)
    uid: int = 0
    gid: int = 0
    origin: str = field(default="", compare=False)  # where it came from, for error messages
    whiteout: bool = False  # a whiteout made on purpose (or below one): '.wh.' names are allowed

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
    return _marked(file_entry((parent + b"/" if parent else b"") + WHITEOUT_PREFIX.encode() + name, b"", 0o644))


def opaque_entry(directory: str | bytes) -> Entry:
    """An OCI opaque whiteout: hides everything below ``directory`` in the layers below."""
    d = _as_bytes(directory).strip(b"/")
    return _marked(file_entry(d + b"/.wh..wh..opq", b"", 0o644))


def _marked(e: Entry) -> Entry:
    return Entry(e.path, e.kind, e.mode, size=e.size, data=e.data, uid=e.uid, gid=e.gid, whiteout=True)


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
                 keep_special_bits: bool = False, allow_whiteouts: bool = False,
                 on_found: Callable[[int], None] | None = None) -> list[Entry]:
    """Every entry below ``root`` (not ``root`` itself), placed under ``prefix`` in the layer.

    Symlinks are stored as links, never followed. Files that share an inode become hardlinks to the
    first of them in sorted order. ``on_found`` hears the number of non-directories of each directory
    listed (a scan of a large tree takes seconds before any byte is written).
    """
    base = os.fsencode(os.fspath(root))
    try:
        st = os.stat(base)
    except OSError as e:
        raise LayerInputError(_show(base), f"cannot read directory: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise LayerInputError(_show(base), "not a directory")
    raw_prefix = _as_bytes(prefix)
    pre = normalize(raw_prefix) if raw_prefix.strip(b"/.") else b""
    out: list[Entry] = []
    # An explicit stack, not recursion: a hostile tree may nest deeper than Python's recursion limit.
    pending = [b""]
    while pending:
        before = len(out)
        _scan(base, pending.pop(), pre, out, pending, uid, gid, keep_special_bits, allow_whiteouts)
        if on_found is not None:
            on_found(sum(1 for e in out[before:] if e.kind != "dir"))
    out.sort(key=lambda e: order_key(e.path))
    return _link_hardlinks(out)


def _show(path: bytes) -> str:
    """A path for messages: undecodable bytes as ``\\xff`` escapes, never lone surrogates that break output."""
    return path.decode("utf-8", "backslashreplace")


def _scan(base: bytes, rel: bytes, pre: bytes, out: list[Entry], pending: list[bytes], uid: int, gid: int,
          keep: bool, allow_whiteouts: bool) -> None:
    """Entries for the children of ``base/rel``; subdirectories are queued on ``pending``."""
    directory = os.path.join(base, rel) if rel else base
    try:
        with os.scandir(directory) as it:
            children = sorted(it, key=lambda d: d.name)
    except OSError as e:
        raise LayerInputError(_show(directory), f"cannot list directory: {e.strerror}") from None
    for child in children:
        name = child.name
        assert isinstance(name, bytes)
        origin = _show(child.path)
        if is_whiteout_name(name) and not allow_whiteouts:
            raise LayerInputError(origin, WHITEOUT_REASON)
        crel = rel + b"/" + name if rel else name
        lpath = pre + b"/" + crel if pre else crel
        try:
            st = child.stat(follow_symlinks=False)
        except OSError as e:
            raise LayerInputError(origin, f"cannot stat: {e.strerror}") from None
        mode = stat.S_IMODE(st.st_mode)
        if not keep:
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
        if stat.S_ISDIR(st.st_mode):
            out.append(Entry(lpath, "dir", mode, uid=uid, gid=gid, origin=origin, whiteout=allow_whiteouts))
            pending.append(crel)
        elif stat.S_ISREG(st.st_mode):
            ident = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
            out.append(Entry(lpath, "file", mode, size=st.st_size, uid=uid, gid=gid, origin=origin,
                             opener=_file_opener(child.path, origin),
                             target=repr(ident).encode() if ident else b"", whiteout=allow_whiteouts))
        elif stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(child.path)
            except OSError as e:
                raise LayerInputError(origin, f"cannot read symlink: {e.strerror}") from None
            out.append(Entry(lpath, "symlink", 0o777, target=target, uid=uid, gid=gid, origin=origin,
                             whiteout=allow_whiteouts))
        else:
            raise LayerInputError(origin, f"is {describe_mode(st.st_mode)}; layers hold only files, "
                                          "directories and links")


def path_opener(path: Path) -> Opener:
    """Opens ``path`` for reading when the layer is written (for files regfp made itself)."""
    return lambda: path.open("rb")


def _file_opener(path: bytes, origin: str) -> Opener:
    def open_checked() -> ByteStream:
        # The file is opened long after it was listed: if it has meanwhile become a symlink (to a file
        # outside the tree) or a FIFO (which would block), refuse rather than follow or hang.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise LayerInputError(origin, f"became {describe_mode(mode)} while the layer was written")
            os.set_blocking(fd, True)
            # Unbuffered: the writer reads straight into its blocks, and a buffer per file costs time.
            return os.fdopen(fd, "rb", buffering=0)
        except BaseException:
            os.close(fd)
            raise

    return open_checked


def _link_hardlinks(entries: list[Entry]) -> list[Entry]:
    """Files sharing an inode (marked in ``target`` by ``_scan``): the first stays, the rest link to it."""
    first: dict[bytes, bytes] = {}
    out = []
    for e in entries:
        if e.kind == "file" and e.target:
            if e.target in first:
                e = Entry(e.path, "hardlink", e.mode, target=first[e.target], uid=e.uid, gid=e.gid,
                          origin=e.origin, whiteout=e.whiteout)
            else:
                first[e.target] = e.path
                e = Entry(e.path, "file", e.mode, size=e.size, opener=e.opener, uid=e.uid, gid=e.gid,
                          origin=e.origin, whiteout=e.whiteout)
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
        # The last line of defence: whatever the source (recipe, commit, directory, run output, work
        # item), a '.wh.' name would delete files of the layers below when the image is unpacked.
        if not e.whiteout and whiteout_component(path) is not None:
            raise LayerInputError(e.show(), WHITEOUT_REASON)
        if e.kind == "symlink" and (not e.target or b"\0" in e.target):
            raise LayerInputError(e.show(), "symlink target is empty or contains NUL")
        if e.kind == "file":
            if e.data is None and e.opener is None:
                raise LayerInputError(e.show(), "file entry has no content")
            # The header promises ``size`` bytes: any other amount would corrupt every entry after it.
            if e.size < 0 or (e.data is not None and len(e.data) != e.size):
                raise LayerInputError(e.show(), f"file size {e.size} does not match its content")
        if e.uid < 0 or e.gid < 0:
            raise LayerInputError(e.show(), "negative uid or gid")
        target = _link_target(e) if e.kind == "hardlink" else e.target
        by_path[path] = e if (path, target) == (e.path, e.target) else _with_path(e, path, target)
    ordered = [by_path[p] for p in sorted(by_path, key=order_key)]
    position = {e.path: i for i, e in enumerate(ordered)}
    for e in ordered:
        # Writing through a symlink is how hostile tars escape: no entry may live below a link.
        # Parents sort first, so the nearest directory entry above was already checked the same way.
        parent = e.path
        while b"/" in parent:
            parent = parent.rpartition(b"/")[0]
            above = by_path.get(parent)
            if above is None:
                continue
            if above.kind != "dir":
                raise LayerInputError(e.show(), f"its parent {_show(parent)!r} is a {above.kind} in the same layer")
            break
        if e.kind == "hardlink":
            linked = by_path.get(e.target)
            if linked is None or linked.kind != "file" or position[linked.path] >= position[e.path]:
                raise LayerInputError(e.show(), f"hardlink target {_show(e.target)!r} must be a regular file "
                                                "earlier in the layer")
    return ordered


def order_key(path: bytes) -> bytes:
    """Sort key of layer paths: component by component, so a directory's whole subtree follows it
    directly. Plain byte order would put ``a-b`` between ``a`` and ``a/x``; GNU tar then applies the
    mode of ``a`` before ``a/x`` arrives, and a non-root extraction of a read-only ``a`` fails."""
    return path.replace(b"/", b"\0")  # NUL sorts below every byte a name can hold


def _link_target(e: Entry) -> bytes:
    try:
        return normalize(e.target)
    except LayerInputError as err:
        raise LayerInputError(e.show(), f"hardlink target {_show(e.target)!r}: {err.reason}") from None


def _with_path(e: Entry, path: bytes, target: bytes) -> Entry:
    return Entry(path, e.kind, e.mode, size=e.size, target=target, opener=e.opener, data=e.data, uid=e.uid,
                 gid=e.gid, origin=e.origin, whiteout=e.whiteout)


# ---- writing ---------------------------------------------------------------------------------------

@valueclass
class WrittenLayer:
    descriptor: Descriptor
    diff_id: Digest
    uncompressed_size: int


def total_size(entries: Sequence[Entry]) -> int:
    return sum(e.size for e in entries if e.kind == "file")


class Counters:
    """Process-wide instrumentation, reported by ``--json`` (e.g. to show a cached run compressed
    nothing). Counting never changes what is written."""

    compressed = 0  # layers compressed (gzip or zstd) by write_layer


def write_layer(entries: Iterable[Entry], sink: BlobSink, *, mtime: int, compression: mt.Compression = "gzip",
                level: int | None = None, on_bytes: Callable[[int], None] | None = None,
                inline: bool | None = None) -> WrittenLayer:
    """Stream ``entries`` as one tar layer into ``sink``; the sink is committed on success, aborted on error.

    The work overlaps on every core: this thread writes tar headers and reads files straight into
    1 MiB blocks; one thread hashes the blocks (diff_id); compressor threads compress them (gzip blocks
    independently, zstd in order with its own threads); one thread hands the results to the sink in
    order (which hashes them for the digest). Every queue is bounded, so memory stays constant (a few
    dozen MiB) whatever the size, and the bytes never depend on the thread count. ``inline`` forces
    (True) or forbids (False) doing it all on this thread; by default a layer smaller than one block is.
    """
    if compression != "none":
        Counters.compressed += 1
    try:  # the sink exists already: refusing the input must not leave its temp file behind
        ordered = prepare(entries)
        media_type = mt.OCI_LAYER_FOR.get(compression)
        if media_type is None:
            raise LayerInputError(compression, "unknown compression (gzip, zstd, none)")
        comp = block_compressor(compression, level)
        # A layer that fits in one block (most generated layers: configs, keys, a work chunk) is hashed
        # and compressed on this thread: handing one block to worker threads costs more than the work.
        # The bytes are the same either way (the same jobs, in the same order).
        estimate = sum(e.size + tf.BLOCK for e in ordered) + len(tf.END_OF_ARCHIVE)
        # Uncompressed, the blob is the tar stream itself: the sink's digest is the diff_id, no second hash.
        # Inside the try: starting the threads takes long enough for a Ctrl-C to land there.
        pipe = _Pipe(comp, sink, hash_diff=compression != "none",
                     inline=estimate < CHUNK if inline is None else inline)
    except BaseException:
        sink.abort()
        raise
    try:
        stream = _TarStream(pipe)
        for e in ordered:
            size = e.size if e.kind == "file" else 0
            name = e.path + b"/" if e.kind == "dir" else e.path
            stream.add(tf.header(name, typeflag=_TYPE[e.kind], mode=e.mode, uid=e.uid, gid=e.gid, mtime=mtime,
                                 size=size, linkname=e.target if e.kind in ("symlink", "hardlink") else b""))
            if e.kind != "file":
                continue
            if e.data is not None:
                stream.add(e.data)
                if on_bytes is not None:
                    on_bytes(size)
            else:
                _copy_file(e, stream, on_bytes)
            stream.zeros(-size % tf.BLOCK)
        stream.zeros(len(tf.END_OF_ARCHIVE))
        stream.close()
        diff = pipe.finish()
        desc = sink.commit(media_type)
    except BaseException:
        pipe.abandon()
        sink.abort()
        raise
    observer = _observer.get()
    if observer is not None:
        observer(ordered, desc)
    if diff is None:
        if desc.digest.algorithm != "sha256":  # every sink regfp has hashes with sha256
            raise RuntimeError(f"blob sink returned a {desc.digest.algorithm} digest; diff_ids are sha256")
        return WrittenLayer(desc, desc.digest, stream.size)
    return WrittenLayer(desc, Digest("sha256", diff), stream.size)


LayerObserver = Callable[[Sequence["Entry"], Descriptor], None]
_observer: ContextVar[LayerObserver | None] = ContextVar("regfp_layer_observer", default=None)


@contextmanager
def observing(observer: LayerObserver) -> Iterator[None]:
    """Within the block, ``observer(entries, descriptor)`` hears of every layer ``write_layer`` writes on
    this thread, once it is stored: what it was made of, while its inputs are still open (an SBOM
    scanner reads the few files it wants from there instead of reading the blob back)."""
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


_DEPTH = 4  # blocks waiting at each stage: enough to ride out uneven files, little memory
_ZEROS = bytes(2 * tf.BLOCK)


class _Abandoned(Exception):
    """Set as the pipe's error when the producer gives up, so every stage stops working and drains."""


class _Pipe:
    """Hashing, compressing and storing on worker threads, each stage fed in order by a bounded queue.

    Every stage keeps draining its queue after a failure (doing no more work), so the producer never
    blocks on a dead consumer; the first error is re-raised on the producer's thread. Blocks come
    back to a free list once the hasher and the compressor are done with them: a fresh 1 MiB buffer
    costs page faults, a recycled one nothing. Blocks handed to the sink itself (no compression) are
    never recycled, since a sink may keep what it is given.
    """

    def __init__(self, comp: BlockCompressor, sink: BlobSink, *, hash_diff: bool, inline: bool = False) -> None:
        self._comp = comp
        self._sink = sink
        self._error: BaseException | None = None
        self._closed = False
        self._diff = hashlib.sha256() if hash_diff else None
        self._inline = inline
        self._started = False  # inline: whether the header went out
        self._free: list[bytearray] = []
        if inline:
            return
        self._hashes: queue.Queue[bytearray | None] | None = queue.Queue(_DEPTH) if hash_diff else None
        self._jobs: queue.Queue[tuple[Callable[[], Buffer], Future[Buffer], bytearray] | None] | None = (
            queue.Queue(_DEPTH) if comp.workers else None)
        self._outputs: queue.Queue[Future[Buffer] | None] = queue.Queue(_DEPTH + comp.workers)
        self._users: dict[int, int] = {}  # id(block) -> stages still reading it
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        if hash_diff:
            self._start("regfp-hash", self._hash_loop)
        for i in range(comp.workers):
            self._start(f"regfp-compress-{i}", self._compress_loop)
        self._start("regfp-write", self._write_loop)

    def _start(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error

    def new_block(self) -> bytearray:
        """A ``CHUNK``-sized buffer to fill, recycled when one is free; its old bytes are garbage."""
        if self._inline:
            return self._free.pop() if self._free else bytearray(CHUNK)
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(CHUNK)

    def _done_with(self, block: bytearray) -> None:
        with self._lock:
            left = self._users[id(block)] - 1
            if left:
                self._users[id(block)] = left
            else:
                del self._users[id(block)]
                self._free.append(block)

    def _hash_loop(self) -> None:
        assert self._hashes is not None and self._diff is not None
        while (block := self._hashes.get()) is not None:
            if self._error is None:
                try:
                    self._diff.update(block)
                    self._comp.track(block)
                except BaseException as e:  # handed to the producer thread, which re-raises it
                    self._fail(e)
            self._done_with(block)

    def _compress_loop(self) -> None:
        assert self._jobs is not None
        while (item := self._jobs.get()) is not None:
            job, result, block = item
            if self._error is not None:
                result.set_exception(_Abandoned())  # the writer may be waiting on it
            else:
                try:
                    result.set_result(job())
                except BaseException as e:
                    result.set_exception(e)
            del job
            self._done_with(block)

    def _write_loop(self) -> None:
        try:
            if self._comp.header:
                self._sink.write(self._comp.header)
        except BaseException as e:
            self._fail(e)
        while (result := self._outputs.get()) is not None:
            if self._error is None:
                try:
                    out = result.result()
                    if out:
                        self._sink.write(out)
                except BaseException as e:
                    self._fail(e)

    def put(self, block: bytearray, final: bool) -> None:
        """Hand over the next block of the tar stream; the caller never writes to it again."""
        if self._inline:
            self._put_inline(block, final)
            return
        if self._error is not None:
            raise self._error
        from concurrent.futures import Future

        job = self._comp.job(block, final)
        result: Future[Buffer] = Future()
        if self._jobs is None:
            result.set_result(job())  # nothing to compute: the sink gets the block itself
        else:
            with self._lock:
                self._users[id(block)] = 1 + (self._hashes is not None)
            self._jobs.put((job, result, block))
        self._outputs.put(result)
        if self._hashes is not None:
            self._hashes.put(block)

    def _put_inline(self, block: bytearray, final: bool) -> None:
        """Every stage at once, in the order the threads would run them."""
        if not self._started:
            self._started = True
            if self._comp.header:
                self._sink.write(self._comp.header)
        job = self._comp.job(block, final)
        if self._diff is not None:
            self._diff.update(block)
            self._comp.track(block)
        out = job()
        if out:
            self._sink.write(out)
        if self._comp.workers and out is not block:
            self._free.append(block)  # compressed: the sink holds the output, not the block

    def finish(self) -> str | None:
        """Wait for every stage; write the trailer. The diff_id's hex, unless it was not computed."""
        if self._inline and not self._started and self._comp.header:
            self._sink.write(self._comp.header)
        self._close()
        if self._error is not None:
            raise self._error
        trailer = self._comp.trailer()
        if trailer:
            self._sink.write(trailer)
        return self._diff.hexdigest() if self._diff is not None else None

    def abandon(self) -> None:
        if not self._closed:
            self._fail(_Abandoned())
            self._close()

    def _close(self) -> None:
        self._closed = True
        if self._inline:
            return
        if self._hashes is not None:
            self._hashes.put(None)
        if self._jobs is not None:
            for _ in range(self._comp.workers):
                self._jobs.put(None)
        self._outputs.put(None)
        queues = [q for q in (self._hashes, self._jobs, self._outputs) if q is not None]
        for thread in self._threads:
            thread.join(1.0)
            while thread.is_alive():
                # A Ctrl-C that lands inside a queue's put (between storing an item and waking a reader)
                # leaves a reader asleep over a queue that has work: wake every reader again.
                for q in queues:
                    with q.not_empty:
                        q.not_empty.notify_all()
                thread.join(0.1)


class _TarStream:
    """The tar stream cut into ``CHUNK``-sized blocks at fixed offsets; files are read straight into them.

    Every byte of a block is written before it is sent (blocks are recycled, so nothing is zero).
    """

    def __init__(self, pipe: _Pipe) -> None:
        self._pipe = pipe
        self.size = 0
        self._new_block()

    def _new_block(self) -> None:
        self._block = self._pipe.new_block()
        self._view = memoryview(self._block)
        self._pos = 0

    def _send_full(self) -> None:
        self._view.release()
        self._pipe.put(self._block, final=False)
        self.size += CHUNK
        self._new_block()

    def add(self, data: Buffer) -> None:
        pos, n = self._pos, len(data)
        if pos + n < CHUNK:
            self._view[pos:pos + n] = data
            self._pos = pos + n
            return
        src = memoryview(data)
        while src:
            take = min(len(src), CHUNK - self._pos)
            self._view[self._pos:self._pos + take] = src[:take]
            self._pos += take
            src = src[take:]
            if self._pos == CHUNK:
                self._send_full()

    def zeros(self, n: int) -> None:
        """Tar padding and the end-of-archive marker: never more than 1 KiB."""
        self.add(_ZEROS[:n])

    def read_into(self, readinto: Callable[[memoryview], int | None], limit: int) -> int:
        """Read up to ``limit`` bytes into the current block; 0 at the end of the file."""
        pos = self._pos
        with self._view[pos:pos + min(limit, CHUNK - pos)] as target:
            got = readinto(target) or 0
        self._pos = pos + got
        if self._pos == CHUNK:
            self._send_full()
        return got

    def close(self) -> None:
        """Send the last block: shorter than ``CHUNK``, possibly empty."""
        last = bytearray(self._view[:self._pos])
        self._view.release()
        self.size += len(last)
        self._pipe.put(last, final=True)


_TYPE = {"file": tf.REGULAR, "dir": tf.DIRECTORY, "symlink": tf.SYMLINK, "hardlink": tf.HARDLINK}


def _copy_file(e: Entry, stream: _TarStream, on_bytes: Callable[[int], None] | None) -> None:
    """Append exactly ``e.size`` bytes of the file, read straight into the stream's blocks when it can."""
    assert e.opener is not None
    remaining = e.size
    try:
        with e.opener() as f:
            readinto = getattr(f, "readinto", None)
            while remaining:
                if readinto is not None:
                    try:
                        got = stream.read_into(readinto, remaining)
                    except (NotImplementedError, io.UnsupportedOperation):
                        readinto = None  # a reader with only read(): copy instead
                        continue
                else:
                    data = f.read(min(CHUNK, remaining))
                    stream.add(data)
                    got = len(data)
                if not got:
                    raise LayerInputError(e.show(), "file shrank while it was being read")
                remaining -= got
                if on_bytes is not None:
                    on_bytes(got)
    except OSError as err:
        raise LayerInputError(e.show(), f"cannot read: {err.strerror}") from None
