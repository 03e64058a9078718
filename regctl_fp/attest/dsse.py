"""DSSE envelopes (Dead Simple Signing Envelope, v1): a payload, its type, and signatures over the
pre-authentication encoding (PAE) of both, so a signature can never be replayed under another type.

The envelope is written as canonical JSON (sorted keys, compact) with standard base64: with
deterministic signatures, the same payload and key give the same envelope bytes, hence the same digest.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from ..errors import AttestationError
from ..oci.canonical import canonical_json
from .keys import PublicKey, SigningKey

IN_TOTO = "application/vnd.in-toto+json"
DSSE_MEDIA = "application/vnd.dsse.envelope.v1+json"  # an envelope as a blob (an attestation's layer)
ENVELOPE_LIMIT = 64 << 20  # an SBOM of a large distribution image is a few MiB; far above, not ours
MAX_SIGNATURES = 64


def pae(payload_type: str, payload: bytes) -> bytes:
    """``DSSEv1 SP LEN(type) SP type SP LEN(body) SP body``, lengths as ASCII decimal of byte counts."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes

    def __repr__(self) -> str:
        return f"Signature(keyid={self.keyid[:16]}, {len(self.sig)} bytes)"


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"payload": _b64(self.payload), "payloadType": self.payload_type,
                "signatures": [{"keyid": s.keyid, "sig": _b64(s.sig)} for s in self.signatures]}

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    def __repr__(self) -> str:
        return f"Envelope({self.payload_type}, {len(self.payload)} bytes, {len(self.signatures)} signature(s))"


def sign(payload: bytes, key: SigningKey, payload_type: str = IN_TOTO) -> Envelope:
    """``payload`` in an envelope signed by ``key`` (deterministically: same inputs, same bytes)."""
    return Envelope(payload, payload_type, (Signature(key.keyid, key.sign(pae(payload_type, payload))),))


def parse_envelope(data: bytes) -> Envelope:
    """An envelope from its JSON, strictly: the three fields with the right types, base64 that decodes,
    at most ``MAX_SIGNATURES`` signatures and ``ENVELOPE_LIMIT`` bytes."""
    if len(data) > ENVELOPE_LIMIT:
        raise AttestationError(f"the envelope is {len(data)} bytes, over the {ENVELOPE_LIMIT}-byte limit")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise AttestationError("the envelope is not JSON") from None
    if not isinstance(doc, dict):
        raise AttestationError("the envelope is not a JSON object")
    payload_type = doc.get("payloadType")
    sigs = doc.get("signatures")
    if not isinstance(payload_type, str):
        raise AttestationError("the envelope has no payloadType string")
    if not isinstance(sigs, list) or not sigs or len(sigs) > MAX_SIGNATURES:
        raise AttestationError(f"the envelope needs 1 to {MAX_SIGNATURES} signatures")
    signatures = []
    for s in sigs:
        if not isinstance(s, dict) or not isinstance(s.get("keyid", ""), str):
            raise AttestationError("a signature of the envelope is not an object with a keyid string")
        signatures.append(Signature(s.get("keyid", ""), _unb64(s.get("sig"), "a signature")))
    return Envelope(_unb64(doc.get("payload"), "the payload"), payload_type, tuple(signatures))


def verify(envelope: Envelope | bytes, key: PublicKey, *, payload_type: str = IN_TOTO) -> bytes:
    """The payload of ``envelope`` once a signature by ``key`` verifies over it, else ``AttestationError``
    saying why: another payload type, no signature with the key's id, or a signature that does not
    verify (the content changed after signing, or another key signed it under this id)."""
    env = parse_envelope(envelope) if isinstance(envelope, bytes) else envelope
    if env.payload_type != payload_type:
        raise AttestationError(f"its payloadType is {env.payload_type!r}, expected {payload_type!r}")
    # The keyid is only a hint (DSSE): signatures without one are tried too, those naming another key not.
    mine = [s for s in env.signatures if s.keyid in ("", key.keyid)]
    if not mine:
        named = ", ".join(sorted({s.keyid[:16] for s in env.signatures}))
        raise AttestationError(f"no signature by key {key.keyid[:16]} (signed by key {named})")
    message = pae(env.payload_type, env.payload)
    if any(key.verifies(s.sig, message) for s in mine):
        return env.payload
    raise AttestationError(f"the signature by key {key.keyid[:16]} does not match the content: it was changed "
                           "after signing, or signed by another key")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, what: str) -> bytes:
    """Standard base64; URL-safe base64 is accepted too, as DSSE allows either."""
    if not isinstance(value, str):
        raise AttestationError(f"{what} of the envelope is not a base64 string")
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise AttestationError(f"{what} of the envelope is not valid base64") from None
