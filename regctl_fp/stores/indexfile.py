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
from ..oci import annotation_keys as A
from ..oci.canonical import canonical_json
from ..oci.descriptor import Descriptor
from ..oci.errors import InvalidDocument

REF_NAME = "org.opencontainers.image.ref.name"
KEY = A.KEY


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
        keys: dict[str, str] = {}  # the engine's stage key on an entry -> the first name holding it
        with_digest = 0  # entries that carry a "digest" (a write's splice checks the text against it)
        for entry in entries:  # tight: this loop runs over every name on every run
            if entry.__class__ is dict:
                annotations = entry.get("annotations")
                if "digest" in entry:
                    with_digest += 1
            else:
                annotations = None
            name = annotations.get(REF_NAME) if annotations.__class__ is dict else None
            if name.__class__ is str:
                if name in raw:
                    self.repeated.add(name)
                elif ordered and name <= last:
                    ordered = False
                raw[name] = entry
                last = name
                k = annotations.get(KEY)  # type: ignore[union-attr]
                if k.__class__ is str:
                    keys.setdefault(k, name)
            elif last:  # an unnamed entry after a named one
                ordered = False
        self._keys: dict[str, str] | None = keys
        self.with_digest = with_digest
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

    def holding_key(self, key: str) -> str | None:
        """A name whose entry carries the stage key ``key`` (``dev.regfp.key``), in O(1)."""
        if self._keys is None:
            self._keys = {}
            for name in self._raw:
                k = self.annotation(name, KEY)
                if k is not None:
                    self._keys.setdefault(k, name)
        return self._keys.get(key)

    def annotation(self, name: str, key: str) -> str | None:
        """One annotation of a name's entry, without parsing the entry."""
        return entry_annotation(self._raw[name], key)

    def updated(self, entries: list[Any], removed: set[str], added: Mapping[str, Any], *, ordered: bool,
                edit: Edit) -> Names:
        """These names after a write that removed ``removed`` and named ``added`` (name -> entry), with
        ``entries`` the index's new entries and ``edit`` the write's edit: derived from this one without a
        pass over every entry (read again when names stay repeated: which of their entries a name stands
        for follows the new order)."""
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
        new._keys = None  # built again when asked: moved names may have held keys
        new.repeated = self.repeated - removed - set(added)
        new.ordered = ordered and not new.repeated
        new.with_digest = edit.new_with_digest()
        return new


class Edit:
    """What a write changes in the entries, for ``spliced``: the entries it removes and those it adds
    (the very objects), and how many of the old entries carry a ``"digest"``."""

    def __init__(self, old_with_digest: int, removed: list[Any], added: list[Any]) -> None:
        self.old_with_digest = old_with_digest
        self.removed = removed
        self.added = added

    @classmethod
    def between(cls, old: list[Any], new: list[Any]) -> Edit:
        """Found by comparing the lists, a pass over each (kept entries are the same objects)."""
        kept = {id(e) for e in new}
        was = {id(e) for e in old}
        return cls(sum(1 for e in old if _has_digest(e)),
                   [e for e in old if id(e) not in kept], [e for e in new if id(e) not in was])

    def new_with_digest(self) -> int:
        """How many entries carry a ``"digest"`` after the edit."""
        return (self.old_with_digest - sum(1 for e in self.removed if _has_digest(e))
                + sum(1 for e in self.added if _has_digest(e)))


def _has_digest(entry: Any) -> bool:
    return isinstance(entry, dict) and "digest" in entry


