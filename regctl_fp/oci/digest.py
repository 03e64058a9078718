"""Content digests: parsing, formatting and incremental hashing (sha256 to write; sha512 read too)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property

from .errors import InvalidDigest

_HEX_LEN = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+")
_ALG = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*")


@dataclass(frozen=True, order=True)
class Digest:
    """``algorithm:encoded``, validated on construction. Only sha256 and sha512 are accepted."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        text = f"{self.algorithm}:{self.hex}"
        if not _ALG.fullmatch(self.algorithm):
            raise InvalidDigest(text, "malformed algorithm")
        want = _HEX_LEN.get(self.algorithm)
        if want is None:
            raise InvalidDigest(text, f"unsupported algorithm {self.algorithm!r} (sha256, sha512)")
        if len(self.hex) != want or not _HEX.fullmatch(self.hex):
            raise InvalidDigest(text, f"{self.algorithm} needs {want} lowercase hex characters")

    @classmethod
    def parse(cls, text: object) -> Digest:
        if not isinstance(text, str):
            raise InvalidDigest(repr(text), "not a string")
        algorithm, sep, encoded = text.partition(":")
        if not sep:
            raise InvalidDigest(text, "missing ':' between algorithm and hex")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @cached_property
    def text(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        return self.hex[:12]

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object of this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return self.text
