"""What regfp asks of a byte stream it reads: ``read(n)`` until ``b""``, then ``close``.

Blobs reach their readers through wrappers (a verifying reader, a resumable download, a slice of
``git cat-file`` output, a decompressor) that are not files: they cannot seek, tell or write. These
protocols name the part of a file they do have, so a wrapper is accepted for what it is.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self


class ByteReader(Protocol):
    """Anything read front to back: ``read(n)`` returns up to ``n`` bytes (all with -1), ``b""`` at the end."""

    def read(self, n: int = -1, /) -> bytes: ...


class ClosableReader(ByteReader, Protocol):
    """A reader that holds something (a file, a connection) until ``close``."""

    def close(self) -> None: ...


class ByteStream(ClosableReader, Protocol):
    """A readable stream its user closes, directly or with ``with``."""

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None, /) -> None: ...


Opener = Callable[[], ByteStream]
"""Opens a fresh stream of the same bytes each time it is called (a layer's blob, a file to upload)."""
