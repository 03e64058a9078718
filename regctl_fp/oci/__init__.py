"""The pure OCI model: digests, media types, descriptors, configs, manifests, indexes and images.

Nothing here touches the filesystem or the network; layers carry openers supplied by the stores.
Names are re-exported lazily, so importing one submodule (e.g. ``oci.errors``) stays cheap. The
``validate`` function is not re-exported: its module has the same name and would shadow it; import it
from ``oci.validate``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "canonical_json": "canonical", "History": "config", "ImageConfig": "config", "Descriptor": "descriptor",
    "Platform": "descriptor", "Digest": "digest", "DigestMismatch": "errors", "InvalidDigest": "errors",
    "InvalidDocument": "errors", "InvalidInput": "errors", "RegfpError": "errors", "SizeMismatch": "errors",
    "VerificationError": "errors", "FrozenDict": "frozen", "freeze": "frozen", "thaw": "frozen",
    "Image": "image", "Layer": "image", "Index": "manifest", "Manifest": "manifest",
    "sniff_media_type": "manifest", "ValidationError": "validate",
    "VerifyingReader": "verify", "read_verified": "verify",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
