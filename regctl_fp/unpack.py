"""Writing an artifact's layers into a directory safely: files by title, directory layers unpacked.

Every title is checked before anything is written: a title that is absolute, holds ``..`` or a NUL,
or collides with another is refused, so a hostile artifact cannot name a path outside the directory.
Layers are first downloaded (verified against their digests while they stream) into a private
staging directory inside the destination, tar layers unpacked there with directory descriptors and
``O_NOFOLLOW`` on every component (no write ever goes through a symlink, no device node or FIFO is
made, no hard link reaches outside), and only once every layer verified are the results renamed into
place; a failure before that leaves the destination as it was (the staging directory is removed).
"""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Literal

from .errors import InvalidInput, RegfpError, VerificationError
from .layertar import broken_as_corrupt, read_tar_stream
from .oci import mediatypes as mt
from .oci.annotation_keys import ORAS_CONTENT_DIGEST as CONTENT_DIGEST
from .oci.annotation_keys import ORAS_UNPACK as UNPACK
from .oci.annotation_keys import TITLE
from .oci.compression import decompressed
from .oci.digest import Digest
from .oci.image import Image, Layer
from .oci.streams import ByteReader
from .progress import SILENT, Progress
from .values import valueclass

CHUNK = 1 << 20
Kind = Literal["file", "directory", "tree"]
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(InvalidInput):
    """A title or tar entry that would land outside the destination, or write through a link."""

    def __init__(self, what: str, name: str, reason: str) -> None:
        super().__init__(f"refusing {what} {name!r}: {reason}; nothing was written")
        self.name = name
        self.reason = reason


@valueclass
class PullItem:
    """What one layer becomes: a file at ``target``, a directory at ``target`` (a tar layer under its
    title), or a tree unpacked at the destination's root (``target`` None)."""

    layer: Layer
    kind: Kind
    target: tuple[str, ...] | None
    compression: mt.Compression = "none"

    @property
    def shown(self) -> str:
        return "/".join(self.target) if self.target else "."


@valueclass
class Pulled:
    path: str  # relative to the destination; "." for a tree unpacked at the root
    kind: Kind
    digest: Digest
    size: int


