"""index.json in regfp's line form: a write re-encodes only what it changes, and the text kept for an
entry is always exactly that entry, whatever the file held before (another tool's form, or a hostile
one made to look like the line form)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from regctl_fp.oci.config import ImageConfig
from regctl_fp.oci.image import Image
from regctl_fp.stores.base import write_image
from regctl_fp.stores.indexfile import REF_NAME, IndexText, decode, encode
from regctl_fp.stores.layout import LayoutStore

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _entry(name: str | None, n: int) -> dict[str, object]:
    e: dict[str, object] = {"mediaType": MANIFEST, "digest": f"sha256:{n:064x}", "size": n}
    if name is not None:
        e["annotations"] = {REF_NAME: name}
    return e


def _consistent(found: IndexText, data: bytes) -> None:
    assert found.doc == json.loads(data)
    if found.raws is not None:
        assert [json.loads(r) for r in found.raws] == found.doc["manifests"]


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3),
                           max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(json_values, max_size=6), st.dictionaries(st.sampled_from(["annotations", "subject", "x"]),
                                                          json_values, max_size=2),
       st.sampled_from(["lines", "compact", "indent", "lines-split"]))
def test_any_form_decodes_to_what_json_reads(entries: list[object], top: dict[str, object], form: str) -> None:
    doc = {"schemaVersion": 2, **top, "manifests": entries}
    if form == "lines":
        data = encode(doc, [json.dumps(e, separators=(",", ":")) for e in entries])
    elif form == "lines-split":  # a value's text broken over two lines: must not be taken as entries
        data = encode(doc, [json.dumps(e, indent=1).replace("\n", "") for e in entries])
        data = data.replace(b"[\n", b"[\n\n", 1) if entries else data
    elif form == "compact":
        data = json.dumps(doc, separators=(",", ":")).encode()
    else:
        data = json.dumps(doc, indent=2).encode()
    _consistent(decode(data), data)


def test_a_crafted_line_form_is_not_trusted() -> None:
    """Lines that each start with '{' and end with '}' but split values differently (one entry over two
    lines, two entries on one): counting lines would match, scanning value by value does not."""
    data = (b'{"mediaType":"m","schemaVersion":2,"manifests":[\n'
            b'{"a":[{"q":1},\n{"r":2}]},\n{"c":1},{"d":2}\n]}\n')
    found = decode(data)
    _consistent(found, data)
    assert found.raws is None


def test_writes_keep_other_entries_text_and_order(tmp_path: Path) -> None:
    """A layout whose index another tool wrote (pretty-printed, unsorted, an unnamed entry) gets a valid
    index in the line form, sorted, with every entry it held; a second write inserts in order."""
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
    text = index.read_bytes()
    found = decode(text)
    assert found.raws is not None
    _consistent(found, text)
    names = [e.get("annotations", {}).get(REF_NAME) for e in found.doc["manifests"]]
    assert names == [None, "b:1", "c:1"]
    with LayoutStore.open(tmp_path / "l") as store:
        store.set_names({"bb:1": desc})
        assert list(LayoutStore.open(tmp_path / "l").names()) == ["b:1", "bb:1", "c:1"]
    _consistent(decode(index.read_bytes()), index.read_bytes())
