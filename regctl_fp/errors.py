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
from .redaction import scrub

__all__ = [
    "AttestationError", "CorruptLayer", "DigestMismatch", "DocumentTooLarge", "InputFileError", "InvalidDigest",
    "InvalidDocument", "InvalidInput", "KeyFileError", "LayerInputError", "LayoutError", "LockTimeout", "NotFound",
    "RecipeError", "RefError", "RegfpError", "RegistryError", "SizeMismatch", "VerificationError",
]


class LayerInputError(InvalidInput):
    """A tree or mapping that cannot become a layer safely (device node, escaping path, ...)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DocumentTooLarge(InvalidInput):
    """A config or manifest regfp was about to write that it (and registries) would refuse to read
    back; raised before anything of the image is stored under a name."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} would be {size} bytes, over the {limit}-byte limit regfp reads it with; "
                         "nothing was written (shrink the labels, env or annotations that make it this large)")
        self.what = what
        self.size = size
        self.limit = limit


class CorruptLayer(VerificationError):
    """A layer whose blob may match its digest but whose content is not a whole tar archive (cut short,
    an unreadable header, a broken compression stream)."""

    def __init__(self, digest: str, reason: str) -> None:
        super().__init__(f"layer {digest}: {reason}")
        self.digest = digest
        self.reason = reason


class InputFileError(InvalidInput):
    """A file given as input that regfp will not read: not a regular file (a FIFO would block, a device
    never ends), or larger than what is read whole from such a file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class KeyFileError(InvalidInput):
    """A key file that cannot be used: unreadable, not PEM, locked, of an unsupported type, or readable by
    others. The message names the file, never its content or a password."""

    def __init__(self, what: str, path: str, reason: str) -> None:
        super().__init__(f"{what} {path}: {reason}")
        self.what = what
        self.path = path
        self.reason = reason


class AttestationError(VerificationError):
    """A signed attestation that does not verify: a malformed envelope, another payload type, no
    signature by the expected key, or a signature that does not match the content."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"attestation does not verify: {reason}")
        self.reason = reason


class RefError(InvalidInput):
    """An image reference that does not parse or names something regfp cannot use."""

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(f"bad reference {ref!r}: {reason}")
        self.ref = ref
        self.reason = reason


class NotFound(RegfpError):
    """A name, digest or blob that is not where it was looked for."""

    def __init__(self, what: str, where: str, hint: str = "") -> None:
        super().__init__(f"{what} not found in {where}" + (f"; {hint}" if hint else ""))
        self.what = what
        self.where = where
        self.hint = hint


class LayoutError(RegfpError):
    """An OCI layout directory that is missing, malformed or unwritable."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"OCI layout {path}: {reason}")
        self.path = path
        self.reason = reason


class LockTimeout(LayoutError):
    pass


class RegistryError(RegfpError):
    """A registry request that failed: the method, the URL (credentials and query secrets removed), the
    HTTP status (None when no response came) and the registry's error code, e.g. ``MANIFEST_INVALID``.

    Every part that can hold text from the server (or an HTTP library quoting a header) is scrubbed of
    the secrets this process sent: some registries echo the ``Authorization`` header back.
    """

    def __init__(self, method: str, url: str, status: int | None, code: str | None = None,
                 detail: str = "") -> None:
        self.method = method
        self.url = scrub(redact_url(url))
        self.status = status
        self.code = scrub(code) if code else code
        self.detail = scrub(detail)
        what = f"HTTP {status}" if status is not None else "no response"
        if self.code:
            what += f" {self.code}"
        super().__init__(f"{method} {self.url}: {what}" + (f": {self.detail}" if self.detail else ""))


# Query parameters that say what a request is about; every other one (upload state, signed CDN
# redirects) is dropped from URLs shown to people, because some of them work as credentials.
_SHOWN_QUERY = frozenset({"digest", "mount", "from", "n", "last", "service", "scope"})


def redact_url(url: str) -> str:
    """``url`` without user info and without query parameters that could carry secrets."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc.rpartition("@")[2]
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k in _SHOWN_QUERY]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(kept, safe=":/,"), ""))


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
