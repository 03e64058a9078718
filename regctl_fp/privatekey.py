"""Reading a private key from a PEM file a recipe names: a regular file, bounded, unlocked with a password
the caller took from the environment variable the recipe names (the library never reads the environment).

Shared by the identity CA and the attestation signing key. Messages name the file, never its content or
the password: cryptography's own messages are dropped for that reason.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from .errors import InputFileError, KeyFileError
from .regularfile import PEM_LIMIT, read_regular


def _is_encrypted(pem: bytes) -> bool:
    """Whether the PEM says it is encrypted: PKCS#8 ``ENCRYPTED PRIVATE KEY`` or OpenSSL's legacy
    ``Proc-Type: 4,ENCRYPTED`` header. Lets a wrong password be told apart from a file that is not a key."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem or b"Proc-Type: 4,ENCRYPTED" in pem


def load_private_key(path: Path, password: str | None, *, what: str, password_setting: str,
                     owner_only: bool = False) -> PrivateKeyTypes:
    """The private key in the PEM file ``path``.

    ``what`` names it in messages ("CA key", "signing key"); ``password_setting`` is the recipe setting
    that names the password's environment variable, for the hint when the key is encrypted and no
    password came. ``owner_only`` refuses a file its group or others may access.
    """
    try:
        pem = read_regular(path, PEM_LIMIT, what, owner_only=owner_only)
    except InputFileError as e:
        raise KeyFileError(what, str(path), e.reason) from None
    except OSError as e:
        raise KeyFileError(what, str(path), f"cannot read ({e.strerror})") from None
    encrypted = _is_encrypted(pem)
    try:
        return serialization.load_pem_private_key(pem, password.encode() if password is not None else None)
    except TypeError:
        reason = (f"it is encrypted; name the environment variable holding its password in {password_setting}"
                  if password is None else "it is not encrypted, but a password was given")
        raise KeyFileError(what, str(path), reason) from None
    except ValueError:
        reason = ("the password does not unlock it (wrong password)" if encrypted and password is not None
                  else "not a PEM private key")
        raise KeyFileError(what, str(path), reason) from None
