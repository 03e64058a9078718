"""Rendering of images and indexes for ``inspect``: aligned plain lines (full digests, never wrapped,
so they can be grepped and copied), with bold labels on a terminal; or one JSON document."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..oci.descriptor import Descriptor
from ..oci.image import Image
from ..oci.manifest import Index
from . import output
from .output import clean

_LABEL_WIDTH = 14  # the longest label, "Artifact type", plus a space
_OCI_LAYER_PREFIX = "application/vnd.oci.image.layer.v1."


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def image_json(ref: str, image: Image) -> dict[str, Any]:
    return {
        "reference": ref,
        "digest": image.digest.text,
        "mediaType": image.media_type,
        "size": len(image.manifest_bytes),
        "artifactType": image.artifact_type,
        "annotations": dict(image.annotations),
        "config": {"digest": image.config_descriptor.digest.text, "mediaType": image.config_media_type,
                   "size": image.config_descriptor.size, **_config_content(image)},
        "layers": [{"digest": la.digest.text, "mediaType": la.media_type, "size": la.size,
                    "diffID": la.diff_id.text if la.diff_id else None,
                    "annotations": dict(la.descriptor.annotations)} for la in image.layers],
    }


def _config_content(image: Image) -> dict[str, Any]:
    """``content``: the config document itself. An image config is shown as regfp parsed it; any other
    config (Helm's chart metadata, an artifact's) as the JSON it holds, or, when it is not JSON or is
    larger than regfp reads configs, a ``note`` with its media type and size instead."""
    import json

    from ..oci.frozen import thaw
    from ..stores.base import CONFIG_LIMIT

    if image.is_container_image:
        return {"content": thaw(image.config.doc)}
    raw = image.config_bytes
    what = f"{image.config_media_type}, {len(raw)} bytes"
    if len(raw) > CONFIG_LIMIT:
        return {"content": None, "note": f"larger than {CONFIG_LIMIT} bytes, not shown: {what}"}
    try:  # JSON is UTF-8 (RFC 8259); NaN and Infinity are not JSON and could not be printed back as JSON
        return {"content": json.loads(raw.decode("utf-8"), parse_constant=_not_json)}
    except (ValueError, RecursionError):  # ValueError covers bad UTF-8 too
        return {"content": None, "note": f"not JSON: {what}"}


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _line(bold: str, rest: str = "") -> None:
    """``bold`` (a label, a header) and ``rest`` on one line of stdout: rich styles it on a terminal;
    anywhere else it is written plain, without importing rich."""
    if output.stdout_is_terminal():
        from rich.text import Text

        text = Text()
        text.append(bold, style="bold")
        text.append(rest)
        output.line(text)
    else:
        output.line(bold + rest)


def _field(label: str, values: str | Iterable[str]) -> None:
    """``label`` then its value(s), one per line, aligned; every value is sanitised."""
    items = [values] if isinstance(values, str) else list(values)
    for i, value in enumerate(items or [""]):
        _line((label if i == 0 else "").ljust(_LABEL_WIDTH), clean(value, keep_newlines=False))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> None:
    """Columns padded to their widest cell, two spaces apart, indented under the fields."""
    cells = [[clean(c, keep_newlines=False) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]

    def fmt(row: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return ("  " + "  ".join(parts)).rstrip()

    _line(fmt(header))
    for row in cells:
        output.line(fmt(row))


def _layer_type(media_type: str) -> str:
    return media_type[len(_OCI_LAYER_PREFIX):] if media_type.startswith(_OCI_LAYER_PREFIX) else media_type


def _pairs(mapping: Any) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(mapping.items())]


def image(ref: str, img: Image, json_out: bool, referrers: Sequence[Descriptor] = ()) -> None:
    if json_out:
        output.print_json({**image_json(ref, img), "referrers": [output.referrer_json(d) for d in referrers]})
        return
    cfg = img.config
    _field("Reference", ref)
    _field("Digest", img.digest.text)
    _field("Media type", img.media_type)
    _field("Size", human_size(len(img.manifest_bytes)))
    if img.artifact_type:
        _field("Artifact type", img.artifact_type)
    cd = img.config_descriptor
    _field("Config", f"{cd.digest.text} ({human_size(cd.size)}, {cd.media_type})")
    if img.is_container_image:
        _field("Platform", str(cfg.platform))
        if cfg.created:
            _field("Created", cfg.created)
        for label, value in (("Entrypoint", cfg.entrypoint), ("Cmd", cfg.cmd)):
            if value is not None:
                _field(label, " ".join(value))
        if cfg.workdir:
            _field("WorkingDir", cfg.workdir)
        if cfg.user:
            _field("User", cfg.user)
        if cfg.env:
            _field("Env", cfg.env)
        if cfg.labels:
            _field("Labels", _pairs(cfg.labels))
    if img.subject is not None:
        _field("Subject", img.subject.digest.text)
    if img.annotations:
        _field("Annotations", _pairs(img.annotations))
    total = sum(la.size for la in img.layers)
    count = len(img.layers)
    _field("Layers", f"{count} {'layer' if count == 1 else 'layers'}, {human_size(total)}")
    if img.layers:
        _table(("#", "size", "type", "digest", "diff_id"),
               [(str(i), human_size(la.size), _layer_type(la.media_type), la.digest.text,
                 la.diff_id.text if la.diff_id else "-") for i, la in enumerate(img.layers)],
               right=frozenset({0, 1}))
    _referrers(referrers)


def _referrers(referrers: Sequence[Descriptor]) -> None:
    """The artifacts whose subject this is (SBOMs, provenance, signatures): type and digest each."""
    if referrers:
        width = max(len(d.artifact_type or "-") for d in referrers)
        _field("Referrers", [f"{(d.artifact_type or '-').ljust(width)}  {d.digest.text}" for d in referrers])


def index(ref: str, desc: Descriptor, idx: Index, json_out: bool, referrers: Sequence[Descriptor] = ()) -> None:
    entries = [{"digest": d.digest.text, "mediaType": d.media_type, "size": d.size,
                "platform": d.platform.to_dict() if d.platform else None,
                "annotations": dict(d.annotations)} for d in idx.manifests]
    if json_out:
        output.print_json({"reference": ref, "digest": desc.digest.text, "mediaType": desc.media_type,
                           "size": desc.size, "artifactType": idx.artifact_type,
                           "platforms": [str(d.platform) for d in idx.manifests if d.platform],
                           "annotations": dict(idx.annotations), "manifests": entries,
                           "referrers": [output.referrer_json(d) for d in referrers]})
        return
    _field("Reference", ref)
    _field("Digest", desc.digest.text)
    _field("Media type", desc.media_type)
    _field("Size", human_size(desc.size))
    if idx.annotations:
        _field("Annotations", _pairs(idx.annotations))
    platforms = sorted({str(d.platform) for d in idx.manifests if d.platform})
    _field("Platforms", ", ".join(platforms) if platforms else "-")
    _field("Manifests", str(len(idx.manifests)))
    if idx.manifests:
        _table(("platform", "size", "digest", "media type"),
               [(str(d.platform or "-"), human_size(d.size), d.digest.text, d.media_type) for d in idx.manifests],
               right=frozenset({1}))
    _referrers(referrers)
