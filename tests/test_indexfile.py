"""index.json writes: a write moves only the names it is given, keeps every other entry as it was, and
keeps the entries in order (by name, then digest; unnamed first) whatever order another tool left them
in; names read after a write equal names read from the file."""

from __future__ import annotations

import json
import random
from pathlib import Path

from regctl_fp.oci.config import ImageConfig
from regctl_fp.oci.image import Image
from regctl_fp.stores.base import write_image
from regctl_fp.stores.indexfile import REF_NAME, Edit, Names, entry_order, merged
from regctl_fp.stores.layout import LayoutStore

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _entry(name: str | None, n: int) -> dict[str, object]:
    e: dict[str, object] = {"mediaType": MANIFEST, "digest": f"sha256:{n:064x}", "size": n}
    if name is not None:
        e["annotations"] = {REF_NAME: name}
    return e


def test_merged_inserts_in_order_and_drops_by_identity() -> None:
    """Random indexes, in order or not, with repeated names and unnamed entries: the result is the old
    entries less every entry of a moved name, plus the new ones, sorted; names derived equal names read."""
    rng = random.Random(7)
    for trial in range(300):
        pool = [f"n{i:03d}" for i in range(rng.randint(0, 30))]
        entries = [_entry(rng.choice(pool) if pool and rng.random() > 0.1 else None, rng.randint(0, 99))
                   for _ in range(rng.randint(0, 25))]
        if trial % 2:
            entries.sort(key=entry_order)
        names = Names(entries, "t")
        moved = [*rng.sample(pool, min(len(pool), rng.randint(0, 4))), f"new{trial}"]
        updates = {n: (_entry(n, 1000 + i) if rng.random() > 0.3 else None) for i, n in enumerate(moved)}
        after, added, edit = merged(entries, names, updates)
        want = [e for e in entries if e.get("annotations", {}).get(REF_NAME) not in updates]  # type: ignore[union-attr]
        want += [e for e in updates.values() if e is not None]
        assert sorted(map(json.dumps, after)) == sorted(map(json.dumps, want))
        assert after == sorted(after, key=entry_order)
        # The edit merged reports is the one a comparison of the lists finds, entry for entry.
        found = Edit.between(entries, after)
        assert edit.old_with_digest == found.old_with_digest == names.with_digest
        assert sorted(map(id, edit.removed)) == sorted(map(id, found.removed))
        assert sorted(map(id, edit.added)) == sorted(map(id, found.added))
        derived = names.updated(after, set(updates), added, ordered=True, edit=edit)
        fresh = Names(after, "t")
        assert dict(derived) == dict(fresh) and derived.repeated == fresh.repeated
        assert derived.with_digest == fresh.with_digest


def test_writes_into_a_foreign_index_keep_its_entries_and_order_them(tmp_path: Path) -> None:
    """A layout whose index another tool wrote (pretty-printed, unsorted, an unnamed entry): a write
    keeps every entry it holds, sorted; a second write inserts in order."""
    with LayoutStore.open_or_create(tmp_path / "l") as store:
        desc = write_image(store, Image(config=ImageConfig.new()))
        store.set_names({"b:1": desc, "a:1": desc})
    index = tmp_path / "l" / "index.json"
    doc = json.loads(index.read_text())
    doc["manifests"].append({**doc["manifests"][0], "annotations": {"org.example": "unnamed"}})
    doc["manifests"].reverse()
    index.write_text(json.dumps(doc, indent=3))
    with LayoutStore.open(tmp_path / "l") as store:
        store.set_names({"c:1": desc, "a:1": None})
        assert sorted(store.names()) == ["b:1", "c:1"]
    names = [e.get("annotations", {}).get(REF_NAME) for e in json.loads(index.read_text())["manifests"]]
    assert names == [None, "b:1", "c:1"]
    with LayoutStore.open(tmp_path / "l") as store:
        store.set_names({"bb:1": desc})
        assert dict(store.names()) == dict(LayoutStore.open(tmp_path / "l").names())
    assert list(LayoutStore.open(tmp_path / "l").names()) == ["b:1", "bb:1", "c:1"]


