"""An OCI image-layout directory as a Store: atomic, locked, verified.

Blobs go to a temp file under ``.regfp/tmp`` and are renamed to ``blobs/<alg>/<hex>``; ``index.json``
is rewritten to a temp file and renamed over the old one, last, under an exclusive lock, so a crash
at any point leaves a valid layout and concurrent writers never lose each other's names. Writers hold
a shared "session" lock from ``open_or_create`` on, which ``gc`` takes exclusively, so gc never deletes
a blob that a running writer has stored, or found and skipped, but not yet named. Every read is
checked against its digest and size.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import DigestMismatch, InvalidDocument, LayoutError, LockTimeout, NotFound, SizeMismatch
from ..oci import mediatypes as mt
from ..oci.canonical import canonical_json
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.manifest import Index
from ..oci.verify import read_verified
from .base import MANIFEST_LIMIT, check_size, closure
from .localblob import LocalBlobReader, link_verified

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = b'{"imageLayoutVersion":"1.0.0"}'
LOCK_WAIT = 120.0  # seconds a writer waits for another before giving up


class LayoutStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._session_fd: int | None = None
        # index.json parsed, with the (inode, size, mtime) it was read at: it is only ever replaced by
        # rename, so an unchanged stat means unchanged content and the parse can be reused.
        self._index: tuple[tuple[int, int, int], Index] | None = None

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> LayoutStore:
        p = Path(path)
        if not p.is_dir():
            raise LayoutError(str(p), "no such directory")
        layout_file = p / "oci-layout"
        try:
            doc = json.loads(layout_file.read_bytes())
        except FileNotFoundError:
            raise LayoutError(str(p), "no 'oci-layout' file: not an OCI image layout") from None
        except (OSError, ValueError) as e:
            raise LayoutError(str(p), f"unreadable 'oci-layout' file ({e})") from None
        if not isinstance(doc, dict) or doc.get("imageLayoutVersion") != "1.0.0":
            raise LayoutError(str(p), "'oci-layout' must declare imageLayoutVersion 1.0.0")
        if not (p / "index.json").is_file():
            raise LayoutError(str(p), "no index.json")
        return cls(p)

    @classmethod
    def open_or_create(cls, path: str | Path) -> LayoutStore:
        """Open the layout for writing, creating it if needed, and enter the writer session at once.

        Creation is atomic: a directory that did not exist appears complete or not at all; an existing
        empty directory gets ``oci-layout`` last, so it is a layout only once it is a whole one. The
        session starts here, not at the first write, because a writer that finds a blob already
        present (``has_blob``) and skips it relies on that blob staying until its name is set.
        """
        store = cls._open_or_create(Path(path))
        store._enter_session()
        return store

    @classmethod
    def _open_or_create(cls, p: Path) -> LayoutStore:
        if (p / "oci-layout").exists() and (p / "index.json").exists():
            return cls.open(p)
        if p.exists():
            if not p.is_dir():
                raise LayoutError(str(p), "exists and is not a directory")
            unexpected = {c.name for c in p.iterdir()} - {"oci-layout", "blobs", ".regfp", "index.json"}
            if unexpected:
                raise LayoutError(str(p), f"directory is not empty and not an OCI layout "
                                          f"(found {', '.join(sorted(unexpected)[:3])})")
            _populate(p)
            return cls.open(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".creating", dir=p.parent))
        try:
            os.chmod(staging, 0o755)
            _populate(staging)
            try:
                os.rename(staging, p)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                # Someone else created it first: theirs is as good as ours.
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cls.open(p)

    def enter_session(self) -> LayoutStore:
        """Become a writer of this layout (see ``open_or_create``); ``close`` ends it."""
        self._enter_session()
        return self

    @property
    def location(self) -> str:
        return f"OCI layout {self.path}"

    def close(self) -> None:
        if self._session_fd is not None:
            os.close(self._session_fd)
            self._session_fd = None

    def __enter__(self) -> LayoutStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- blobs --------------------------------------------------------------------------------------
    def blob_path(self, digest: Digest) -> Path:
        return self.path / "blobs" / digest.algorithm / digest.hex

    def has_blob(self, digest: Digest) -> bool:
        """Whether the blob is stored; a writer may rely on the answer only inside its session."""
        try:  # a string path: this runs once per name on every run, so pathlib's cost shows
            return stat.S_ISREG(os.stat(f"{self.path}/blobs/{digest.algorithm}/{digest.hex}").st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def open_blob(self, desc: Descriptor) -> BinaryIO:
        path = self.blob_path(desc.digest)
        try:
            raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        except FileNotFoundError:
            raise NotFound(f"blob {desc.digest}", self.location) from None
        return LocalBlobReader(raw, path, desc.digest, desc.size, f"blob {desc.digest} in {self.path}")  # type: ignore[return-value]

    def read_blob(self, desc: Descriptor, limit: int) -> bytes:
        with self.open_blob(desc) as f:
            return read_verified(f, desc.digest, desc.size, f"blob {desc.digest} in {self.path}", limit)

    def blob_sink(self, *, private: bool = False) -> _FileSink:
        self._enter_session()
        return _FileSink(self, private=private)

    def put_blob(self, stream: BinaryIO, desc: Descriptor, *, private: bool = False) -> None:
        self._enter_session()
        # A blob that is a file on this filesystem (another layout, a skopeo dir:) is hard-linked, its
        # content verified through the link before it is named (localblob's policy); else copied.
        local = getattr(stream, "local_file", None)
        if local is not None and self._link(local, desc, private):
            return
        # A stream that verifies itself against this very digest (every store's open_blob does) is
        # checked when it is read to the end, below: hashing it a second time here would be wasted.
        sink = _FileSink(self, hashing=getattr(stream, "verifies", None) != desc.digest, private=private)
        try:
            while chunk := stream.read(1 << 20):
                sink.write(chunk)
            sink.commit(desc.media_type, expected=desc)
        except BaseException:
            sink.abort()
            raise

    def _link(self, source: tuple[BinaryIO, Path], desc: Descriptor, private: bool) -> bool:
        tmp = link_verified(source, desc, self._private() / "tmp", 0o600 if private else 0o644)
        if tmp is None:
            return False
        final = self.blob_path(desc.digest)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)  # left when ``final`` was already a link to the same inode
        return True

    def get_manifest(self, desc: Descriptor) -> bytes:
        return self.read_blob(desc, MANIFEST_LIMIT)

    def put_manifest(self, data: bytes, media_type: str) -> Descriptor:
        check_size(f"the manifest ({media_type})", data, MANIFEST_LIMIT)
        sink = self.blob_sink()
        sink.write(data)
        return sink.commit(media_type)

    # -- names --------------------------------------------------------------------------------------
    def read_index(self) -> Index:
        path = self.path / "index.json"
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                key = (st.st_ino, st.st_size, st.st_mtime_ns)
                if self._index is not None and self._index[0] == key:
                    return self._index[1]
                data = f.read()
        except OSError as e:
            raise LayoutError(str(self.path), f"cannot read index.json ({e.strerror})") from None
        try:
            index = Index.parse(data, mt.OCI_INDEX, what="index.json")
        except InvalidDocument as e:  # e.what says where: "index.json entry 3"
            raise LayoutError(str(self.path), f"{e.what}: {e.reason}") from None
        self._index = (key, index)
        return index

    def names(self) -> dict[str, Descriptor]:
        return {d.ref_name: d for d in self.read_index().manifests if d.ref_name}

    def resolve(self, name: str) -> Descriptor:
        manifests = self.read_index().manifests
        matches = [d for d in manifests if d.ref_name == name]
        if not matches:
            raise NotFound(f"name {name!r}", self.location, similar_names(name, [d.ref_name for d in manifests
                                                                                  if d.ref_name]))
        if len({m.digest for m in matches}) > 1:
            raise LayoutError(str(self.path), f"name {name!r} points at {len(matches)} different manifests")
        return matches[0]

    def resolve_digest(self, digest: Digest) -> Descriptor:
        """The descriptor of a manifest by digest: from index.json, or sniffed from the blob itself."""
        for d in self.read_index().manifests:
            if d.digest == digest:
                return d.with_annotations({})
        path = self.blob_path(digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise NotFound(f"manifest {digest}", self.location) from None
        from ..oci.manifest import sniff_media_type

        data = self.read_blob(Descriptor(mt.OCI_MANIFEST, digest, size), MANIFEST_LIMIT)
        return Descriptor(sniff_media_type(data), digest, size)

    def set_names(self, updates: Mapping[str, Descriptor | None]) -> None:
        self._enter_session()  # so gc cannot remove what we are about to name
        for name, desc in updates.items():
            check_name(name)
            if desc is not None:
                closure(self, [desc])  # raises NotFound before any name moves
        # The renames that stored the blobs must be durable before a name can point at them.
        self._fsync_blob_dirs()
        with self._lock("index"):
            index = self.read_index()
            kept = [d for d in index.manifests if d.ref_name not in updates]
            for name, desc in updates.items():
                if desc is not None:
                    kept.append(desc.with_annotations({**desc.annotations, REF_NAME: name}))
            kept.sort(key=lambda d: (d.ref_name or "", d.digest.text))
            new = Index(manifests=tuple(kept), annotations=index.annotations)
            self._replace_file("index.json", new.to_bytes())

    @contextmanager
    def exclusive(self, purpose: str) -> Iterator[None]:
        """Serialize a read-modify-write that spans several steps (e.g. cutting a release) across
        processes; ``purpose`` names the lock (a word: ``rollout``)."""
        if not purpose.isalnum():
            raise ValueError(f"lock name {purpose!r} must be alphanumeric")
        self._enter_session()
        with self._lock(f"op-{purpose}"):
            yield

    # -- gc -----------------------------------------------------------------------------------------
    def gc(self, *, dry_run: bool = False) -> GcReport:
        """Delete blobs no name reaches, and temp files of dead writers.

        The base an image names in ``org.opencontainers.image.base.digest`` is kept with it while the
        layout still holds that base's manifest: rebasing (patch) finds the old base that way.
        """
        with self._lock("session", shared=False), self._lock("index"):
            roots = list(self.read_index().manifests)
            keep = closure(self, roots, missing_ok=True)
            keep = self._with_bases(keep)
            removed: list[tuple[Digest, int]] = []
            blobs = self.path / "blobs"
            for alg_dir in sorted(blobs.iterdir()) if blobs.is_dir() else []:
                if not alg_dir.is_dir():
                    continue
                for blob in sorted(alg_dir.iterdir()):
                    try:
                        digest = Digest(alg_dir.name, blob.name)
                    except Exception:  # not a blob name; leave foreign files alone
                        continue
                    if digest in keep:
                        continue
                    removed.append((digest, blob.stat().st_size))
                    if not dry_run:
                        blob.unlink()
            stale = 0
            tmp = self.path / ".regfp" / "tmp"
            if tmp.is_dir():
                for leftover in tmp.iterdir():
                    stale += 1
                    if not dry_run:
                        leftover.unlink(missing_ok=True)
        return GcReport(removed=tuple(removed), kept=len(keep), temp_files=stale)

    def _with_bases(self, keep: dict[Digest, Descriptor]) -> dict[Digest, Descriptor]:
        from ..oci.manifest import Manifest

        todo = [d for d in keep.values() if d.media_type in mt.MANIFEST_TYPES]
        while todo:
            desc = todo.pop()
            try:
                base = Manifest.parse(self.get_manifest(desc), desc.media_type).annotations.get(
                    "org.opencontainers.image.base.digest")
                digest = Digest.parse(base) if base else None
            except Exception:  # an unreadable manifest or annotation keeps nothing extra
                continue
            if digest is None or digest in keep or not self.has_blob(digest):
                continue
            try:
                found = closure(self, [self.resolve_digest(digest)], missing_ok=True)
            except Exception:
                continue
            for d, fd in found.items():
                if d not in keep:
                    keep[d] = fd
                    if fd.media_type in mt.MANIFEST_TYPES:
                        todo.append(fd)
        return keep

    # -- internals ----------------------------------------------------------------------------------
    def _fsync_blob_dirs(self) -> None:
        blobs = self.path / "blobs"
        for alg_dir in blobs.iterdir() if blobs.is_dir() else []:
            if alg_dir.is_dir():
                _fsync_dir(alg_dir)

    def _private(self) -> Path:
        d = self.path / ".regfp"
        (d / "tmp").mkdir(parents=True, exist_ok=True)
        return d

    def _enter_session(self) -> None:
        """Hold the shared session lock for this store's lifetime, so gc waits for us."""
        if self._session_fd is None:
            fd = os.open(self._private() / "session.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _flock(fd, fcntl.LOCK_SH, str(self.path))
            except BaseException:
                os.close(fd)
                raise
            self._session_fd = fd

    @contextmanager
    def _lock(self, which: str, *, shared: bool = False) -> Iterator[None]:
        if which == "session" and self._session_fd is not None:
            # Upgrading our own shared lock would deadlock with other holders; drop it first.
            os.close(self._session_fd)
            self._session_fd = None
        fd = os.open(self._private() / f"{which}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, str(self.path))
            yield
        finally:
            os.close(fd)

    def _replace_file(self, name: str, data: bytes) -> None:
        tmp = _durable_temp(self._private() / "tmp", name, data)
        try:
            os.replace(tmp, self.path / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.path)


def similar_names(name: str, names: list[str], shown: int = 5) -> str:
    """What a missing name probably meant: the names under it (``libs`` -> ``libs/base:1``), else the
    closest spellings, else a few of what there is."""
    import difflib

    unique = sorted(set(names))
    under = [n for n in unique if n.startswith((f"{name}/", f"{name}:"))]
    if under:
        more = f" and {len(under) - shown} more" if len(under) > shown else ""
        return f"names under it: {', '.join(under[:shown])}{more}"
    close = difflib.get_close_matches(name, unique, n=3, cutoff=0.6)
    if close:
        return f"did you mean {' or '.join(repr(c) for c in close)}?"
    if not unique:
        return "the layout has no names"
    more = f", ... ({len(unique)} in all)" if len(unique) > shown else ""
    return f"names: {', '.join(unique[:shown])}{more}"


@dataclass(frozen=True)
class GcReport:
    removed: tuple[tuple[Digest, int], ...]
    kept: int
    temp_files: int

    @property
    def freed(self) -> int:
        return sum(size for _, size in self.removed)


class _FileSink:
    """A blob being written: temp file + running sha256; ``commit`` renames it to its digest.

    The temp file is 0600 from its creation (``mkstemp``) whatever the umask; the blob becomes 0644,
    or stays 0600 when it is ``private`` (it holds a key: only the layout's owner may read it).
    """

    def __init__(self, store: LayoutStore, *, hashing: bool = True, private: bool = False) -> None:
        self._store = store
        self._mode = 0o600 if private else 0o644
        fd, name = tempfile.mkstemp(prefix="blob.", dir=store._private() / "tmp")
        self._tmp = Path(name)
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._hash = hashlib.sha256() if hashing else None
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(data)
        self._size += len(data)
        self._file.write(data)

    def commit(self, media_type: str, expected: Descriptor | None = None) -> Descriptor:
        if self._hash is None:  # the source stream verified the content against ``expected`` already
            if expected is None:
                self.abort()
                raise ValueError("a non-hashing blob sink needs the expected descriptor")
            digest = expected.digest
        else:
            digest = Digest("sha256", self._hash.hexdigest())
        try:
            if expected is not None:
                if self._size != expected.size:
                    raise SizeMismatch(f"blob {expected.digest}", expected.size, self._size)
                if expected.digest.algorithm == "sha256" and digest != expected.digest:
                    raise DigestMismatch(f"blob {expected.digest}", expected.digest.text, digest.text)
                digest = expected.digest if expected.digest.algorithm != "sha256" else digest
            os.fsync(self._file.fileno())
            self._file.close()
            os.chmod(self._tmp, self._mode)
            final = self._store.blob_path(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, final)
        except BaseException:
            self.abort()
            raise
        return Descriptor(media_type, digest, self._size)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


def _populate(directory: Path) -> None:
    """Fill a directory with an empty layout, ``oci-layout`` last (it is what makes it a layout).

    Each file is written in full under ``.regfp/tmp`` and hard-linked into place, which fails if the
    name exists: a concurrent writer that already created the layout and named images in it keeps
    its ``index.json`` (a rename would silently put an empty one back).
    """
    (directory / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    tmp_dir = directory / ".regfp" / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    empty_index = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []})
    for name, data in (("index.json", empty_index), ("oci-layout", LAYOUT_FILE)):
        target = directory / name
        if target.exists():
            continue
        tmp = _durable_temp(tmp_dir, name, data)
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    _fsync_dir(directory)


def _durable_temp(directory: Path, name: str, data: bytes) -> Path:
    """``data`` in a new file (mode 0644) in ``directory``, on disk before it is put in place."""
    fd, tmp = tempfile.mkstemp(prefix=f"{name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _flock(fd: int, op: int, where: str) -> None:
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise LockTimeout(where, f"another regfp process held the lock for {LOCK_WAIT:.0f} s") from None
            time.sleep(0.01)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_name(name: str) -> None:
    """Names are OCI-reference-like: ``[a-z0-9._/-]+`` repository, optional ``:tag``."""
    from ..refs import check_layout_name

    check_layout_name(name)
