"""A layout's ``index.json``: its names, looked up in O(1), and how a write moves some of them.

A write to a layout of 10,000 names that moves one must not cost 10,000 times what moving one costs
in Python: the entries are kept as parsed, dropped ones are found by identity, new ones are inserted
where they belong when the index was in order already (a full sort otherwise), and the names after
the write are derived from the names before. What remains per entry is C: one parse when the index is
read and one canonical encoding when it is written. (Writing one entry per line so that unchanged
entries keep their text was measured and rejected: checking value by value that a line holds exactly
its entry costs more on every read than the encoding it saves on a write.)
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import LayoutError
from ..oci.descriptor import Descriptor
from ..oci.errors import InvalidDocument

REF_NAME = "org.opencontainers.image.ref.name"


def entry_order(entry: Any) -> tuple[str, str]:
    """index.json entries sort by name, then digest (unnamed first)."""
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    return (name if isinstance(name, str) else "", str(entry.get("digest", "")) if isinstance(entry, dict) else "")


def entry_annotation(entry: object, key: str) -> str | None:
    """One string annotation of a raw index.json entry (None if absent or malformed)."""
    if isinstance(entry, dict):
        annotations = entry.get("annotations")
        if isinstance(annotations, dict):
            value = annotations.get(key)
            return value if isinstance(value, str) else None
    return None


def ref_of(entry: object) -> str | None:
    return entry_annotation(entry, REF_NAME)


class Names(Mapping[str, Descriptor]):
    """A layout's names from one read of index.json. Looking a name up costs O(1) and parses only that
    entry, so a run that needs a few names of a layout holding thousands never parses them all. They
    iterate in the file's order (after a write by this process, the names it added come last)."""

    def __init__(self, entries: list[Any], where: str) -> None:
        raw: dict[str, Any] = {}
        self.repeated: set[str] = set()  # names on more than one entry (resolve says so)
        ordered = True  # entries in ``entry_order`` with no name twice: a write can insert, not sort
        last = ""
        for entry in entries:  # tight: this loop runs over every name on every run
            annotations = entry.get("annotations") if entry.__class__ is dict else None
            name = annotations.get(REF_NAME) if annotations.__class__ is dict else None
            if name.__class__ is str:
                if name in raw:
                    self.repeated.add(name)
                elif ordered and name <= last:
                    ordered = False
                raw[name] = entry
                last = name
            elif last:  # an unnamed entry after a named one
                ordered = False
        self._raw = raw
        self._entries = entries
        self._built: dict[str, Descriptor] = {}
        self._where = where
        self.ordered = ordered and not self.repeated and self._unnamed_ordered()

    def _unnamed_ordered(self) -> bool:
        unnamed = [entry_order(e) for e in self._entries[:len(self._entries) - len(self._raw)]]
        return unnamed == sorted(unnamed)

    def __getitem__(self, name: str) -> Descriptor:
        found = self._built.get(name)
        if found is None:
            entry = self._raw[name]
            try:
                found = Descriptor.from_dict(entry, "index.json entry")
            except InvalidDocument as e:  # where it is, counted only now: a pass over every entry
                raise LayoutError(self._where, f"index.json entry {self._position(entry)}: {e.reason}") from None
            self._built[name] = found
        return found

    def _position(self, entry: Any) -> int:
        return next(i for i, e in enumerate(self._entries) if e is entry)

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def entry(self, name: str) -> Any:
        """The raw index.json entry of ``name`` (the last one, if the name is on several)."""
        return self._raw[name]

    def annotation(self, name: str, key: str) -> str | None:
        """One annotation of a name's entry, without parsing the entry."""
        return entry_annotation(self._raw[name], key)

    def updated(self, entries: list[Any], removed: set[str], added: Mapping[str, Any], *, ordered: bool) -> Names:
        """These names after a write that removed ``removed`` and named ``added`` (name -> entry), with
        ``entries`` the index's new entries: derived from this one without a pass over every entry (read
        again when names stay repeated: which of their entries a name stands for follows the new order)."""
        if self.repeated - removed - set(added):
            return Names(entries, self._where)
        new = Names.__new__(Names)
        raw = dict(self._raw)
        for name in removed:
            raw.pop(name, None)
        raw.update(added)
        new._raw = raw
        new._entries = entries
        new._built = {n: d for n, d in self._built.items() if n not in removed and n not in added}
        new._where = self._where
        new.repeated = self.repeated - removed - set(added)
        new.ordered = ordered and not new.repeated
        return new


def merged(entries: list[Any], names: Names, updates: Mapping[str, Any | None]) -> tuple[list[Any], dict[str, Any]]:
    """index.json's entries after moving ``updates`` (name -> new entry, or None to remove the name),
    and the entries added by name. The order stays ``entry_order``: new entries are inserted where they
    belong when the old ones were in order, and everything is sorted otherwise."""
    if names.repeated & set(updates):  # a name on two entries (another tool wrote it): drop them all
        kept = [e for e in entries if ref_of(e) not in updates]
    else:
        dropped = {id(names.entry(n)) for n in updates if n in names}
        kept = [e for e in entries if id(e) not in dropped] if dropped else list(entries)
    added = {name: entry for name, entry in updates.items() if entry is not None}
    if names.ordered:
        for entry in added.values():
            bisect.insort(kept, entry, key=entry_order)
    else:
        kept.extend(added.values())
        kept.sort(key=entry_order)
    return kept, added
