"""Test certificate authorities and leaves, made with `cryptography` at test time."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(directory: Path, cn: str, *, start: int = 2019, end: int = 2040, password: bytes | None = None,
            ca: bool = True) -> tuple[Path, Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime(start, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(end, 1, 1, tzinfo=dt.UTC))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    slug = cn.replace(" ", "-")
    cert_path, key_path = directory / f"{slug}.pem", directory / f"{slug}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    return cert_path, key_path, key, cert


def make_leaf(directory: Path, name: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
              *, ip: str | None = None) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
               .not_valid_after(dt.datetime(2039, 1, 1, tzinfo=dt.UTC)))
    if ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
