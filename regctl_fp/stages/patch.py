"""The patch stage: an image moved onto another OS base without rebuilding it (see ``mutate.rebase``).

The old base is found from the image's own annotations (``org.opencontainers.image.base.digest`` in
the store, else ``.base.name`` re-resolved and checked against the digest), so images built by regfp,
ko or crane can be patched; callers may also name the old base explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidInput, RegfpError
from ..mutate import BASE_DIGEST, BASE_NAME, cnb_metadata, rebase, rebase_cnb
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor, Platform
from ..oci.digest import Digest
from ..oci.image import Image
from ..oci.manifest import Index
from ..stores.base import Store, read_image, write_image


class MissingBase(InvalidInput):
    pass


class BaseMoved(RegfpError):
    pass


def old_base_of(image: Image, store: Store, load: Callable[[str], Image]) -> Image:
    """The base ``image`` was built on: by digest from ``store``, else ``load(base.name)`` if it still
    has that digest."""
    digest = image.annotations.get(BASE_DIGEST)
    name = image.annotations.get(BASE_NAME)
    if digest is None:
        raise MissingBase("the image has no org.opencontainers.image.base.digest annotation, so its base is "
                          "unknown; name the old base explicitly (--from REF)")
    wanted = Digest.parse(digest)
    if store.has_blob(wanted):
        from ..stores.layout import LayoutStore

        if isinstance(store, LayoutStore):
            return read_image(store, store.resolve_digest(wanted), image.config.platform)
    if name is None:
        raise MissingBase(f"the image's base {digest} is not in the store and it has no "
                          "org.opencontainers.image.base.name annotation; name the old base (--from REF)")
    found = load(name)
    if found.digest != wanted:
        raise BaseMoved(f"the image's base {name} is now {found.digest}, not {digest} that the image was built "
                        "on, and the store does not hold the old one; name the old base (--from REF)")
    return found


def patch_onto(image: Image, new_base: Image, base_name: str, old_base: Callable[[], Image], *,
               explicit_old: bool = False, channel: str | None, annotations: dict[str, str]) -> Image:
    """``image`` on ``new_base``. The old base comes from ``old_base()``, except for a Buildpacks image
    without OCI base annotations (and no explicit old base): its lifecycle label says where the run image
    ends, and the label is updated as the lifecycle's rebaser does."""
    if not explicit_old and BASE_DIGEST not in image.annotations and cnb_metadata(image) is not None:
        return rebase_cnb(image, new_base, base_name=base_name, reference=run_image_reference(base_name, new_base),
                          channel=channel).with_annotations(annotations)
    return patch(image, old_base(), new_base, base_name=base_name, channel=channel, annotations=annotations)


def patch(image: Image, old_base: Image, new_base: Image, *, base_name: str, channel: str | None,
          annotations: dict[str, str]) -> Image:
    """The patched image: only config and manifest are new; no layer blob is read or written."""
    return rebase(image, old_base, new_base, base_name=base_name, channel=channel).with_annotations(annotations)


Loader = Callable[[str, Platform | None], Image]


@dataclass(frozen=True)
class Patched:
    """The result of patching one image or every platform of an index, ready to be written."""

    images: tuple[tuple[Descriptor | None, Image, Image], ...]  # (index entry, patched image, new base)
    index: Index | None

    def write(self, store: Store) -> Descriptor:
        """New bases and patched images first, then (for an index) the new index."""
        entries = []
        for entry, image, base in self.images:
            write_image(store, base)
            desc = write_image(store, image)
            if entry is not None:
                entries.append(Descriptor(desc.media_type, desc.digest, desc.size, annotations=entry.annotations,
                                          platform=entry.platform))
        if self.index is None:
            return write_image(store, self.images[0][1])
        index = Index(manifests=tuple(entries), media_type=self.index.media_type,
                      annotations=self.index.annotations)
        return store.put_manifest(index.to_bytes(), index.media_type)

    def summary(self) -> list[tuple[Platform, str, str]]:
        return [(img.config.platform, img.digest.text, base.digest.text) for _, img, base in self.images]


def patch_descriptor(store: Store, desc: Descriptor, new_ref: str, load: Loader, *, old_ref: str | None,
                     channel: str | None, annotations: dict[str, str]) -> Patched:
    """Patch the image ``desc`` names in ``store``; an index is patched platform by platform."""
    def one(image: Image) -> tuple[Image, Image]:
        platform = image.config.platform
        new = load(new_ref, platform)

        def old() -> Image:
            return load(old_ref, platform) if old_ref else old_base_of(image, store, lambda n: load(n, platform))

        return patch_onto(image, new, new_ref, old, explicit_old=old_ref is not None, channel=channel,
                          annotations=annotations), new

    if desc.media_type not in mt.INDEX_TYPES:
        image, new = one(read_image(store, desc))
        return Patched(((None, image, new),), None)
    index = Index.parse(store.get_manifest(desc), desc.media_type)
    out = []
    for entry in index.manifests:
        if entry.media_type not in mt.MANIFEST_TYPES:
            raise InvalidInput(f"index entry {entry.digest} is a {entry.media_type}; only image indexes of "
                               "image manifests can be rebased")
        image, new = one(read_image(store, entry))
        out.append((entry, image, new))
    return Patched(tuple(out), index)


def run_image_reference(ref_text: str, image: Image) -> str:
    """What the CNB lifecycle records as ``runImage.reference``: ``registry/repo@digest`` for a registry
    image, the bare digest for a local one."""
    from ..refs import RegistryRef, parse_ref

    ref = parse_ref(ref_text)
    if isinstance(ref, RegistryRef):
        return f"{ref.registry}/{ref.repository}@{image.digest}"
    return image.digest.text
