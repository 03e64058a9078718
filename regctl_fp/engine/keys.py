"""Stage keys: the sha256 of a canonical JSON of a stage's kind, recipe fragment, inputs and commit."""

from __future__ import annotations

import hashlib
from typing import Any

from ..oci.canonical import canonical_json

FORMAT_VERSION = 1  # bump when the same inputs would give different output bytes


def stage_key(kind: str, fragment: Any, inputs: dict[str, Any], commit: str | None) -> str:
    doc = {"kind": kind, "format": FORMAT_VERSION, "fragment": fragment, "inputs": inputs, "commit": commit}
    return hashlib.sha256(canonical_json(doc)).hexdigest()
