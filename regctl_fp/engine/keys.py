"""Stage keys: the sha256 of a canonical JSON of a stage's kind, recipe fragment, inputs and commit."""

from __future__ import annotations

import hashlib
from typing import Any

from ..oci.canonical import canonical_json

FORMAT_VERSION = 1  # bump when the same inputs would give different output bytes

# Every key this process computed, and the document it is the hash of: a provenance states what a key
# stands for without each stage kind passing its fragment and inputs along. Content-addressed (a key
# names exactly one document), so it is a memo, not state; a run computes a few keys per node.
_DOCUMENTS: dict[str, dict[str, Any]] = {}


def key_document(kind: str, fragment: Any, inputs: dict[str, Any], commit: str | None) -> dict[str, Any]:
    return {"kind": kind, "format": FORMAT_VERSION, "fragment": fragment, "inputs": inputs, "commit": commit}


def key_of(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document)).hexdigest()


def stage_key(kind: str, fragment: Any, inputs: dict[str, Any], commit: str | None) -> str:
    doc = key_document(kind, fragment, inputs, commit)
    key = key_of(doc)
    _DOCUMENTS[key] = doc
    return key


def document_of(key: str) -> dict[str, Any] | None:
    """The document ``key`` is the hash of, if this process computed it."""
    return _DOCUMENTS.get(key)
