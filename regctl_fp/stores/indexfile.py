"""A layout's ``index.json`` as regfp writes and reads it: one index entry per line.

The document is ordinary JSON that any OCI tool reads; regfp writes its top-level fields (canonical
JSON) on the first line, ending with ``"manifests":[``, then each entry's canonical JSON on a line of
its own, then ``]}``. A later write keeps the text of every entry it does not change and encodes only
the new ones, so adding one name to a layout of 10,000 costs a join, not an encoding of the whole index.

Reading takes that form only when every line decodes, on its own, to exactly one JSON value (the
header to an object without ``manifests``): then line i *is* entry i, and its text can be written
back as it was. A file in any other form (another tool rewrote it, or it is hostile) is parsed whole
and its entries are encoded again on the next write.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from json.scanner import make_scanner
from typing import Any

from ..errors import LayoutError
from ..oci.canonical import canonical_json
from ..oci.descriptor import Descriptor
from ..oci.errors import InvalidDocument
from ..oci.manifest import parse_json

REF_NAME = "org.opencontainers.image.ref.name"
_OPEN = b'"manifests":['
_CLOSE = b"]}"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


@dataclass
class IndexText:
    """index.json read: the document, and each entry's own text when the file has the line form."""

    doc: dict[str, Any]
    raws: list[str] | None  # raws[i] is the JSON text of doc["manifests"][i]


_SCAN: Callable[[str, int], tuple[Any, int]] = make_scanner(_DECODER)  # type: ignore[arg-type]  # one JSON value at a position (C)


def _lines(data: bytes) -> IndexText | None:
    """The line form, scanned value by value: each entry must be one whole JSON value followed by
    exactly ``,\n`` (or ``\n]}\n`` after the last), so entry i and its text cannot disagree."""
    text = data.decode("utf-8")
    head_end = text.find("\n")
    if head_end < 0 or not text.startswith("{") or not text.endswith("\n]}\n"):
        return None
    head = text[:head_end]
    opening = _OPEN.decode()
    if not head.endswith(opening):
        return None
    rest = head[:-len(opening)]
    if rest == "{":
        top: Any = {}
    elif rest.endswith(","):
        top, end = _SCAN(rest[:-1] + "}", 0)
        if end != len(rest):
            return None
    else:
        return None
    if not isinstance(top, dict) or "manifests" in top:
        return None
    entries: list[Any] = []
    raws: list[str] = []
    i = head_end + 1
    if text[i:] != "]}\n":
        last = len(text) - 4  # where "\n]}\n" starts
        while True:  # one value per line; anything else ends the fast form
            value, end = _SCAN(text, i)
            entries.append(value)
            raws.append(text[i:end])
            if end == last:
                break
            if text[end:end + 2] != ",\n":
                return None
            i = end + 2
    return IndexText({**top, "manifests": entries}, raws)


def decode(data: bytes, what: str = "index.json") -> IndexText:
    """index.json's document (top level checked by the caller), in the line form when it has it."""
    try:
        found = _lines(data)
    except (ValueError, RecursionError, StopIteration):  # not one whole value where one belongs
        found = None
    if found is not None:
        return found
    return IndexText(dict(parse_json(data, what)), None)


def encode(doc: Mapping[str, Any], raws: list[str]) -> bytes:
    """The line form of ``doc`` (its ``manifests`` ignored) with ``raws`` as the entries' texts."""
    top = canonical_json({k: v for k, v in doc.items() if k != "manifests"}).decode()
    head = (top[:-1] + "," if top != "{}" else "{") + _OPEN.decode()
    return (head + "\n" + ",\n".join(raws) + ("\n" if raws else "") + "]}\n").encode()


def entry_order(entry: Any) -> tuple[str, str]:
    """index.json entries sort by name, then digest (unnamed first)."""
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    return (name if isinstance(name, str) else "", str(entry.get("digest", "")) if isinstance(entry, dict) else "")


def ref_of(entry: object) -> str | None:
    if isinstance(entry, dict):
        annotations = entry.get("annotations")
        if isinstance(annotations, dict):
            name = annotations.get(REF_NAME)
            return name if isinstance(name, str) else None
    return None


class Names(Mapping[str, Descriptor]):
    """A layout's names from one read of index.json. Looking a name up costs O(1) and parses only that
    entry, so a run that needs a few names of a layout holding thousands never parses them all."""

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
        annotations = self._raw[name].get("annotations")
        value = annotations.get(key) if isinstance(annotations, dict) else None
        return value if isinstance(value, str) else None

    def updated(self, entries: list[Any], removed: set[str], added: Mapping[str, Any], *, ordered: bool) -> Names:
        """These names after a write that removed ``removed`` and named ``added`` (name -> entry), with
        ``entries`` the index's new entries: derived from this one without a pass over every entry."""
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


def merged(entries: list[Any], raws: list[str] | None, names: Names, updates: Mapping[str, Any | None]
           ) -> tuple[list[Any], list[str], dict[str, Any]]:
    """index.json's entries and their texts after moving ``updates`` (name -> new entry, or None to
    remove the name), and the entries added by name. Kept entries keep their text; the order stays
    ``entry_order``: new entries are inserted where they belong when the old ones were in order, and
    everything is sorted otherwise."""
    texts = raws if raws is not None and len(raws) == len(entries) else [_text(e) for e in entries]
    if names.repeated & set(updates):  # a name on two entries (another tool wrote it): drop them all
        pairs = [(e, t) for e, t in zip(entries, texts, strict=True) if ref_of(e) not in updates]
    else:
        dropped = {id(names.entry(n)) for n in updates if n in names}
        pairs = [(e, t) for e, t in zip(entries, texts, strict=True) if id(e) not in dropped] if dropped \
            else list(zip(entries, texts, strict=True))
    added = {name: entry for name, entry in updates.items() if entry is not None}
    new = [(entry, _text(entry)) for entry in added.values()]
    if names.ordered:
        for pair in new:
            bisect.insort(pairs, pair, key=lambda p: entry_order(p[0]))
    else:
        pairs.extend(new)
        pairs.sort(key=lambda p: entry_order(p[0]))
    return [e for e, _ in pairs], [t for _, t in pairs], added


def _text(entry: Any) -> str:
    return canonical_json(entry).decode()
