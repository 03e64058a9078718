"""Rich rendering of images and indexes for ``inspect``."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from ..oci.descriptor import Descriptor
from ..oci.image import Image
from ..oci.manifest import Index
from . import output


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _short(digest: str) -> str:
    return digest[: digest.index(":") + 13]


def image_json(ref: str, image: Image) -> dict[str, Any]:
    return {
        "reference": ref,
        "digest": image.digest.text,
        "mediaType": image.media_type,
        "size": len(image.manifest_bytes),
        "artifactType": image.artifact_type,
        "annotations": dict(image.annotations),
        "config": {"digest": image.config_descriptor.digest.text, "mediaType": image.config_media_type,
                   "size": image.config_descriptor.size, "content": _thawed(image)},
        "layers": [{"digest": la.digest.text, "mediaType": la.media_type, "size": la.size,
                    "diffID": la.diff_id.text if la.diff_id else None,
                    "annotations": dict(la.descriptor.annotations)} for la in image.layers],
    }


def _thawed(image: Image) -> Any:
    from ..oci.frozen import thaw

    return thaw(image.config.doc)


def image(ref: str, img: Image, json_out: bool) -> None:
    if json_out:
        output.print_json(image_json(ref, img))
        return
    con = output.out_console()
    cfg = img.config
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    head.add_row("Reference", ref)
    head.add_row("Digest", img.digest.text)
    head.add_row("Media type", img.media_type)
    if img.artifact_type:
        head.add_row("Artifact type", img.artifact_type)
    if img.is_container_image:
        head.add_row("Platform", str(cfg.platform))
        if cfg.created:
            head.add_row("Created", cfg.created)
        for label, value in (("Entrypoint", cfg.entrypoint), ("Cmd", cfg.cmd)):
            if value is not None:
                head.add_row(label, " ".join(value))
        if cfg.workdir:
            head.add_row("WorkingDir", cfg.workdir)
        if cfg.user:
            head.add_row("User", cfg.user)
        for i, item in enumerate(cfg.env):
            head.add_row("Env" if i == 0 else "", item)
        for i, (k, v) in enumerate(sorted(cfg.labels.items())):
            head.add_row("Labels" if i == 0 else "", f"{k}={v}")
    for i, (k, v) in enumerate(sorted(img.annotations.items())):
        head.add_row("Annotations" if i == 0 else "", f"{k}={v}")
    con.print(head)
    layers = Table(title=None, show_edge=False, header_style="bold")
    for col in ("#", "digest", "size", "media type", "diff_id"):
        layers.add_column(col, justify="right" if col in ("#", "size") else "left", overflow="fold")
    for i, la in enumerate(img.layers):
        layers.add_row(str(i), _short(la.digest.text), human_size(la.size), la.media_type,
                       _short(la.diff_id.text) if la.diff_id else "-")
    con.print(layers)
    total = sum(la.size for la in img.layers)
    con.print(f"{len(img.layers)} layers, {human_size(total)}", markup=False)


def index(ref: str, desc: Descriptor, idx: Index, json_out: bool) -> None:
    entries = [{"digest": d.digest.text, "mediaType": d.media_type, "size": d.size,
                "platform": d.platform.to_dict() if d.platform else None,
                "annotations": dict(d.annotations)} for d in idx.manifests]
    if json_out:
        output.print_json({"reference": ref, "digest": desc.digest.text, "mediaType": desc.media_type,
                           "annotations": dict(idx.annotations), "manifests": entries})
        return
    con = output.out_console()
    con.print(f"[bold]Reference[/]  {ref}\n[bold]Digest[/]     {desc.digest}\n[bold]Media type[/] {desc.media_type}")
    table = Table(show_edge=False, header_style="bold")
    for col in ("platform", "digest", "size", "media type"):
        table.add_column(col, overflow="fold")
    for d in idx.manifests:
        table.add_row(str(d.platform or "-"), _short(d.digest.text), human_size(d.size), d.media_type)
    con.print(table)
