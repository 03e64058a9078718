"""``regfp diff A B``: layers, config and files that differ, as tables on a terminal or one JSON document.
Two image indexes are compared platform by platform (``--platform`` compares one); an index against an
image, the index's image for that image's platform. Exit status as diff(1) and cmp(1): 0 the same
manifest, 1 different, 2 trouble (see ``cli.main``)."""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from ..diff import FileChange, ImageDiff, IndexDiff, diff_images, diff_indexes
from ..errors import InvalidInput
from ..oci.descriptor import Descriptor, Platform
from ..oci.image import Image
from ..values import valueclass
from . import edge, output
from .output import clean
from .render import _layer_type, human_size

if TYPE_CHECKING:
    from ..stores.base import ReadStore

_STYLE = {"added": "green", "removed": "red", "modified": "yellow", "shared": "dim", "same": "dim"}


@valueclass
class _Index:
    """One side that is an image index: its descriptor, annotations and each platform's image."""
    desc: Descriptor
    annotations: dict[str, str]
    images: dict[Platform, Image]


def diff(a_text: str, b_text: str, platform: str | None, files: bool, json_out: bool) -> None:
    want = edge.parse_platform(platform)
    with ExitStack() as stack:
        a = _load(a_text, want, stack)
        b = _load(b_text, want, stack)
        if isinstance(a, _Index) and isinstance(b, _Index):
            both = diff_indexes((a.desc.digest, a.annotations, a.images), (b.desc.digest, b.annotations, b.images),
                               files=files)
            _show_indexes(a_text, b_text, a, b, both, json_out)
            identical = both.identical
        else:
            image_a = _pick(a_text, a, b) if isinstance(a, _Index) else a
            image_b = _pick(b_text, b, a) if isinstance(b, _Index) else b
            result = diff_images(image_a, image_b, files=files)
            _show(a_text, b_text, result, json_out)
            identical = result.identical
    if not identical:  # as diff(1) and cmp(1): 1 when the two differ
        raise SystemExit(1)


def _show(a_text: str, b_text: str, result: ImageDiff, json_out: bool) -> None:
    if json_out:
        doc: dict[str, Any] = {"a": _side(a_text, result.a), "b": _side(b_text, result.b)}
        doc.update(result.to_json())
        output.print_json(doc)
    else:
        _render(a_text, b_text, result)


def _pick(text: str, index: _Index, other: _Index | Image) -> Image:
    """The index's image for the platform of the image it is compared with."""
    assert isinstance(other, Image)
    want = other.config.platform
    found = next((im for p, im in index.images.items() if p.matches(want) and want.matches(p)), None)
    if found is None:
        held = ", ".join(map(str, index.images)) or "none"
        raise InvalidInput(f"{text} is an image index without the other image's platform {want} (it holds: "
                           f"{held}); compare one platform with --platform")
    return found


def _side(text: str, image: Image) -> dict[str, Any]:
    return {"reference": text, "digest": image.digest.text, "mediaType": image.media_type,
            "artifactType": image.artifact_type, "layers": len(image.layers)}


def _index_side(text: str, index: _Index) -> dict[str, Any]:
    return {"reference": text, "digest": index.desc.digest.text, "mediaType": index.desc.media_type,
            "platforms": [str(p) for p in index.images]}


def _load(text: str, want: Platform | None, stack: ExitStack) -> Image | _Index:
    """An image (or, without ``want``, an index) for any reference regfp reads (a ``dir:`` that skopeo's
    dir: transport wrote holds one stored); registry sessions and ``dir:`` work layouts stay open (in
    ``stack``) while the layers are read."""
    from ..refs import DirRef, LayoutRef, RegistryRef
    from ..sources import load_image, open_layout_ref
    from ..stores.layout import LayoutStore
    from .commands import _options, _ref, skopeo_dir

    ref = _ref(text)
    held = skopeo_dir(ref)
    if held is not None:
        return _read(*held, want)
    if isinstance(ref, DirRef):
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="regfp-diff-"))
        work = stack.enter_context(LayoutStore.open_or_create(Path(tmp) / "layout"))
        return load_image(ref, work=work, platform=want, options=_options(want))
    store: ReadStore
    if isinstance(ref, RegistryRef):
        from . import registry_session

        store, desc = stack.enter_context(registry_session.session()).open(ref)
    else:
        assert isinstance(ref, LayoutRef)
        store, desc = open_layout_ref(ref)
    return _read(store, desc, want)


def _read(store: ReadStore, desc: Descriptor, want: Platform | None) -> Image | _Index:
    from ..oci import mediatypes as mt
    from ..oci.manifest import Index
    from ..stores.base import read_image, read_index_images

    if want is None and desc.media_type in mt.INDEX_TYPES:
        index = Index.parse(store.get_manifest(desc), desc.media_type)
        return _Index(desc, dict(index.annotations), read_index_images(store, desc))
    return read_image(store, desc, want)


