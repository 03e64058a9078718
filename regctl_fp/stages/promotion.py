"""Keeping debug images where they belong: only ``ad-hoc/`` names, and gone once expired.

Kept apart from the debug stage itself so that ``copy`` and ``gc`` can check without loading it.
"""

from __future__ import annotations

from ..errors import InvalidInput
from ..oci.descriptor import Descriptor
from ..stores.base import ReadStore, Store, manifest_annotations

A_DEBUG = "dev.regfp.debug"
A_EXPIRES = "dev.regfp.expires"


def is_dev_target(repository: str) -> bool:
    """Debug images may only go to ``ad-hoc/`` names (a path component of the repository)."""
    return "/ad-hoc/" in f"/{repository}/"


def debug_annotations(store: ReadStore, desc: Descriptor) -> list[dict[str, str]]:
    """The manifest annotations of ``desc`` (every platform of an index) that mark debug images."""
    return [ann for ann in manifest_annotations(store, desc) if ann.get(A_DEBUG) == "true"]


def refuse_promotion(store: ReadStore, desc: Descriptor, repository: str, shown: str) -> None:
    if debug_annotations(store, desc) and not is_dev_target(repository):
        raise InvalidInput(f"{shown}: this is a debug image (dev.regfp.debug=true); debug images never leave "
                           "development: copy it only to an ad-hoc/ name")


def expired_names(store: Store, names: dict[str, Descriptor], now: int) -> list[str]:
    """``ad-hoc/`` names whose debug image expired before ``now``."""
    from ..timeutil import parse_rfc3339

    out = []
    for name, desc in sorted(names.items()):
        if not name.startswith("ad-hoc/"):
            continue
        for ann in debug_annotations(store, desc):
            expires = ann.get(A_EXPIRES)
            try:
                if expires and parse_rfc3339(expires) <= now:
                    out.append(name)
                    break
            except ValueError:
                continue
    return out
