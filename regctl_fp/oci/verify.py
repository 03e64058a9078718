"""A reader that checks a blob's size and digest while it streams."""

from __future__ import annotations

from .digest import Digest
from .errors import DigestMismatch, SizeMismatch
from .streams import ClosableReader


class VerifyingReader:
    """Wraps a binary stream; raises at the read that proves the content wrong.

    Oversize content fails as soon as it passes the declared size; a short stream or a wrong digest
    fails on the read that returns end-of-file. Consumers must therefore read to EOF before they
    commit to what they read (temp file + rename), which every store in regfp does.
    """

    def __init__(self, raw: ClosableReader, digest: Digest, size: int, what: str) -> None:
        self._raw = raw
        self._digest = digest
        self._size = size
        self._what = what
        self._hash = digest.hasher()
        self._seen = 0
        self._done = False

    @property
    def verifies(self) -> Digest:
        """The digest this stream enforces: a consumer that reads it to the end needs no hash of its own."""
        return self._digest

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        if n is None or n < 0:
            n = max(self._size - self._seen, 0) + 1
        chunk = self._raw.read(n)
        if chunk:
            self._seen += len(chunk)
            if self._seen > self._size:
                raise SizeMismatch(self._what, self._size, self._seen, at_least=True)
            self._hash.update(chunk)
            return chunk
        self._done = True
        if self._seen != self._size:
            raise SizeMismatch(self._what, self._size, self._seen)
        actual = f"{self._digest.algorithm}:{self._hash.hexdigest()}"
        if actual != self._digest.text:
            raise DigestMismatch(self._what, self._digest.text, actual)
        return b""

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_verified(raw: ClosableReader, digest: Digest, size: int, what: str, limit: int) -> bytes:
    """Read a whole small blob (manifests, configs), verified; refuses anything above ``limit``."""
    if size > limit:
        raise SizeMismatch(what, limit, size, at_least=True)
    reader = VerifyingReader(raw, digest, size, what)
    parts = []
    while chunk := reader.read(1 << 20):
        parts.append(chunk)
    return b"".join(parts)