def check_title(title: object, what: str = "title") -> tuple[str, ...]:
    """The components of a safe relative path, or ``UnsafePath``."""
    if not isinstance(title, str) or not title:
        raise UnsafePath(what, str(title), "it is empty")
    if "\0" in title:
        raise UnsafePath(what, title, "it contains a NUL byte")
    if title.startswith("/"):
        raise UnsafePath(what, title, "it is an absolute path and would write outside the destination")
    parts = tuple(p for p in title.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafePath(what, title, "it contains '..' and would write outside the destination")
    if not parts:
        raise UnsafePath(what, title, "it names the destination itself")
    return parts


def unpacks(layer: Layer) -> bool:
    """Whether a layer is a directory to unpack: oras's ``io.deis.oras.content.unpack`` says so; without
    it, a compressed tar layer is one too (how oras-py pushes directories)."""
    flag = layer.descriptor.annotations.get(UNPACK)
    if flag is not None:
        return flag.lower() == "true"
    return layer.media_type in (mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD)


def plan(image: Image, names: dict[int, str] | None = None) -> list[PullItem]:
    """One item per layer, every title checked; ``names`` overrides the title of a layer (by index)."""
    items: list[PullItem] = []
    for i, layer in enumerate(image.layers):
        title = (names or {}).get(i, layer.descriptor.annotations.get(TITLE))
        if unpacks(layer):
            compression = mt.LAYER_COMPRESSION.get(layer.media_type)
            if compression is None:
                raise InvalidInput(f"layer {i} {layer.digest} is marked for unpacking but {layer.media_type} "
                                   "is not a tar layer")
            if title is None:
                items.append(PullItem(layer, "tree", None, compression))
            else:
                items.append(PullItem(layer, "directory", check_title(title), compression))
        elif title is None:
            raise InvalidInput(f"layer {i} {layer.digest} has no {TITLE} annotation: there is no file name "
                               "to write it under")
        else:
            items.append(PullItem(layer, "file", check_title(title)))
    targets = sorted(item.target for item in items if item.target is not None)
    for a, b in itertools.pairwise(targets):
        if b[:len(a)] == a:
            what = "twice" if a == b else f"inside {'/'.join(a)!r}, which another layer writes"
            raise UnsafePath("title", "/".join(b), f"it is written {what}")
    return items


def pull(image: Image, dest: Path, *, overwrite: bool = False, names: dict[int, str] | None = None,
         progress: Progress = SILENT) -> list[Pulled]:
    """Write ``image``'s layers into ``dest`` (created if missing); see the module docstring."""
    items = plan(image, names)
    dest.mkdir(parents=True, exist_ok=True)
    with _Dir.open(dest) as root:
        if not overwrite:
            for item in items:
                if item.target is not None and root.exists(item.target):
                    raise InvalidInput(f"{dest / item.shown} already exists (use --overwrite to replace it)")
        staging = Path(tempfile.mkdtemp(prefix=".regfp-pull-", dir=dest))
        try:
            with _Dir.open(staging) as stage:
                modes: list[_DirMode] = []
                done = [_fetch(item, str(i), stage, modes, progress) for i, item in enumerate(items)]
                for i, item in enumerate(items):
                    if item.target is None and not overwrite:
                        with stage.child(str(i)) as tree:
                            for name in tree.names():
                                if root.exists((name,)):
                                    raise InvalidInput(f"{dest / name} already exists (use --overwrite to "
                                                       "replace it)")
                for i, item in enumerate(items):
                    _place(item, str(i), stage, root)
            # Directory modes last, once nothing more is written below them (a read-only one included).
            for parts, mode, mtime in sorted(modes, key=lambda d: -len(d[0])):
                with root.walk(parts, create=False) as d:
                    os.chmod(d.fd, mode)
                    os.utime(d.fd, (mtime, mtime))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return done


_DirMode = tuple[tuple[str, ...], int, int]  # path below the destination, mode, mtime


def _fetch(item: PullItem, name: str, stage: _Dir, modes: list[_DirMode], progress: Progress) -> Pulled:
    layer = item.layer
    on_bytes = progress.task(f"pull {item.shown}", layer.size)
    if item.kind == "file":
        with layer.open() as src, stage.create_file(name, 0o644) as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)
                on_bytes(len(chunk))
        return Pulled(item.shown, "file", layer.digest, layer.size)
    with stage.make_dir(name) as into:
        _untar(layer, item, into, modes, on_bytes)
    return Pulled(item.shown, item.kind, layer.digest, layer.size)


def _place(item: PullItem, name: str, stage: _Dir, root: _Dir) -> None:
    """Rename what was staged into its place: the staged file, the titled directory, or (a tree) each
    top-level entry; replaced targets are removed first (without following links)."""
    if item.kind == "tree":
        with stage.child(name) as tree:
            for child in tree.names():
                root.replace_from(tree, child, (child,))
        return
    if item.kind == "file":
        root.replace_from(stage, name, item.target or ())
        return
    assert item.target is not None
    with stage.child(name) as tree, tree.walk(item.target[:-1], create=False) as holder:
        if not holder.is_dir(item.target[-1]):
            raise InvalidInput(f"layer {item.layer.digest} is titled {item.shown!r} but holds no directory "
                               "of that name")
        root.replace_from(holder, item.target[-1], item.target)


