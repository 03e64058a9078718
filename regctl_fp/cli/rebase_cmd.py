"""``regfp rebase``: move any image onto a new base, like ``crane rebase`` but with the prefix checks.

A multi-platform image (an index) is rebased platform by platform onto the matching platform of the
new base; ``--platform`` picks one platform instead. How the old base was matched under each image
(by digest, or by diff_id when a builder re-encoded its layers) is reported.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RefError
from ..refs import LayoutRef, parse_ref
from . import edge, options, output

if TYPE_CHECKING:
    from ..oci.descriptor import Platform
    from ..oci.image import Image


def rebase(src_text: str, new_text: str, dst_text: str, from_text: str | None, channel: str | None,
           platform_text: str | None, json_out: bool) -> None:
    from ..oci import mediatypes as mt
    from ..sources import load_image, open_layout_ref
    from ..stages.patch import patch_descriptor
    from ..stores.layout import LayoutStore

    src, dst = parse_ref(src_text), parse_ref(dst_text)
    if not isinstance(src, LayoutRef):
        raise RefError(src_text, "the image to rebase must be in an OCI layout (oci:PATH:NAME)")
    if not isinstance(dst, LayoutRef) or dst.name is None:
        raise RefError(dst_text, "the destination must be oci:PATH:NAME")
    build = options.build_options()
    want = edge.parse_platform(platform_text)
    src_store, desc = open_layout_ref(src)
    if want is not None and desc.media_type in mt.INDEX_TYPES:
        from ..stores.base import read_image

        desc = read_image(src_store, desc, want).descriptor
    # Everything is computed in a scratch layout first: nothing reaches DST unless every platform rebased.
    with tempfile.TemporaryDirectory(prefix="regfp-rebase-") as tmp, \
            LayoutStore.open_or_create(Path(tmp) / "work") as work:
        def load(text: str, platform: Platform | None) -> Image:
            return load_image(parse_ref(text), work=work, platform=platform, options=build)

        result = patch_descriptor(src_store, desc, new_text, load, old_ref=from_text, channel=channel,
                                  annotations={})
        with LayoutStore.open_or_create(dst.path) as out:
            written = result.write(out)
            out.set_names({dst.name: written})
    summary = result.summary()
    if json_out:
        output.print_json({"digest": written.digest.text, "mediaType": written.media_type,
                           "platforms": [{"platform": str(p), "digest": d, "base": b, "oldBaseMatchedBy": m}
                                         for p, d, b, m in summary]})
        return
    for platform, _, _, matched in summary:
        if matched == "diff_id":
            output.note(f"{platform}: the image holds its old base's layers re-encoded (same diff_ids, other "
                        "digests, as buildah and podman commit them); matched by diff_id and history\n")
    output.line(f"{dst_text} {written.digest}")
