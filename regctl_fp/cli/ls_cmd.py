"""``regfp ls``: the names of an OCI layout or the tags of a registry repository, each with the digest and
media type it points at (what ``crane ls``, ``regctl tag ls`` and ``umoci ls`` are reached for), and the
referrers of each (artifactType, digest). Referrers are not names: a layout's unnamed referrer entries
and a registry's referrers tags (``sha256-<hex>``) are shown under their subject, not as rows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RefError
from ..refs import LayoutRef, RegistryRef, parse_ref
from . import output

if TYPE_CHECKING:
    from ..oci.descriptor import Descriptor


def ls(text: str, json_out: bool) -> None:
    ref = _target(text)
    if isinstance(ref, LayoutRef):
        entries = _layout_entries(ref, text)
        where = "layout"
    else:
        entries = _registry_entries(ref)
        where = "registry"
    if json_out:
        output.print_json({"reference": text, "kind": where, "entries": entries})
        return
    if not entries:
        output.note(f"{text}: no {'names' if where == 'layout' else 'tags'}")
        return
    rows = []
    for e in entries:
        rows.append((e["name"] or "-", e["digest"], e["mediaType"]))
        rows += [(f"  referrer {r['artifactType'] or '-'}", r["digest"], r["mediaType"]) for r in e["referrers"]]
    output.columns(None, rows)


def _target(text: str) -> LayoutRef | RegistryRef:
    """A layout (a path, ``oci:PATH``) or a registry repository (``HOST/REPO``). A word without a slash,
    or anything that exists here, is a path: ``regfp ls out`` never asks Docker Hub about ``library/out``."""
    if text.startswith("oci:"):
        ref = parse_ref(text)
    elif "/" not in text or Path(text).exists() or text.startswith(("./", "../", "/")):
        ref = LayoutRef(text)
    else:
        ref = parse_ref(text)
    if isinstance(ref, LayoutRef):
        if ref.name is not None or ref.digest is not None:
            raise RefError(text, f"ls lists a whole layout: give its path ({ref.path}), not one image")
        return ref
    if isinstance(ref, RegistryRef):
        if ref.digest is not None or ":" in text.rpartition("/")[2]:  # parsing fills in :latest itself
            raise RefError(text, f"ls lists a repository: give {ref.registry}/{ref.repository}, without a tag "
                                 "or digest")
        return ref
    raise RefError(text, "ls lists an OCI layout (PATH or oci:PATH) or a registry repository (HOST/REPO)")


def _entry(name: str | None, desc: Descriptor, referrers: list[Descriptor]) -> dict[str, Any]:
    return {"name": name, "digest": desc.digest.text, "mediaType": desc.media_type, "size": desc.size,
            "referrers": [output.referrer_json(d) for d in referrers]}


def _layout_entries(ref: LayoutRef, text: str) -> list[dict[str, Any]]:
    from ..oci.annotation_keys import SUBJECT
    from ..stores.layout import LayoutStore

    store = LayoutStore.open(ref.path)
    manifests = store.read_index().manifests
    named = sorted((d for d in manifests if d.ref_name), key=lambda d: d.ref_name or "")
    unnamed = [d for d in manifests if not d.ref_name and SUBJECT not in d.annotations]
    return [_entry(d.ref_name, d, store.referrers(d.digest)) for d in [*named, *unnamed]]


def _registry_entries(ref: RegistryRef) -> list[dict[str, Any]]:
    from ..errors import NotFound
    from ..oci.referrer import is_referrers_tag, referrers_tag
    from .registry_session import session

    out = []
    with session() as s:
        store = s.store(ref)
        tags = set(store.tags(ref.repository))
        for tag in sorted(t for t in tags if not is_referrers_tag(t)):
            try:
                desc = store.resolve(f"{ref.repository}:{tag}")
            except NotFound:  # deleted while listing: gone, not an error
                continue
            # Once the registry is known to lack the referrers API, only a subject with a referrers tag
            # has referrers: no request for the others.
            api = store.referrers_api.get(ref.repository)
            listed = store.referrers(desc.digest) if api is not False or referrers_tag(desc.digest) in tags else []
            entry = _entry(tag, desc, listed)
            entry["reference"] = f"{ref.registry}/{ref.repository}:{tag}"
            out.append(entry)
    return out
