"""Per-environment identity certificates, issued deterministically from a CA named in the recipe.

The leaf key is derived from the CA key and the certificate's inputs (HKDF-SHA256 -> a P-256 scalar)
and signed deterministically (RFC 6979 for ECDSA CAs; Ed25519 and RSA PKCS#1 v1.5 are deterministic
by design), so the same CA, inputs and validity window give byte-identical files and image digests.
Validity windows are aligned to a third of the lifetime: any ``now`` inside the same third issues the
same certificate, and a certificate is re-issued once less than a third of its lifetime is left.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import InputFileError, InvalidInput, KeyFileError
from ..oci.canonical import canonical_json
from ..privatekey import load_private_key
from ..regularfile import PEM_LIMIT, read_regular
from ..values import valueclass
from .validity import IDENTITY_DIR, window

__all__ = ["IDENTITY_DIR", "Authority", "IdentityError", "Issued", "Subject", "check", "issue", "load_authority",
           "window"]

_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


class IdentityError(InvalidInput):
    """A CA that cannot issue: unreadable, not PEM, not a CA, expired, key mismatch, wrong password."""


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    cert_pem: bytes

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()

    def __repr__(self) -> str:  # never show key material, even in a debugger or a log
        return f"Authority(subject={self.cert.subject.rfc4514_string()!r}, sha256={self.fingerprint[:16]})"


def load_authority(cert_path: Path, key_path: Path, password: str | None, *, now: int) -> Authority:
    try:
        cert_pem = read_regular(cert_path, PEM_LIMIT, "CA certificate")
    except InputFileError as e:
        raise IdentityError(f"CA certificate {e.message}") from None
    except OSError as e:
        raise IdentityError(f"CA certificate {cert_path}: cannot read ({e.strerror})") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise IdentityError(f"CA certificate {cert_path}: not a PEM certificate") from None
    try:
        key = load_private_key(key_path, password, what="CA key", password_setting="identity.keyPasswordEnv")
    except KeyFileError as e:
        raise IdentityError(e.message) from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)):
        raise IdentityError(f"CA key {key_path}: unsupported key type {type(key).__name__}")
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise IdentityError(f"CA key {key_path} does not belong to the certificate {cert_path}")
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = basic.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise IdentityError(f"CA certificate {cert_path} is not a CA (basicConstraints CA:FALSE or missing)")
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise IdentityError(f"CA certificate {cert_path} is not valid at {when:%Y-%m-%dT%H:%M:%SZ} (valid "
                            f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})")
    return Authority(cert, key, cert_pem)


def _public_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@valueclass
class Subject:
    """What the certificate says: the image, where it may run, who pulls it, its environment."""

    name: str
    location: str
    environment: str
    release: int
    revision: str
    trust_domain: str
    hosts: tuple[str, ...] = ()
    puller: str | None = None

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{self.trust_domain}/{self.location}/{self.environment}/{self.name}"




@dataclass(frozen=True)
class Issued:
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes
    not_before: int
    not_after: int
    spiffe_id: str

    def __repr__(self) -> str:
        return f"Issued({self.spiffe_id!r}, {self.not_before}..{self.not_after})"


def issue(ca: Authority, subject: Subject, not_before: int, not_after: int) -> Issued:
    inputs = canonical_json({"subject": subject.__dict__, "window": [not_before, not_after],
                             "ca": ca.fingerprint, "v": 1})
    secret = ca.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    material = HKDF(hashes.SHA256(), 48, salt=b"regfp identity key v1", info=inputs).derive(secret)
    scalar = int.from_bytes(material, "big") % (_P256_ORDER - 1) + 1
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    serial = int.from_bytes(hashlib.sha256(b"serial" + inputs).digest()[:19], "big") >> 1 | 1
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(subject.spiffe_id),
        x509.UniformResourceIdentifier(f"urn:regfp:release:r{subject.release}"),
        x509.UniformResourceIdentifier(f"urn:regfp:revision:{subject.revision}"),
    ]
    if subject.puller:
        sans.append(x509.UniformResourceIdentifier(f"urn:regfp:puller:{subject.puller}"))
    sans.extend(x509.DNSName(h) for h in subject.hosts)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "regfp"),
                                 x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                    f"{subject.location}.{subject.environment}"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, subject.name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(dt.datetime.fromtimestamp(not_before, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(not_after, dt.UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
    )
    if isinstance(ca.key, ec.EllipticCurvePrivateKey):
        cert = builder.sign(ca.key, hashes.SHA256(), ecdsa_deterministic=True)
    elif isinstance(ca.key, ed25519.Ed25519PrivateKey):
        cert = builder.sign(ca.key, None)
    else:
        cert = builder.sign(ca.key, hashes.SHA256(), rsa_padding=padding.PKCS1v15())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Issued(key_pem, cert.public_bytes(serialization.Encoding.PEM), ca.cert_pem, not_before, not_after,
                  subject.spiffe_id)


# ---- checking an issued identity --------------------------------------------------------------------

def check(cert_pem: bytes, key_pem: bytes | None, ca_cert: x509.Certificate, *, now: int,
          expected_spiffe: str | None) -> list[str]:
    """Problems with an identity (empty when it verifies): chain, validity, SAN, key pair."""
    problems = []
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return ["tls.crt is not a PEM certificate"]
    try:
        cert.verify_directly_issued_by(ca_cert)
    except Exception as e:  # ValueError, TypeError or InvalidSignature: all mean "not from this CA"
        problems.append(f"not issued by the given CA ({str(e).rstrip('.') or type(e).__name__})")
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        problems.append(f"not valid at {when:%Y-%m-%dT%H:%M:%SZ} (valid {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}"
                        f" to {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})")
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    spiffe = [u for u in uris if u.startswith("spiffe://")]
    if expected_spiffe is not None and expected_spiffe not in spiffe:
        problems.append(f"its SAN {', '.join(spiffe) or '(none)'} does not match the image's environment "
                        f"({expected_spiffe})")
    if key_pem is not None:
        try:
            key = serialization.load_pem_private_key(key_pem, None)
            if _public_der(key.public_key()) != _public_der(cert.public_key()):
                problems.append("tls.key does not belong to tls.crt")
        except (ValueError, TypeError):
            problems.append("tls.key is not an unencrypted PEM private key")
    return problems