def _show_indexes(a_text: str, b_text: str, a: _Index, b: _Index, d: IndexDiff, json_out: bool) -> None:
    if json_out:
        doc: dict[str, Any] = {"a": _index_side(a_text, a), "b": _index_side(b_text, b)}
        doc.update(d.to_json())
        output.print_json(doc)
        return
    for label, text, side in (("A", a_text, a), ("B", b_text, b)):
        shown = f"{text}  {side.desc.digest}  (index: {', '.join(map(str, side.images)) or 'no platforms'})"
        output.line(Text.assemble((f"{label}  ", "bold"), clean(shown, keep_newlines=False)))
    if d.identical:
        output.line("identical: the two references name the same index")
        return
    s = d.summary()
    output.line(Text(f"\nPlatforms: {s['platformsSame']} same, {s['platformsModified']} modified, "
                     f"{s['platformsAdded']} added, {s['platformsRemoved']} removed", style="bold"))
    if d.annotations:
        output.line(Text(f"\nIndex annotations: {len(d.annotations)} changed", style="bold"))
        table = _table("field", "A", "B")
        for c in d.annotations:
            table.add_row(_cell(c.field), _cell(_value(c.before), "red"), _cell(_value(c.after), "green"))
        _print(table)
    for p in d.platforms:
        image = p.b or p.a
        assert image is not None
        output.line(Text.assemble(("\n== ", "bold"), (str(p.platform), "bold"), ": ", (p.change, _STYLE[p.change]),
                                  f"  {image.digest}" if p.diff is None or p.diff.identical else ""))
        if p.diff is not None and not p.diff.identical:
            _render(f"{a_text} [{p.platform}]", f"{b_text} [{p.platform}]", p.diff)


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 2, 0, 0))
    for c in columns:
        table.add_column(c, no_wrap=True)
    return table


def _print(table: Table) -> None:
    """Never wrapped or cut (full digests and paths, so they can be copied and grepped): as wide as it needs."""
    from rich.measure import Measurement

    console = output.out_console()
    needed = Measurement.get(console, console.options.update_width(1 << 16), table).maximum
    before = console.width
    console.width = max(before, needed)
    try:
        console.print(table, crop=False)
    finally:
        console.width = before


def _cell(value: object, style: str = "") -> Text:
    return Text(clean("-" if value is None else str(value), keep_newlines=False), style=style)


def _render(a_text: str, b_text: str, d: ImageDiff) -> None:
    for label, text, image in (("A", a_text, d.a), ("B", b_text, d.b)):
        output.line(Text.assemble((f"{label}  ", "bold"), clean(f"{text}  {image.digest}", keep_newlines=False)))
    if d.identical:
        output.line("identical: the two references name the same manifest")
        return
    s = d.summary()
    output.line(Text(f"\nLayers: {s['layersShared']} shared, {s['layersRemoved']} removed, {s['layersAdded']} added "
                     f"(first {d.common_prefix} identical)", style="bold"))
    rows = [("removed", x) for x in d.removed] + [("shared", x) for x in d.shared] + [("added", x) for x in d.added]
    if rows:
        table = _table("", "#", "size", "digest", "type / title")
        for status, ref in rows:
            desc = ref.layer.descriptor
            what = desc.annotations.get("org.opencontainers.image.title") or _layer_type(desc.media_type)
            table.add_row(_cell(status, _STYLE[status]), _cell(ref.index), _cell(human_size(desc.size)),
                          _cell(desc.digest.text), _cell(what))
        _print(table)
    changes = list(d.config) + list(d.annotations)
    output.line(Text(f"\nConfig and annotations: {len(changes)} changed", style="bold"))
    if changes:
        table = _table("field", "A", "B")
        for c in changes:
            table.add_row(_cell(c.field), _cell(_value(c.before), "red"), _cell(_value(c.after), "green"))
        _print(table)
    if d.files is None:
        output.line(Text("\nFiles: not compared (artifacts, or layers that are not tar archives)", style="bold"))
        return
    output.line(Text(f"\nFiles: {s['filesAdded']} added, {s['filesRemoved']} removed, {s['filesModified']} modified",
                     style="bold"))
    if d.files:
        table = _table("", "path", "kind", "size", "mode", "details")
        for f in d.files:
            table.add_row(*_file_row(f))
        _print(table)


def _value(value: object) -> str | None:
    if isinstance(value, list):
        return " ".join(value)
    return None if value is None else str(value)


def _file_row(f: FileChange) -> tuple[Text, ...]:
    info = f.after or f.before
    assert info is not None
    sign = {"added": "+", "removed": "-", "modified": "~"}[f.change]
    size = human_size(info.size) if info.kind == "file" else ""
    return (_cell(sign, _STYLE[f.change]), _cell("/" + f.path), _cell(info.kind), _cell(size),
            _cell(f"{info.mode:04o}"), _cell(", ".join(f.details)))
