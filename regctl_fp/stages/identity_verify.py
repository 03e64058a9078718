"""Checking an environment image's identity certificate (``regfp verify --ca``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..imagefs import read_file
from ..oci import annotation_keys as A
from ..oci.descriptor import Descriptor
from ..stores.base import ReadStore, read_image
from ..verify import Report
from .identity import IDENTITY_DIR, check

if TYPE_CHECKING:
    from cryptography import x509


def verify_identity(store: ReadStore, desc: Descriptor, ca_cert: x509.Certificate, report: Report, label: str, *,
                    now: int) -> None:
    """Check an environment image's identity: chain to ``ca_cert``, validity at ``now``, and the SAN
    agreeing with the environment the image's annotations claim."""
    image = read_image(store, desc)
    ann = image.annotations
    claimed = ann.get(A.IDENTITY)
    if claimed is None:
        report.problems.append(f"{label}: the image carries no identity (no dev.regfp.identity annotation)")
        return
    env = ann.get(A.ENVIRONMENT, "")
    location, _, environment = env.partition(".")
    if not claimed.startswith("spiffe://") or claimed.split("/")[3:5] != [location, environment]:
        report.problems.append(f"{label}: its identity {claimed} does not name its environment {env or '(none)'}")
    cert = read_file(image, f"{IDENTITY_DIR}/tls.crt")
    key = read_file(image, f"{IDENTITY_DIR}/tls.key")
    if cert is None:
        report.problems.append(f"{label}: /{IDENTITY_DIR}/tls.crt is missing")
        return
    problems = check(cert.data, key.data if key else None, ca_cert, now=now, expected_spiffe=claimed)
    report.problems.extend(f"{label}: identity {p}" for p in problems)
    if not problems:
        report.checked.append(f"{label} identity {claimed}")
