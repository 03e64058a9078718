"""regfp's one error tree. The root lives in ``oci.errors`` (the lowest layer); this module adds the rest.

``exit_code`` 1: the work failed (I/O, verification, registry). 2: bad usage or bad input.
"""

from __future__ import annotations

from .oci.errors import (
    DigestMismatch,
    InvalidDigest,
    InvalidDocument,
    InvalidInput,
    RegfpError,
    SizeMismatch,
    VerificationError,
)

__all__ = [
    "DigestMismatch", "InvalidDigest", "InvalidDocument", "InvalidInput", "LayerInputError", "LayoutError",
    "LockTimeout", "NotFound", "RecipeError", "RefError", "RegfpError", "SizeMismatch", "VerificationError",
]


class LayerInputError(InvalidInput):
    """A tree or mapping that cannot become a layer safely (device node, escaping path, ...)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class RefError(InvalidInput):
    """An image reference that does not parse or names something regfp cannot use."""

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(f"bad reference {ref!r}: {reason}")
        self.ref = ref
        self.reason = reason


class NotFound(RegfpError):
    """A name, digest or blob that is not where it was looked for."""

    def __init__(self, what: str, where: str) -> None:
        super().__init__(f"{what} not found in {where}")
        self.what = what
        self.where = where


class LayoutError(RegfpError):
    """An OCI layout directory that is missing, malformed or unwritable."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"OCI layout {path}: {reason}")
        self.path = path
        self.reason = reason


class LockTimeout(LayoutError):
    pass


class RecipeError(InvalidInput):
    """A recipe that does not parse or validate; always names the file and line."""

    def __init__(self, path: str, line: int | None, message: str, key_path: str | None = None) -> None:
        where = f"{path}:{line}" if line else path
        at = f" (at {key_path})" if key_path else ""
        super().__init__(f"{where}: {message}{at}")
        self.path = path
        self.line = line
        self.key_path = key_path
        self.detail = message
