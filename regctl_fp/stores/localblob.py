"""Blobs that are whole files on this machine (in an OCI layout or a skopeo ``dir:``), and storing one
into a layout on the same filesystem by a hard link instead of a copy.

A blob file is immutable and named by its digest (regfp and the other OCI tools replace files by
rename, never write into one), so two layouts can share its inode. Policy, kept here:

- Verified while linking: the link is made under a temporary name, the inode's content is hashed
  through the already-open file, and only a match is renamed into place; a mismatch removes the
  link and raises, exactly as a copy would. A corrupt source is never linked silently, and what is
  hashed is the very inode that gets the name (no window between checking a path and linking it).
- Only an inode whose permission bits are exactly what the destination wants (0644, or 0600 for the
  blobs of an image carrying a secret) and that this user owns is linked: a linked inode is never
  chmod-ed (that would change the mode of the other layout's file too), and a private (0600) file
  never becomes a public layout's blob or the other way round. Anything else is copied.
- Links fail across filesystems (EXDEV), where the kernel forbids them (EPERM: protected hardlinks,
  filesystems without links) or at the link limit (EMLINK); the blob is then copied, verified as it
  streams, as before.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from ..errors import DigestMismatch, SizeMismatch
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.verify import VerifyingReader

_READ = 1 << 20


class LocalBlobReader(VerifyingReader):
    """A verifying reader of a blob that is a whole regular file: ``local_file`` lets a store on the
    same filesystem link it instead of reading it."""

    def __init__(self, raw: BinaryIO, path: Path, digest: Digest, size: int, what: str) -> None:
        super().__init__(raw, digest, size, what)
        self.local_file = (raw, path)


def link_verified(source: tuple[BinaryIO, Path], desc: Descriptor, tmp_dir: Path, mode: int) -> Path | None:
    """A new hard link, in ``tmp_dir``, to the inode of ``source`` (its open file and its path), whose
    content was checked to be ``desc`` (the caller renames it into place); None when it cannot or must
    not be linked (then copy). Raises ``SizeMismatch``/``DigestMismatch`` (and leaves no link) when the
    content is not ``desc``."""
    file, path = source
    fd = file.fileno()
    st = os.fstat(fd)
    if (not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != mode or st.st_uid != os.geteuid()
            or st.st_size != desc.size):
        return None  # a size that differs is reported by the copy, which reads what there is
    tmp = tmp_dir / f"link.{os.urandom(8).hex()}"
    try:
        os.link(path, tmp, follow_symlinks=False)
    except OSError:
        return None
    try:
        linked = os.lstat(tmp)
        if (linked.st_dev, linked.st_ino) != (st.st_dev, st.st_ino):
            tmp.unlink()  # the path names another file than the one opened (replaced meanwhile): copy
            return None
        _check(fd, desc)  # the open file is the linked inode: what is hashed is what gets the name
        os.fsync(fd)  # written by someone else, maybe not yet on disk: durable before it gets a name
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _check(fd: int, desc: Descriptor) -> None:
    what = f"blob {desc.digest} (to be linked)"
    h = desc.digest.hasher()
    buf = bytearray(_READ)
    view = memoryview(buf)
    offset = 0
    while n := os.preadv(fd, [buf], offset):
        h.update(view[:n])
        offset += n
    if offset != desc.size:
        raise SizeMismatch(what, desc.size, offset)
    actual = f"{desc.digest.algorithm}:{h.hexdigest()}"
    if actual != desc.digest.text:
        raise DigestMismatch(what, desc.digest.text, actual)
