"""Command bodies: parse arguments into library calls, render results."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import RefError
from ..oci import mediatypes as mt
from ..oci.image import Image
from ..oci.manifest import Index
from ..refs import DirRef, LayoutRef, Ref, RegistryRef, parse_ref
from . import edge, output
from .progress import progress_bar


def _ref(text: str) -> Ref:
    """A reference; a bare path to an existing layout directory counts as ``oci:PATH``."""
    if ":" not in text.split("/")[0] and (Path(text) / "oci-layout").is_file():
        return LayoutRef(text)
    return parse_ref(text)


def _options():  # type: ignore[no-untyped-def]
    from ..sources import BuildOptions

    return BuildOptions(epoch=edge.source_date_epoch(), platform=edge.host_platform())


def inspect(text: str, platform: str | None, json_out: bool) -> None:
    from ..sources import load_image, open_layout_ref
    from ..stores.base import read_image
    from ..stores.layout import LayoutStore
    from . import render

    ref = _ref(text)
    want = edge.parse_platform(platform)
    if isinstance(ref, LayoutRef):
        store, desc = open_layout_ref(ref)
        if desc.media_type in mt.INDEX_TYPES and want is None:
            index = Index.parse(store.get_manifest(desc), desc.media_type)
            render.index(text, desc, index, json_out)
            return
        image = read_image(store, desc, want)
        render.image(text, image, json_out)
        return
    if isinstance(ref, DirRef):
        with tempfile.TemporaryDirectory(prefix="regfp-inspect-") as tmp, \
                LayoutStore.open_or_create(Path(tmp) / "layout") as work, progress_bar() as bar:
            image = load_image(ref, work=work, options=_options(), progress=bar)
            render.image(text, image, json_out)
        return
    _unsupported(ref, text)


def verify(text: str, json_out: bool) -> None:
    from ..sources import open_layout_ref
    from ..stores.layout import LayoutStore
    from ..verify import Report, verify_descriptor, verify_layout

    ref = _ref(text)
    if not isinstance(ref, LayoutRef):
        _unsupported(ref, text)
        return
    with progress_bar() as bar:
        if ref.name is None and ref.digest is None:
            report = verify_layout(LayoutStore.open(ref.path), bar)
        else:
            store, desc = open_layout_ref(ref)
            report = Report()
            verify_descriptor(store, desc, report, ref.name or str(ref.digest), bar)
    if json_out:
        output.print_json({"ok": report.ok, "verified": report.checked, "problems": report.problems})
    else:
        for label in report.checked:
            output.out_console().print(f"ok  {label}", soft_wrap=True, markup=False)
        for problem in report.problems:
            output.error(problem)
    if not report.ok:
        raise SystemExit(1)


def copy(src_text: str, dst_text: str, platform: str | None, json_out: bool) -> None:
    from ..sources import load_image, open_layout_ref
    from ..stores.base import write_image
    from ..stores.layout import LayoutStore
    from ..transfer import copy_descriptor

    src, dst = _ref(src_text), parse_ref(dst_text)
    if not isinstance(dst, LayoutRef):
        _unsupported(dst, dst_text)
        return
    if dst.name is None:
        raise RefError(dst_text, "the destination needs a name: oci:PATH:NAME")
    want = edge.parse_platform(platform)
    if isinstance(src, LayoutRef):
        src_store, desc = open_layout_ref(src)
        if want is not None and desc.media_type in mt.INDEX_TYPES:
            from ..stores.base import read_image

            desc = read_image(src_store, desc, want).descriptor
        with LayoutStore.open_or_create(dst.path) as store, progress_bar() as bar:
            on_bytes = bar.task(f"copy {src_text}", None)
            copied = copy_descriptor(src_store, store, desc, on_bytes)
            store.set_names({dst.name: copied})
    elif isinstance(src, DirRef):
        with LayoutStore.open_or_create(dst.path) as store, progress_bar() as bar:
            image: Image = load_image(src, work=store, options=_options(), progress=bar)
            copied = write_image(store, image)
            store.set_names({dst.name: copied})
    else:
        _unsupported(src, src_text)
        return
    if json_out:
        output.print_json({"source": src_text, "destination": dst_text, "digest": copied.digest.text,
                           "mediaType": copied.media_type, "size": copied.size})
    else:
        output.out_console().print(f"{dst_text} {copied.digest}", soft_wrap=True, markup=False)


def gc(text: str, dry_run: bool, json_out: bool) -> None:
    from ..stores.layout import LayoutStore

    path = text[4:] if text.startswith("oci:") else text
    report = LayoutStore.open(path).gc(dry_run=dry_run)
    if json_out:
        output.print_json({"removed": [{"digest": d.text, "size": s} for d, s in report.removed],
                           "freed": report.freed, "kept": report.kept, "tempFiles": report.temp_files,
                           "dryRun": dry_run})
        return
    verb = "would remove" if dry_run else "removed"
    output.out_console().print(f"{verb} {len(report.removed)} blobs ({_size(report.freed)}), kept {report.kept}"
                               + (f", {report.temp_files} temp files" if report.temp_files else ""),
                               markup=False)


def _unsupported(ref: Ref, text: str) -> None:
    if isinstance(ref, RegistryRef):
        raise RefError(text, f"{ref} is a registry reference; registries are not supported by this version "
                             "yet: use oci:PATH:NAME or dir:PATH")
    raise RefError(text, "not usable here")


def _size(n: int) -> str:
    from .render import human_size

    return human_size(n)
