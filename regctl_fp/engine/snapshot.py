"""What a layout's names held when a run read its index: one read, then O(1) lookups by name or key.

Index entries written by the engine carry the stage key (``dev.regfp.key``) as an entry annotation, so
a key lookup never opens a manifest. Entries written before that (or by other tools) are looked up by
name only, reading the manifest's key once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import RegfpError
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.manifest import Index, Manifest
from ..stores.indexfile import Names
from ..stores.layout import LayoutStore


class Snapshot:
    def __init__(self, store: LayoutStore | None) -> None:
        self.store = store
        self.names: Mapping[str, Descriptor] = store.names() if store is not None else {}
        self._annotations: dict[str, dict[str, str]] = {}

    @classmethod
    def of(cls, layout: Path) -> Snapshot:
        if not (layout / "oci-layout").exists():
            return cls(None)
        return cls(LayoutStore.open(layout))

    def by_key(self, key: str) -> Descriptor | None:
        """An image named in the layout whose key is ``key`` (its manifest blob present), or None."""
        if self.store is None or not isinstance(self.names, Names):
            return None
        holder = self.names.holding_key(key)
        if holder is None:
            return None
        found = self.names[holder]
        return found if self.store.has_blob(found.digest) else None

    def manifest_annotations(self, name: str) -> dict[str, str]:
        """The manifest (or, for a multi-platform stage, index) annotations of the image under ``name`` ({}
        when absent or unreadable)."""
        if name in self._annotations:
            return self._annotations[name]
        desc = self.names.get(name)
        found: dict[str, str] = {}
        if desc is not None and self.store is not None:
            try:
                data = self.store.get_manifest(desc)
                doc = Index.parse(data, desc.media_type) if desc.media_type in mt.INDEX_TYPES else \
                    Manifest.parse(data, desc.media_type)
                found = dict(doc.annotations)
            except RegfpError:
                pass  # damaged: treated as absent, so it is made again
        self._annotations[name] = found
        return found
