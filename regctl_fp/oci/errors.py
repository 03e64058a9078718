"""The root of regfp's error tree, defined at the lowest layer so the pure OCI model can raise it.

Every error carries structured data and a human message; ``exit_code`` is what the CLI returns:
1 when the work failed (I/O, verification, registry), 2 when the input or usage was bad.
"""

from __future__ import annotations


class RegfpError(Exception):
    """Base of every error regfp raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(RegfpError):
    """The caller handed over something malformed (exit 2)."""

    exit_code = 2


class InvalidDigest(InvalidInput):
    """A string that is not a well-formed ``algorithm:hex`` digest."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"invalid digest {text!r}: {reason}")
        self.text = text
        self.reason = reason


class InvalidDocument(RegfpError):
    """A manifest, index or config that does not parse or breaks the OCI rules."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"invalid {what}: {reason}")
        self.what = what
        self.reason = reason


class VerificationError(RegfpError):
    """Content does not match what its descriptor promised."""


class DigestMismatch(VerificationError):
    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {actual}")
        self.what = what
        self.expected = expected
        self.actual = actual


class SizeMismatch(VerificationError):
    def __init__(self, what: str, expected: int, actual: int, *, at_least: bool = False) -> None:
        got = f"at least {actual}" if at_least else str(actual)
        super().__init__(f"{what}: size mismatch: expected {expected} bytes, got {got}")
        self.what = what
        self.expected = expected
        self.actual = actual
