"""Attestation signing and verification keys: ECDSA P-256 or Ed25519, named by the sha256 of their DER
SubjectPublicKeyInfo.

Signatures are deterministic (RFC 6979 for ECDSA; Ed25519 by design), so the same key and payload give
the same envelope bytes and the same attestation digest on every machine. A ``SigningKey`` never shows
its key material: not in ``repr``, not in messages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ..errors import InputFileError, KeyFileError
from ..privatekey import load_private_key
from ..regularfile import PEM_LIMIT, read_regular

Algorithm = Literal["ecdsa-p256", "ed25519"]
PublicKeyType = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKeyType = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PASSWORD_SETTING = "attest.keyPasswordEnv"
_SUPPORTED = "ECDSA P-256 or Ed25519"


def key_id(public: PublicKeyType) -> str:
    """The key's id: lowercase hex sha256 of its DER SubjectPublicKeyInfo."""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _algorithm(key: PublicKeyType) -> Algorithm:
    return "ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "ecdsa-p256"


@dataclass(frozen=True)
class PublicKey:
    """A verification key."""

    key: PublicKeyType

    @cached_property
    def keyid(self) -> str:
        return key_id(self.key)

    @property
    def algorithm(self) -> Algorithm:
        return _algorithm(self.key)

    @cached_property
    def pem(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verifies(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` (DER for ECDSA, 64 raw bytes for Ed25519) signs ``data`` with this key."""
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, data)
            else:
                self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"PublicKey({self.algorithm}, keyid={self.keyid[:16]})"


class SigningKey:
    """A private key that signs attestations. Holds the key object only; ``repr`` shows the public id."""

    __slots__ = ("__key", "public")

    def __init__(self, key: PrivateKeyType) -> None:
        if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"ECDSA keys must be on P-256, not {key.curve.name}")
        self.__key = key
        self.public = PublicKey(key.public_key())

    @property
    def keyid(self) -> str:
        return self.public.keyid

    @property
    def algorithm(self) -> Algorithm:
        return self.public.algorithm

    def sign(self, data: bytes) -> bytes:
        """A deterministic signature of ``data``: ECDSA P-256 SHA-256 per RFC 6979 (DER-encoded, as
        DSSE verifiers such as securesystemslib expect), or Ed25519 (64 bytes)."""
        key = self.__key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        return key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))

    def __repr__(self) -> str:
        return f"SigningKey({self.algorithm}, keyid={self.keyid[:16]})"

    def __reduce__(self) -> tuple[Any, ...]:  # no pickling into a cache, a log, or another process
        raise TypeError("a SigningKey cannot be pickled")


def load_signing_key(path: Path, password: str | None) -> SigningKey:
    """The signing key in the PEM file ``path`` (PKCS#8 or the legacy OpenSSL forms), unlocked with
    ``password`` (from the environment variable the recipe names; None if it names none). The file must
    be a regular file of at most 1 MiB readable by its owner only."""
    key = load_private_key(path, password, what="signing key", password_setting=PASSWORD_SETTING,
                           owner_only=True)
    if isinstance(key, ed25519.Ed25519PrivateKey) or (
            isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)):
        return SigningKey(key)
    shown = f"ECDSA on {key.curve.name}" if isinstance(key, ec.EllipticCurvePrivateKey) else type(key).__name__
    raise KeyFileError("signing key", str(path), f"unsupported key type {shown}; use {_SUPPORTED}")


def public_key_from_pem(pem: bytes, shown: str) -> PublicKey:
    """The public key in ``pem`` (a SubjectPublicKeyInfo ``PUBLIC KEY`` block); ``shown`` names where
    it came from in messages."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise KeyFileError("public key", shown, "not a PEM public key") from None
    if isinstance(key, ed25519.Ed25519PublicKey) or (
            isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
        return PublicKey(key)
    raise KeyFileError("public key", shown, f"unsupported key type {type(key).__name__}; use {_SUPPORTED}")


def load_public_key(path: Path) -> PublicKey:
    """The verification key in the PEM file ``path`` (a regular file of at most 1 MiB)."""
    try:
        pem = read_regular(path, PEM_LIMIT, "public key")
    except InputFileError as e:
        raise KeyFileError("public key", str(path), e.reason) from None
    except OSError as e:
        raise KeyFileError("public key", str(path), f"cannot read ({e.strerror})") from None
    return public_key_from_pem(pem, str(path))