# -- unpacking one tar layer -----------------------------------------------------------------------------
class _Counter(io.RawIOBase):
    """The raw blob on its way to the decompressor: counts bytes for progress."""

    def __init__(self, raw: ByteReader, on_bytes: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._raw.read(len(buffer))
        buffer[:len(chunk)] = chunk
        self._on_bytes(len(chunk))
        return len(chunk)


class _Hashing:
    """The decompressed tar stream, hashed as tarfile reads it (for oras's content digest)."""

    def __init__(self, stream: ByteReader) -> None:
        self._stream = stream
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        chunk = self._stream.read(n)
        self.hash.update(chunk)
        return chunk


def _untar(layer: Layer, item: PullItem, into: _Dir, modes: list[_DirMode],
           on_bytes: Callable[[int], None]) -> None:
    prefix = item.target
    files: set[tuple[str, ...]] = set()
    seen: dict[tuple[str, ...], str] = {}
    with layer.open() as raw:
        counted = io.BufferedReader(_Counter(raw, on_bytes), CHUNK)
        plain = _Hashing(decompressed(counted, item.compression))
        with broken_as_corrupt(layer, counted):  # a cut-short tar is CorruptLayer, naming the layer
            with read_tar_stream(plain) as tar:
                for member in tar:
                    parts = _entry_parts(member, prefix)
                    if parts is None:
                        continue
                    _check_repeat(parts, member, seen)
                    _extract(tar, member, parts, into, files, modes)
            while plain.read(CHUNK):  # the tar's trailing padding still counts toward its digest
                pass
        while counted.read(CHUNK):  # read to the end, so the blob's own digest is checked
            pass
    expected = layer.descriptor.annotations.get(CONTENT_DIGEST)
    if expected is not None and f"sha256:{plain.hash.hexdigest()}" != expected:
        raise VerificationError(f"layer {layer.digest}: its unpacked tar hashes to sha256:"
                                f"{plain.hash.hexdigest()}, the {CONTENT_DIGEST} annotation says {expected}")


def _entry_parts(member: tarfile.TarInfo, prefix: tuple[str, ...] | None) -> tuple[str, ...] | None:
    name = member.name
    if member.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
        return None
    if name.startswith("/"):
        raise UnsafePath("tar entry", name, "it is an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if parts:
        parts = check_title(name, "tar entry")
    else:
        if member.isdir():
            return None  # "./": the root itself
        raise UnsafePath("tar entry", name, "it names the root of the layer")
    if prefix is not None and parts[:len(prefix)] != prefix:
        raise UnsafePath("tar entry", name, f"the layer is titled {'/'.join(prefix)!r} and this entry is "
                                            "outside it")
    return parts


def _check_repeat(parts: tuple[str, ...], member: tarfile.TarInfo, seen: dict[tuple[str, ...], str]) -> None:
    kind = "dir" if member.isdir() else "other"
    before = seen.get(parts)
    if before is not None and not (before == kind == "dir"):
        raise UnsafePath("tar entry", member.name, "it appears twice in the layer")
    seen[parts] = kind


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, parts: tuple[str, ...], into: _Dir,
             files: set[tuple[str, ...]], modes: list[_DirMode]) -> None:
    mode = stat.S_IMODE(member.mode) & ~(stat.S_ISUID | stat.S_ISGID)
    mtime = int(member.mtime)
    with into.walk(parts[:-1], create=True, member=member.name) as parent:
        name = parts[-1]
        if member.isdir():
            parent.mkdir_if_missing(name, member.name)
            modes.append((parts, mode, mtime))
        elif member.isreg():
            source = tar.extractfile(member)
            assert source is not None
            with parent.create_file(name, mode) as out:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
                out.flush()
                os.utime(out.fileno(), (mtime, mtime))
            files.add(parts)
        elif member.issym():
            if "\0" in member.linkname or not member.linkname:
                raise UnsafePath("tar entry", member.name, "its symlink target is empty or holds a NUL")
            try:
                os.symlink(member.linkname, name, dir_fd=parent.fd)
            except FileExistsError:
                raise UnsafePath("tar entry", member.name, "something already exists there") from None
            os.utime(name, (mtime, mtime), dir_fd=parent.fd, follow_symlinks=False)
        elif member.islnk():
            target = check_title(member.linkname, "hard link target")
            if target not in files:
                raise UnsafePath("tar entry", member.name, f"it hard-links to {member.linkname!r}, which is not a "
                                                           "file unpacked earlier from the same layer")
            with into.walk(target[:-1], create=False) as src:
                os.link(target[-1], name, src_dir_fd=src.fd, dst_dir_fd=parent.fd, follow_symlinks=False)
            files.add(parts)
        else:
            raise UnsafePath("tar entry", member.name, "it is a device node, FIFO or other special file; "
                                                       "only files, directories and links are unpacked")


# -- directory descriptors: every step opened with O_NOFOLLOW ---------------------------------------------
class _Dir:
    """An open directory; paths below it are reached one component at a time, never through a link."""

    def __init__(self, fd: int, shown: str) -> None:
        self.fd = fd
        self.shown = shown

    @classmethod
    def open(cls, path: Path) -> _Dir:
        # The destination itself may be reached through links the user chose; what is below it may not.
        return cls(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), str(path))

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> _Dir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def child(self, name: str) -> _Dir:
        try:
            return _Dir(os.open(name, _DIR_FLAGS, dir_fd=self.fd), f"{self.shown}/{name}")
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath("path", f"{self.shown}/{name}", "a component is a symlink or not a directory, "
                                                                  "and writes never go through links") from None
            raise

    @contextmanager
    def walk(self, parts: tuple[str, ...], *, create: bool, member: str = "") -> Iterator[_Dir]:
        current = _Dir(os.dup(self.fd), self.shown)
        try:
            for part in parts:
                if create:
                    current.mkdir_if_missing(part, member or "/".join(parts))
                nxt = current.child(part)
                current.close()
                current = nxt
            yield current
        finally:
            current.close()

    def mkdir_if_missing(self, name: str, shown: str) -> None:
        try:
            os.mkdir(name, 0o755, dir_fd=self.fd)  # owner-writable while unpacking; entry modes set last
        except FileExistsError:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafePath("tar entry", shown, "a directory is needed where the layer already put a "
                                                     "file or symlink") from None

    @contextmanager
    def make_dir(self, name: str) -> Iterator[_Dir]:
        os.mkdir(name, 0o700, dir_fd=self.fd)
        with self.child(name) as d:
            yield d

    def create_file(self, name: str, mode: int) -> BinaryIO:
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=self.fd)
        except FileExistsError:
            raise UnsafePath("tar entry", f"{self.shown}/{name}", "something already exists there") from None
        os.fchmod(fd, mode)
        return os.fdopen(fd, "wb")

    def names(self) -> list[str]:
        return sorted(os.listdir(self.fd))

    def exists(self, parts: tuple[str, ...]) -> bool:
        try:
            with self.walk(parts[:-1], create=False) as parent:
                os.stat(parts[-1], dir_fd=parent.fd, follow_symlinks=False)
            return True
        except FileNotFoundError:
            return False
        except UnsafePath:
            return True  # a link or file where a directory would be: in the way, so it "exists"

    def is_dir(self, name: str) -> bool:
        try:
            return stat.S_ISDIR(os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False

    def replace_from(self, src: _Dir, src_name: str, parts: tuple[str, ...]) -> None:
        """Rename ``src/src_name`` to ``parts`` below this directory, replacing what is there."""
        try:
            with self.walk(parts[:-1], create=True) as parent:
                name = parts[-1]
                try:
                    st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                if st is not None and stat.S_ISDIR(st.st_mode):
                    with parent.child(name) as old:
                        _empty(old)
                    os.rmdir(name, dir_fd=parent.fd)
                elif st is not None and stat.S_ISDIR(os.stat(src_name, dir_fd=src.fd, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=parent.fd)  # a file or link where a directory goes
                os.rename(src_name, name, src_dir_fd=src.fd, dst_dir_fd=parent.fd)
        except UnsafePath:
            raise
        except OSError as e:
            raise RegfpError(f"cannot move {'/'.join(parts)} into {self.shown}: {e.strerror}") from None


def _empty(directory: _Dir) -> None:
    """Remove everything below ``directory`` without following links (what ``rm -rf`` does)."""
    for name in directory.names():
        st = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            with directory.child(name) as sub:
                os.chmod(sub.fd, 0o700)
                _empty(sub)
            os.rmdir(name, dir_fd=directory.fd)
        else:
            os.unlink(name, dir_fd=directory.fd)
