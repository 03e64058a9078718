"""Opening the files regfp reads as input: only regular files, and whole reads only up to a limit.

A FIFO opened for reading blocks until a writer appears, and a device such as ``/dev/zero`` never
ends: so a path is opened with ``O_NONBLOCK`` (which makes the open of a FIFO return at once), checked
with ``fstat`` on the very descriptor that will be read (no window between check and use), and only
then switched back to blocking reads.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import InputFileError

# Limits of the files read whole (anything larger is streamed, or is not what it claims to be).
PEM_LIMIT = 1 << 20  # a certificate, a bundle of them, or a private key
SMALL_FILE_LIMIT = 32 << 20  # a file the recipe puts into an image as it is (environment ``files:``)


def open_regular(path: str | Path, *, follow: bool = True) -> BinaryIO:
    """``path`` opened for reading, or ``InputFileError`` if it is not a regular file.

    ``follow=False`` refuses a symlink as the last component (``O_NOFOLLOW``): for files inside a
    directory regfp owns, where a link can only be a planted one. Missing or unreadable files raise
    ``OSError`` as ``open`` does.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a socket (or a FIFO opened for writing): say what it is
            raise InputFileError(str(path), f"is {_kind_at(path, follow)}; only regular files are read") from None
        if e.errno == errno.ELOOP and not follow:
            raise InputFileError(str(path), "is a symbolic link; only regular files are read here") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputFileError(str(path), f"is {describe_mode(mode)}; only regular files are read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, limit: int, what: str, *, follow: bool = True, owner_only: bool = False) -> bytes:
    """The whole content of the regular file ``path``, refused above ``limit`` bytes.

    ``what`` names the file in the error ("recipe", "CA certificate"). The size is checked before
    reading and again while reading, so a file that grows meanwhile cannot exceed the limit either.
    ``owner_only`` refuses a file that its group or others may access (a secret left readable has
    already leaked to them; as ssh does with private keys), checked on the descriptor that is read.
    """
    with open_regular(path, follow=follow) as f:
        st = os.fstat(f.fileno())
        if owner_only and st.st_mode & 0o077:
            raise InputFileError(str(path), f"is accessible to its group or others (mode "
                                            f"{stat.S_IMODE(st.st_mode):04o}); a {what} must be readable by "
                                            f"its owner only (chmod 600)")
        if st.st_size > limit:
            raise InputFileError(str(path), f"larger than the {_size(limit)} a {what} may have")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InputFileError(str(path), f"larger than the {_size(limit)} a {what} may have")
    return data


def describe_mode(mode: int) -> str:
    """What kind of file a ``st_mode`` says, as words for a message ("a FIFO")."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def _kind_at(path: str | Path, follow: bool) -> str:
    try:
        return describe_mode((os.stat if follow else os.lstat)(path).st_mode)
    except OSError:
        return "not a regular file"


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"