def test_a_write_splices_the_canonical_text_and_gives_what_encoding_would() -> None:
    """Entries added and removed by a write are spliced into the text read: for a canonical index the
    result is byte for byte its canonical encoding; a file in another form is not spliced (None)."""
    from regctl_fp.oci.canonical import canonical_json
    from regctl_fp.stores.indexfile import MAX_SPLICES, spliced

    rng = random.Random(11)
    for trial in range(400):
        n = rng.randint(0, 30)
        entries = sorted((_entry(f"n{i:03d}" if rng.random() > 0.1 else None, rng.randint(0, 10**6))
                          for i in range(n)), key=entry_order)
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
        if trial % 3 == 0:
            doc["annotations"] = {"org.example": "top"}
        text = canonical_json(doc)
        names = Names(entries, "t")
        pool = [f"n{i:03d}" for i in range(n)] + [f"new{trial}-{j}" for j in range(3)]
        moved = rng.sample(pool, min(len(pool), rng.randint(1, 6)))
        updates = {m: (_entry(m, 10**7 + i) if rng.random() > 0.35 else None) for i, m in enumerate(moved)}
        after, _, edit = merged(entries, names, updates)
        want = canonical_json({**doc, "manifests": after})
        assert spliced(text, entries, after) == want, (trial, updates)
        assert spliced(text, entries, after, edit) == want, (trial, updates)  # merged's own edit
        other = spliced(json.dumps(doc, indent=1).encode(), entries, after)  # another tool's form
        assert other is None or json.loads(other) == json.loads(want)
    many = [_entry(f"m{i:03d}", i) for i in range(MAX_SPLICES + 1)]
    assert spliced(canonical_json({"manifests": []}), [], many) is None  # too many: encoded whole
    twins = [_entry("a", 1), _entry(None, 5), _entry(None, 5)]  # the same text twice: not spliced
    assert spliced(canonical_json({"manifests": twins}), twins, twins[:2]) is None


def test_stage_keys_are_found_in_one_pass_and_odd_values_are_ignored() -> None:
    entries = [_entry("a", 1), _entry("b", 2), _entry("c", 3), _entry(None, 4)]
    entries[0]["annotations"]["dev.regfp.key"] = "k1"  # type: ignore[index]
    entries[1]["annotations"]["dev.regfp.key"] = ["not", "a", "string"]  # type: ignore[index]
    entries[2]["annotations"]["dev.regfp.key"] = "k1"  # type: ignore[index]
    names = Names(entries, "t")
    assert names.holding_key("k1") == "a" and names.holding_key("k2") is None
    after, added, edit = merged(entries, names, {"a": None})
    assert names.updated(after, {"a"}, added, ordered=True, edit=edit).holding_key("k1") == "c"


def test_a_nested_copy_of_an_entry_is_never_taken_for_it() -> None:
    """A foreign index holding, in another field, the canonical text of an entry whose own text is in
    another form: the extra digest token gives it away, and the index is encoded whole instead."""
    from regctl_fp.oci.canonical import canonical_json
    from regctl_fp.stores.indexfile import spliced

    a, b = _entry("a", 1), _entry("b", 2)
    pretty = json.dumps({"manifests": [a, b]}, indent=1).encode()
    hostile = pretty[:-1] + b',"x":[' + canonical_json(a) + b"]}"
    doc = json.loads(hostile)
    old = doc["manifests"]
    names = Names(old, "t")
    after, _, edit = merged(old, names, {"a": None})
    assert spliced(hostile, old, after) is None
    assert spliced(hostile, old, after, edit) is None
    assert spliced(canonical_json({"manifests": old}), old, after) == canonical_json({"manifests": after})
