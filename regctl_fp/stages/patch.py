"""The patch stage: an image moved onto another OS base without rebuilding it (see ``mutate.rebase``).

The old base is found from the image's own annotations (``org.opencontainers.image.base.digest`` in
the store, else ``.base.name`` re-resolved and checked against the digest), so images built by regfp,
ko or crane can be patched; callers may also name the old base explicitly. An image built by buildah or
podman holds its base's layers re-encoded (same diff_ids, other digests); it is matched by diff_id and
history, and the result says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ..errors import InvalidInput, RegfpError
from ..mutate import BASE_DIGEST, BASE_NAME, cnb_metadata, match_base, rebase, rebase_cnb
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor, Platform
from ..oci.digest import Digest
from ..oci.image import Image
from ..oci.manifest import Index
from ..stores.base import Store, read_image, write_image
from ..values import valueclass


class MissingBase(InvalidInput):
    """The old base cannot be found from the image's annotations. Exit 2 (name it with ``--from``), or the
    exit code of the error that hid it (a registry that did not answer)."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BaseMoved(RegfpError):
    pass


_FROM = "name the old base explicitly (--from REF)"


def old_base_of(image: Image, store: Store, load: Callable[[str], Image]) -> Image:
    """The base ``image`` was built on: by digest from ``store``, else ``load(base.name)`` if it still
    has that digest. Every failure says which annotation was looked up, and where."""
    digest = image.annotations.get(BASE_DIGEST)
    name = image.annotations.get(BASE_NAME)
    if digest is None:
        raise MissingBase(f"the image has no {BASE_DIGEST} annotation, so its base is unknown; {_FROM}")
    try:
        wanted = Digest.parse(digest)
    except InvalidInput as e:
        raise MissingBase(f"the image's {BASE_DIGEST} annotation is not a digest ({e}); {_FROM}") from None
    from ..stores.layout import LayoutStore

    if isinstance(store, LayoutStore) and store.has_blob(wanted):
        return read_image(store, store.resolve_digest(wanted), image.config.platform)
    where = f"the layout {store.path}" if isinstance(store, LayoutStore) else "the image's store"
    looked = f"{BASE_DIGEST} {digest} is not in {where}"
    if name is None:
        raise MissingBase(f"cannot find the image's old base: {looked}, and the image has no {BASE_NAME} "
                          f"annotation to load it by; {_FROM}")
    try:
        found = load(name)
    except RegfpError as e:
        raise MissingBase(f"cannot find the image's old base: {looked}, and loading its {BASE_NAME} {name!r} "
                          f"failed ({e}); {_FROM}", exit_code=e.exit_code) from None
    if found.digest != wanted:
        raise BaseMoved(f"the image's base {name} ({BASE_NAME}) is now {found.digest}, not {digest} that the "
                        f"image was built on ({BASE_DIGEST}), and {where} does not hold the old one; {_FROM}")
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


Matched = Literal["digest", "diff_id", "buildpacks"]


@valueclass
class PatchedImage:
    """One patched image: the index entry it replaces (None for a lone image), the result, the new base,
    and how the old base was found under the image (``diff_id``: its layers were re-encoded)."""

    entry: Descriptor | None
    image: Image
    base: Image
    matched: Matched


@valueclass
class Patched:
    """The result of patching one image or every platform of an index, ready to be written."""

    images: tuple[PatchedImage, ...]
    index: Index | None

    def write(self, store: Store) -> Descriptor:
        """New bases and patched images first, then (for an index) the new index."""
        entries = []
        for one in self.images:
            write_image(store, one.base)
            desc = write_image(store, one.image)
            if one.entry is not None:
                entries.append(Descriptor(desc.media_type, desc.digest, desc.size, annotations=one.entry.annotations,
                                          platform=one.entry.platform))
        if self.index is None:
            return write_image(store, self.images[0].image)
        index = Index(manifests=tuple(entries), media_type=self.index.media_type,
                      annotations=self.index.annotations)
        return store.put_manifest(index.to_bytes(), index.media_type)

    def summary(self) -> list[tuple[Platform, str, str, Matched]]:
        return [(one.image.config.platform, one.image.digest.text, one.base.digest.text, one.matched)
                for one in self.images]


def patch_descriptor(store: Store, desc: Descriptor, new_ref: str, load: Loader, *, old_ref: str | None,
                     channel: str | None, annotations: dict[str, str]) -> Patched:
    """Patch the image ``desc`` names in ``store``; an index is patched platform by platform."""
    def one(entry: Descriptor | None, image: Image) -> PatchedImage:
        platform = image.config.platform
        new = load(new_ref, platform)
        found: list[Image] = []

        def old() -> Image:
            base = load(old_ref, platform) if old_ref else old_base_of(image, store, lambda n: load(n, platform))
            found.append(base)
            return base

        patched = patch_onto(image, new, new_ref, old, explicit_old=old_ref is not None, channel=channel,
                             annotations=annotations)
        matched: Matched = match_base(image, found[0]) if found else "buildpacks"
        return PatchedImage(entry, patched, new, matched)

    if desc.media_type not in mt.INDEX_TYPES:
        return Patched((one(None, read_image(store, desc)),), None)
    index = Index.parse(store.get_manifest(desc), desc.media_type)
    out = []
    for entry in index.manifests:
        if entry.media_type not in mt.MANIFEST_TYPES:
            raise InvalidInput(f"index entry {entry.digest} is a {entry.media_type}; only image indexes of "
                               "image manifests can be rebased")
        out.append(one(entry, read_image(store, entry)))
    return Patched(tuple(out), index)


def run_image_reference(ref_text: str, image: Image) -> str:
    """What the CNB lifecycle records as ``runImage.reference``: ``registry/repo@digest`` for a registry
    image, the bare digest for a local one."""
    from ..refs import RegistryRef, parse_ref

    ref = parse_ref(ref_text)
    if isinstance(ref, RegistryRef):
        return f"{ref.registry}/{ref.repository}@{image.digest}"
    return image.digest.text