def merged(entries: list[Any], names: Names,
           updates: Mapping[str, Any | None]) -> tuple[list[Any], dict[str, Any], Edit]:
    """index.json's entries after moving ``updates`` (name -> new entry, or None to remove the name),
    the entries added by name, and the edit (what ``spliced`` needs, known here without another pass).
    The order stays ``entry_order``: new entries are inserted where they belong when the old ones were
    in order, and everything is sorted otherwise."""
    if names.repeated & set(updates):  # a name on two entries (another tool wrote it): drop them all
        removed = [e for e in entries if ref_of(e) in updates]
    else:
        removed = [names.entry(n) for n in updates if n in names]
    gone = {id(e) for e in removed}
    kept = [e for e in entries if id(e) not in gone] if gone else list(entries)
    added = {name: entry for name, entry in updates.items() if entry is not None}
    if names.ordered:
        for entry in added.values():
            bisect.insort(kept, entry, key=entry_order)
    else:
        kept.extend(added.values())
        kept.sort(key=entry_order)
    return kept, added, Edit(names.with_digest, removed, list(added.values()))


MAX_SPLICES = 32  # entries added or removed by one write that are spliced into the text; more: encode it all
_OPEN = b'"manifests":['


def spliced(text: bytes, old: list[Any], new: list[Any], edit: Edit | None = None) -> bytes | None:
    """``text`` (index.json as read, whose entries were ``old``) edited in place into the index whose
    entries are ``new`` (kept entries are the same objects as in ``old``; ``new`` in ``entry_order``), or
    None when that cannot be done with certainty. ``edit`` says what changed (``merged`` knows it; else
    the lists are compared). Each removed entry's canonical text is cut out, and each added entry's
    inserted after its predecessor's; every text looked for must occur exactly once (an entry's canonical
    text holds its unique name; a quote inside a string is escaped, so a string never holds it), and the
    text must hold no ``"digest":`` but the entries' own (the caller splices only an index whose top level
    has no descriptor of its own). A file in another form (another tool wrote it) has no such occurrences:
    the caller encodes the whole index.
    For a canonical file the result is byte for byte the canonical encoding of the new index, for the
    cost of a few searches instead of encoding every entry."""
    if edit is None:
        edit = Edit.between(old, new)
    if len(edit.removed) + len(edit.added) > MAX_SPLICES:
        return None
    # Every ``"digest":`` token of the text must be an entry's own: then an entry's text cannot also
    # stand somewhere else (a nested copy in another field), where a search could find it instead.
    if text.count(b'"digest":') != edit.old_with_digest:
        return None
    buf = text
    for entry in edit.removed:
        t = canonical_json(entry)
        at = _once(buf, t)
        if at is None:
            return None
        end = at + len(t)
        if buf[end:end + 1] == b",":
            buf = buf[:at] + buf[end + 1:]
        elif buf[at - 1:at] == b",":
            buf = buf[:at - 1] + buf[end:]
        else:
            buf = buf[:at] + buf[end:]
    # Added entries in the order they stand in ``new``, so that each one's predecessor is in place.
    positions = [_position(new, entry) for entry in edit.added]
    if None in positions:  # not where entry_order puts it: not a list this can splice into
        return None
    for i in sorted(p for p in positions if p is not None):
        t = canonical_json(new[i])
        if i == 0:
            at = _once(buf, _OPEN)
            if at is None:
                return None
            at += len(_OPEN)
            buf = buf[:at] + t + (b"," if buf[at:at + 1] != b"]" else b"") + buf[at:]
        else:
            before = canonical_json(new[i - 1])
            at = _once(buf, before)
            if at is None:
                return None
            at += len(before)
            buf = buf[:at] + b"," + t + buf[at:]
    return buf


def _position(entries: list[Any], entry: Any) -> int | None:
    """Where ``entry`` (the object) stands in ``entries``, which are in ``entry_order``: a binary search,
    then the neighbours of the same order (a name stands once; unnamed entries may share an order)."""
    order = entry_order(entry)
    for i in range(bisect.bisect_left(entries, order, key=entry_order), len(entries)):
        if entries[i] is entry:
            return i
        if entry_order(entries[i]) != order:
            break
    return None


def _once(text: bytes, part: bytes) -> int | None:
    at = text.find(part)
    return at if at >= 0 and text.find(part, at + 1) < 0 else None
