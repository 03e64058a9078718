"""An OCI image-layout directory as a Store: atomic, locked, verified.

Blobs go to a temp file under ``.regfp/tmp`` and are renamed to ``blobs/<alg>/<hex>``; ``index.json``
is rewritten to a temp file and renamed over the old one, last, under an exclusive lock, so a crash
at any point leaves a valid layout and concurrent writers never lose each other's names. Writers hold
a shared "session" lock from ``open_or_create`` on, which ``gc`` takes exclusively, so gc never deletes
a blob that a running writer has stored, or found and skipped, but not yet named. Every read is
checked against its digest and size.

A temp file is flock-ed by its writer from its creation until it is renamed or removed, so a temp
whose lock can be taken was left by a writer that died (killed, or the machine went down): the next
writer to open the layout removes those (``_sweep_abandoned``), and gc does too.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import (
    DigestMismatch,
    InputFileError,
    InvalidDigest,
    InvalidDocument,
    LayoutError,
    LockTimeout,
    NotFound,
    SizeMismatch,
)
from ..oci import mediatypes as mt
from ..oci.annotation_keys import SUBJECT
from ..oci.canonical import canonical_json
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.manifest import Index, parse_json
from ..oci.streams import ByteReader
from ..oci.verify import VerifyingReader, read_verified
from ..regularfile import open_regular, read_regular
from ..values import valueclass
from .base import MANIFEST_LIMIT, check_size, closure
from .indexfile import REF_NAME, Names, entry_annotation, entry_order, merged, spliced
from .localblob import LocalBlobReader, link_verified

LAYOUT_FILE = b'{"imageLayoutVersion":"1.0.0"}'
LOCK_WAIT = 120.0  # seconds a writer waits for another before giving up
# index.json is read whole: about 100,000 names fit, and a bigger one is damage, not a layout.
INDEX_LIMIT = 32 << 20


class LayoutStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._session_fd: int | None = None
        self._private_checked = False
        self._swept = 0  # abandoned temp files this store removed when its writer session began
        # index.json parsed, with the (inode, size, mtime) it was read at: it is only ever replaced by
        # rename, so an unchanged stat means unchanged content and the parse can be reused.
        # ... and its text, which a write edits in place where it can (indexfile.spliced).
        self._doc: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self._text = b""
        self._index: Index | None = None  # the parsed forms of _doc, made when first asked for
        self._names: Names | None = None
        self._referrers: dict[Digest, list[Descriptor]] | None = None  # by subject, made when first asked for
        # Blobs this writer has stored but not yet made durable: their temp files, by digest. They are
        # readable through this store at once and move to blobs/ together in ``flush`` (before any name
        # can point at them), so a file under its digest in blobs/ is always complete and on disk.
        self._pending: dict[Digest, tuple[Path, BinaryIO]] = {}

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> LayoutStore:
        p = Path(path)
        if not p.is_dir():
            raise LayoutError(str(p), "no such directory")
        layout_file = p / "oci-layout"
        try:
            doc = json.loads(read_regular(layout_file, 64 << 10, "layout's oci-layout file"))
        except FileNotFoundError:
            raise LayoutError(str(p), "no 'oci-layout' file: not an OCI image layout") from None
        except InputFileError as e:
            raise LayoutError(str(p), f"'oci-layout' {e.reason}") from None
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
        self.flush()
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
        if digest in self._pending:
            return True
        try:  # a string path: this runs once per name on every run, so pathlib's cost shows
            return stat.S_ISREG(os.stat(f"{self.path}/blobs/{digest.algorithm}/{digest.hex}").st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def _readable(self, digest: Digest) -> Path:
        pending = self._pending.get(digest)
        return pending[0] if pending is not None else self.blob_path(digest)

    def open_blob(self, desc: Descriptor) -> VerifyingReader:
        path = self._readable(desc.digest)
        try:
            # Not following a link: a blob is the layout's own file, never one planted elsewhere.
            raw = open_regular(path, follow=False)
        except FileNotFoundError:
            raise NotFound(f"blob {desc.digest}", self.location) from None
        except InputFileError as e:
            raise LayoutError(str(self.path), f"blob {desc.digest} {e.reason}") from None
        return LocalBlobReader(raw, path, desc.digest, desc.size, f"blob {desc.digest} in {self.path}")

    def read_blob(self, desc: Descriptor, limit: int) -> bytes:
        with self.open_blob(desc) as f:
            return read_verified(f, desc.digest, desc.size, f"blob {desc.digest} in {self.path}", limit)

    def blob_sink(self, *, private: bool = False) -> _FileSink:
        self._enter_session()
        return _FileSink(self, private=private)

    def put_blob(self, stream: ByteReader, desc: Descriptor, *, private: bool = False) -> None:
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
    def _document(self) -> dict[str, Any]:
        """index.json as JSON, checked only at the top level (entries are checked when used), read
        again only when its (inode, size, mtime) changed: it is only ever replaced by rename."""
        path = self.path / "index.json"
        try:
            with open_regular(path) as f:
                st = os.fstat(f.fileno())
                key = (st.st_ino, st.st_size, st.st_mtime_ns)
                if self._doc is not None and self._doc[0] == key:
                    return self._doc[1]
                if st.st_size > INDEX_LIMIT:
                    raise LayoutError(str(self.path), f"index.json is {st.st_size} bytes, over the limit of "
                                                      f"{INDEX_LIMIT >> 20} MiB for a layout's index")
                data = f.read(INDEX_LIMIT + 1)
        except InputFileError as e:
            raise LayoutError(str(self.path), f"index.json {e.reason}") from None
        except OSError as e:
            raise LayoutError(str(self.path), f"cannot read index.json ({e.strerror})") from None
        if len(data) > INDEX_LIMIT:
            raise LayoutError(str(self.path), f"index.json grew over the limit of {INDEX_LIMIT >> 20} MiB "
                                              "while it was read")
        try:
            doc = dict(parse_json(data, "index.json"))
        except InvalidDocument as e:
            raise LayoutError(str(self.path), f"{e.what}: {e.reason}") from None
        if doc.get("schemaVersion") != 2 or not isinstance(doc.get("manifests"), list):
            raise LayoutError(str(self.path), "index.json: not an OCI image index (schemaVersion 2, manifests)")
        self._doc = (key, doc)
        self._text = data
        self._index = None
        self._names = None
        self._referrers = None
        return doc

    def read_index(self) -> Index:
        doc = self._document()
        if self._index is None:
            try:
                self._index = Index.from_doc(doc, mt.OCI_INDEX, what="index.json")
            except InvalidDocument as e:  # e.what says where: "index.json entry 3"
                raise LayoutError(str(self.path), f"{e.what}: {e.reason}") from None
        return self._index

    def names(self) -> Names:
        """Every name and its index entry; an entry is parsed (and checked) when it is looked up."""
        doc = self._document()
        if self._names is None:
            self._names = Names(doc["manifests"], str(self.path))
        return self._names

    def resolve(self, name: str) -> Descriptor:
        names = self.names()
        if name in names and name not in names.repeated:
            return names[name]
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
        path = self._readable(digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise NotFound(f"manifest {digest}", self.location) from None
        from ..oci.manifest import sniff_media_type

        data = self.read_blob(Descriptor(mt.OCI_MANIFEST, digest, size), MANIFEST_LIMIT)
        return Descriptor(sniff_media_type(data), digest, size)

    def flush(self) -> None:
        """Make every blob this writer stored durable and move it into blobs/: the data first (one
        ``syncfs`` for many blobs, an ``fsync`` each for a few), then the renames, then the directories.
        Each temp file stays open, and so locked as in use, until it is renamed."""
        if not self._pending:
            return
        pending = list(self._pending.items())
        try:
            if len(pending) < _SYNCFS_FROM or not _syncfs(self.path):
                for _, (_, f) in pending:
                    os.fsync(f.fileno())
            made: set[Path] = set()
            for digest, (tmp, f) in pending:
                final = self.blob_path(digest)
                if final.parent not in made:
                    final.parent.mkdir(parents=True, exist_ok=True)
                    made.add(final.parent)
                os.replace(tmp, final)
                f.close()
                del self._pending[digest]
            self._fsync_blob_dirs()
        except OSError as e:
            raise self.write_failed(e) from None

    def _add_pending(self, digest: Digest, tmp: Path, file: BinaryIO) -> None:
        old = self._pending.get(digest)
        self._pending[digest] = (tmp, file)
        if old is not None:  # the same bytes twice: the newer copy is kept
            old[0].unlink(missing_ok=True)
            old[1].close()
        if len(self._pending) >= _PENDING_MAX:  # each holds an open file: keep well below the fd limit
            self.flush()

    def referrers(self, subject: Digest, artifact_type: str | None = None) -> list[Descriptor]:
        """The referrers of ``subject`` listed in index.json (as a referrers API lists them: artifactType
        and the referrer's annotations), optionally only those of ``artifact_type``. The first call after
        index.json was (re)read groups every referrer entry by subject in one pass; later ones are lookups."""
        self._document()
        if self._referrers is None:
            self._referrers = _group_referrers(self._document()["manifests"], str(self.path))
        return [d for d in self._referrers.get(subject, ())
                if artifact_type is None or d.artifact_type == artifact_type]

    def add_referrers(self, referrers: Iterable[Descriptor]) -> None:
        """List stored referrer manifests in index.json (see ``set_names``), moving no name."""
        self.set_names({}, referrers=referrers)

    def set_names(self, updates: Mapping[str, Descriptor | None], *, referrers: Iterable[Descriptor] = ()) -> None:
        """Move (or with ``None`` remove) names, and list ``referrers`` (stored manifests that have a
        ``subject``), all in one replacement of index.json. A referrer's entry has no name: it carries
        its subject's digest (``dev.regfp.subject``), its artifactType and its annotations, so gc keeps it
        exactly as long as its subject and ``referrers`` lists it without reading a manifest."""
        self._enter_session()  # so gc cannot remove what we are about to name
        self.flush()  # everything a name can point at is on disk and in blobs/ first
        for name, desc in updates.items():
            check_name(name)
            if desc is not None:
                closure(self, [desc])  # raises NotFound before any name moves
        new_referrers = [self._referrer_entry(d) for d in referrers]
        with self._lock("index"):
            doc = self._document()  # read again if another writer replaced it meanwhile
            names = self.names()
            wanted = {name: desc.with_annotations({**desc.annotations, REF_NAME: name}).to_dict()
                      if desc is not None else None for name, desc in updates.items()}
            entries, added, edit = merged(doc["manifests"], names, wanted)  # in entry_order
            if new_referrers:
                listed = {_referrer_key(e) for e in entries}
                for entry in new_referrers:
                    if _referrer_key(entry) not in listed:
                        listed.add(_referrer_key(entry))
                        bisect.insort(entries, entry, key=entry_order)
                        edit.added.append(entry)
            new = {**doc, "manifests": entries}
            plain_top = set(doc) <= {"schemaVersion", "mediaType", "manifests", "annotations", "artifactType"}
            text = (spliced(self._text, doc["manifests"], entries, edit) if plain_top else None) or canonical_json(new)
            self._replace_file("index.json", text)
            # What we wrote is what the names hold until someone else replaces the file (its stat changes).
            st = os.stat(self.path / "index.json")
            self._doc = ((st.st_ino, st.st_size, st.st_mtime_ns), new)
            self._text = text
            self._index = None
            self._names = names.updated(entries, set(updates), added, ordered=True, edit=edit)
            self._referrers = None

    def _referrer_entry(self, desc: Descriptor) -> dict[str, Any]:
        """index.json's entry for a stored referrer manifest (checked complete, like a name's target)."""
        from ..oci.manifest import Manifest
        from ..oci.referrer import referrer_descriptor

        if desc.media_type not in mt.MANIFEST_TYPES | mt.INDEX_TYPES:
            raise LayoutError(str(self.path), f"referrer {desc.digest} is a {desc.media_type}, not a manifest")
        data = self.get_manifest(desc)
        try:
            document: Manifest | Index = (Index.parse(data, desc.media_type) if desc.media_type in mt.INDEX_TYPES
                                          else Manifest.parse(data, desc.media_type))
        except InvalidDocument as e:
            raise LayoutError(str(self.path), f"referrer {desc.digest}: {e.what}: {e.reason}") from None
        if document.subject is None:
            raise LayoutError(str(self.path), f"{desc.digest} has no subject: it is not a referrer")
        closure(self, [desc])
        entry = referrer_descriptor(Descriptor(desc.media_type, desc.digest, desc.size), document)
        annotations = {k: v for k, v in entry.annotations.items() if k != REF_NAME}
        return entry.with_annotations({**annotations, SUBJECT: document.subject.digest.text}).to_dict()

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
    def gc(self, *, dry_run: bool = False, dropping: Collection[str] = ()) -> GcReport:
        """Delete blobs no name reaches, and temp files of dead writers.

        ``dropping`` names count as gone already: a dry run that drops names (expired debug images)
        reports exactly what the real run, which removes those names first, then deletes. The base an
        image names in ``org.opencontainers.image.base.digest`` is kept with it while the layout still
        holds that base's manifest: rebasing (patch) finds the old base that way. Only the layout's own
        files are touched: a ``blobs`` directory that is a link elsewhere is refused (``blob_dirs``), and
        a link in it is removed as a link, never followed.
        """
        with self._lock("session", shared=False), self._lock("index"):
            manifests = self.read_index().manifests
            # Referrers are not roots: each is kept while what its subject annotation names is kept.
            # (An entry whose subject annotation is not a digest is not regfp's: a root, as before.)
            referrers = [d for d in manifests if _subject_digest(d) is not None]
            roots = [d for d in manifests if _subject_digest(d) is None
                     and (d.ref_name is None or d.ref_name not in dropping)]
            keep = closure(self, roots, missing_ok=True)
            keep = self._with_bases(keep)
            keep, orphans = self._with_referrers(keep, referrers)
            if orphans and not dry_run:  # their entries go first: index.json never lists a missing blob
                doc = self._document()
                gone = {d.digest.text for d in orphans}
                entries = [e for e in doc["manifests"] if not (_subject_of_entry(e) and e.get("digest") in gone)]
                self._replace_file("index.json", canonical_json({**doc, "manifests": entries}))
            removed: list[tuple[Digest, int]] = []
            for alg_dir in self.blob_dirs():
                for blob in sorted(alg_dir.iterdir()):
                    try:
                        digest = Digest(alg_dir.name, blob.name)
                    except Exception:  # not a blob name; leave foreign files alone
                        continue
                    st = blob.lstat()
                    if digest in keep or not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                        continue
                    removed.append((digest, st.st_size))
                    if not dry_run:
                        blob.unlink()
            leftovers = _sweep_abandoned(self._private(), str(self.path), remove=not dry_run)
        # Counting those this store's own session swept already (dropping names first makes it a
        # writer), so a run reports the same temp files as its dry run did.
        return GcReport(removed=tuple(removed), kept=len(keep), temp_files=leftovers + self._swept,
                        referrers=tuple(d.digest for d in orphans))

    def _with_referrers(self, keep: dict[Digest, Descriptor], referrers: list[Descriptor]
                        ) -> tuple[dict[Digest, Descriptor], list[Descriptor]]:
        """``keep`` grown by every referrer whose subject it holds (and what that referrer reaches, so a
        signature of a kept SBOM is kept too); and the referrers left out, whose subject is gone."""
        waiting = list(referrers)
        while True:
            ready = [d for d in waiting if _subject_digest(d) in keep]
            if not ready:
                return keep, waiting
            waiting = [d for d in waiting if d not in ready]
            for digest, desc in closure(self, [d.with_annotations({}) for d in ready], missing_ok=True).items():
                keep.setdefault(digest, desc)

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

    def blob_dirs(self) -> list[Path]:
        """The layout's own ``blobs/<algorithm>`` directories, for code that walks or deletes blob files.

        A ``blobs`` or ``blobs/<algorithm>`` that is a symbolic link is refused: walking it would verify
        or delete files that are not the layout's (a link to a shared blob store, or a planted one).
        """
        blobs = self.path / "blobs"
        _own_directory(blobs, self.path, missing_ok=True)
        found = []
        for alg_dir in sorted(blobs.iterdir()) if blobs.is_dir() else []:
            if alg_dir.is_symlink():
                _own_directory(alg_dir, self.path)  # raises
            if alg_dir.is_dir():
                found.append(alg_dir)
        return found

    # -- internals ----------------------------------------------------------------------------------
    def _fsync_blob_dirs(self) -> None:
        blobs = self.path / "blobs"
        for alg_dir in blobs.iterdir() if blobs.is_dir() else []:
            if alg_dir.is_dir():
                _fsync_dir(alg_dir)

    def _private(self) -> Path:
        d = self.path / ".regfp"
        if not self._private_checked:  # once per store: every blob written asks
            (d / "tmp").mkdir(parents=True, exist_ok=True)
            # Locks and temp files go here, and gc empties tmp: a link to elsewhere would put them there.
            _own_directory(d, self.path)
            _own_directory(d / "tmp", self.path)
            self._private_checked = True
        return d

    def _enter_session(self) -> None:
        """Hold the shared session lock for this store's lifetime, so gc waits for us; on entering,
        remove what writers that died left in ``.regfp/tmp``."""
        if self._session_fd is None:
            fd = os.open(self._private() / "session.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                _flock(fd, fcntl.LOCK_SH, str(self.path))
            except BaseException:
                os.close(fd)
                raise
            self._session_fd = fd
            try:
                self._swept += _sweep_abandoned(self._private(), str(self.path), remove=True)
            except OSError:
                pass  # only tidying: a temp that cannot be removed now is gc's, or the next writer's

    @contextmanager
    def _lock(self, which: str, *, shared: bool = False) -> Iterator[None]:
        if which == "session" and self._session_fd is not None:
            # Upgrading our own shared lock would deadlock with other holders; drop it first.
            os.close(self._session_fd)
            self._session_fd = None
        with _locked(self._private() / f"{which}.lock", fcntl.LOCK_SH if shared else fcntl.LOCK_EX, str(self.path)):
            yield

    def _replace_file(self, name: str, data: bytes) -> None:
        try:
            fd, tmp = _durable_temp(self._private(), name, data, str(self.path))
            try:
                os.replace(tmp, self.path / name)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            finally:
                os.close(fd)
            _fsync_dir(self.path)
        except OSError as e:
            raise self.write_failed(e, name) from None

    def write_failed(self, e: OSError, what: str = "a blob") -> LayoutError:
        """The error for a failed write into the layout: the layout's fault, never the input's (a full
        disk must not read as "cannot read" on the file being copied), so exit 1 naming the layout."""
        return LayoutError(str(self.path), f"cannot write {what}: {e.strerror or e}")


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


@valueclass
class GcReport:
    removed: tuple[tuple[Digest, int], ...]
    kept: int
    temp_files: int
    referrers: tuple[Digest, ...] = ()  # referrer entries dropped from index.json: their subject was gone

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
        try:
            fd, self._tmp = _new_temp(store._private(), "blob.", str(store.path))
        except OSError as e:
            raise store.write_failed(e) from None
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._hash = hashlib.sha256() if hashing else None
        self._size = 0
        self._written_back = 0  # bytes handed to the kernel's writeback so far (``_start_writeback``)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(data)
        self._size += len(data)
        view = memoryview(data)
        try:
            # Unbuffered, so a write may be short (a disk filling up takes what fits): write the rest,
            # which then fails with the reason, rather than commit a blob that lacks its tail.
            while view:
                view = view[self._file.write(view) or 0:]
        except OSError as e:
            raise self._store.write_failed(e) from None
        if self._size - self._written_back >= _WRITEBACK_STEP:
            _start_writeback(self._file.fileno(), self._written_back, self._size - self._written_back)
            self._written_back = self._size

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
            os.chmod(self._tmp, self._mode)
            # The same bytes stored already (a private blob still replaces a readable copy): ours is not needed.
            if self._mode != 0o600 and self._store.has_blob(digest):
                self.abort()
            else:
                # Pending until the store's next flush; the file stays open (and so locked, marked as in
                # use) until it is renamed into blobs/.
                self._store._add_pending(digest, self._tmp, self._file)
        except OSError as e:
            self.abort()
            raise self._store.write_failed(e) from None
        except BaseException:
            self.abort()
            raise
        return Descriptor(media_type, digest, self._size)

    def abort(self) -> None:
        self._tmp.unlink(missing_ok=True)  # before closing, which releases the lock that marks it in use
        if not self._file.closed:
            self._file.close()


def _subject_of_entry(entry: object) -> str | None:
    return entry_annotation(entry, SUBJECT)


def _subject_digest(desc: Descriptor) -> Digest | None:
    try:
        return Digest.parse(desc.annotations[SUBJECT]) if SUBJECT in desc.annotations else None
    except InvalidDigest:
        return None


def _referrer_key(entry: object) -> tuple[str, str] | None:
    """(subject, digest) of a referrer entry: the same referrer is listed once."""
    subject = _subject_of_entry(entry)
    if subject is None or not isinstance(entry, dict):
        return None
    return subject, str(entry.get("digest"))


def _group_referrers(entries: list[Any], where: str) -> dict[Digest, list[Descriptor]]:
    """index.json's referrer entries by subject digest, each without regfp's subject annotation."""
    found: dict[Digest, list[Descriptor]] = {}
    for i, entry in enumerate(entries):
        subject = _subject_of_entry(entry)
        if subject is None:
            continue
        try:
            desc = Descriptor.from_dict(entry, f"index.json entry {i}")
            key = Digest.parse(subject)
        except (InvalidDocument, InvalidDigest) as e:
            raise LayoutError(where, f"index.json entry {i}: not a referrer entry ({e})") from None
        found.setdefault(key, []).append(
            desc.with_annotations({k: v for k, v in desc.annotations.items() if k != SUBJECT}))
    for listed in found.values():
        listed.sort(key=lambda d: d.digest)
    return found



_SYNCFS_FROM = 8  # pending blobs from which one syncfs of the filesystem beats an fsync of each
# A big blob's data is handed to the disk every this many bytes while it is written, so the fsync before
# its rename waits only for the tail: with much RAM the kernel would otherwise start no writeback at all
# before that fsync (dirty_background_ratio), and a 200 MiB pull would wait ~0.1-0.2 s for it at the end.
_WRITEBACK_STEP = 8 << 20
_sync_file_range: Any = None  # libc's, once looked up; False where there is none


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """``sync_file_range(SYNC_FILE_RANGE_WRITE)``: start writing the range to disk, without waiting
    (durability still comes from the fsync in ``flush``). A no-op where Linux's call is missing."""
    global _sync_file_range
    if _sync_file_range is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.sync_file_range
            fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
            _sync_file_range = fn
        except (OSError, AttributeError):
            _sync_file_range = False
    if _sync_file_range:
        _sync_file_range(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; a failure only loses the head start
_PENDING_MAX = 256  # pending blobs at most: each keeps its temp file open


def _syncfs(path: Path) -> bool:
    """``syncfs(2)`` on the filesystem holding ``path`` (Linux); False where it is not available."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            return int(libc.syncfs(fd)) == 0
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        return False


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
        fd, tmp = _durable_temp(directory / ".regfp", name, data, str(directory))
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
            os.close(fd)
    _fsync_dir(directory)


def _new_temp(private: Path, prefix: str, where: str) -> tuple[int, Path]:
    """A new file in ``private/tmp``, open for writing and flock-ed while that descriptor stays open.

    Creating it and taking its lock happen under the shared ``tmp.lock``, which ``_sweep_abandoned``
    takes exclusively: so a sweep never finds a temp file in the instant before its writer locked it.
    """
    with _locked(private / "tmp.lock", fcntl.LOCK_SH, where):
        fd, name = tempfile.mkstemp(prefix=prefix, dir=private / "tmp")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else can hold it
        except BaseException:
            os.close(fd)
            os.unlink(name)
            raise
    return fd, Path(name)


def _sweep_abandoned(private: Path, where: str, *, remove: bool) -> int:
    """The temp files in ``private/tmp`` whose writer is gone (their lock can be taken): removed if
    ``remove``; how many. Links and directories there are not regfp's and are left alone."""
    tmp = private / "tmp"
    found = 0
    with _locked(private / "tmp.lock", fcntl.LOCK_EX, where):
        for entry in os.scandir(tmp):
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive
                found += 1
                if remove:
                    os.unlink(entry.path)
            finally:
                os.close(fd)
    return found


def _durable_temp(private: Path, name: str, data: bytes, where: str) -> tuple[int, Path]:
    """``data`` in a new temp file (mode 0644), on disk before it is put in place; the caller closes the
    returned descriptor once the file has been renamed or linked (until then it is marked in use)."""
    fd, tmp = _new_temp(private, f"{name}.", where)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.fchmod(fd, 0o644)
    except BaseException:
        tmp.unlink(missing_ok=True)
        os.close(fd)
        raise
    return fd, tmp


@contextmanager
def _locked(path: Path, op: int, where: str) -> Iterator[None]:
    """Hold the flock ``op`` on the lock file ``path`` (created if needed) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        _flock(fd, op, where)
        yield
    finally:
        os.close(fd)


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


def _own_directory(path: Path, layout: Path, *, missing_ok: bool = False) -> None:
    """Refuse ``path`` unless it is a real directory (not a link to one) or, with ``missing_ok``, absent."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        if missing_ok:
            return
        raise LayoutError(str(layout), f"{path.relative_to(layout)} is missing") from None
    if stat.S_ISLNK(st.st_mode):
        raise LayoutError(str(layout), f"{path.relative_to(layout)} is a symbolic link (to {os.readlink(path)}); "
                                       "gc and verify work only on the layout's own files")
    if not stat.S_ISDIR(st.st_mode):
        raise LayoutError(str(layout), f"{path.relative_to(layout)} is not a directory")


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
