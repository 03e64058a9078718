"""Which platforms a run builds, and each platform's image of a recipe reference.

A recipe is multi-platform when it lists ``platforms``, when its base is a per-platform mapping, or when
its base is an image index of more than one platform; then every stage it makes is an image index with
a platform on each entry. Otherwise (a single image base, no ``platforms``) it builds the host's platform
as one image, exactly as before platforms existed.
"""

from __future__ import annotations

from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor, Platform
from ..oci.errors import InvalidDocument
from ..oci.image import Image
from ..oci.manifest import Index
from ..recipe.platforms import Refs, parse_platform, same_platform
from ..recipe.yamlsrc import KeyPath
from ..refs import LayoutRef, RegistryRef
from ..sources import open_layout_ref
from ..stores.base import Store
from .run import Run


def run_platforms(run: Run) -> tuple[Platform, ...] | None:
    """The platforms the recipe builds, in its order; None for a single-platform recipe (one image)."""
    if "platforms" not in run.memo:
        run.memo["platforms"] = _resolve(run)
    found: tuple[Platform, ...] | None = run.memo["platforms"]
    return found


def _resolve(run: Run) -> tuple[Platform, ...] | None:
    r = run.lr.recipe
    if r.platforms:
        return tuple(parse_platform(p) for p in r.platforms)
    if r.build is None and (r.patch is None or r.patch.from_ is None):
        return None  # matrix and work sections find their own platforms
    refs = run.lr.base_refs()
    if refs.single is None:
        return refs.platforms
    served = index_platforms(run, refs.single)
    return served if served is not None and len(served) > 1 else None


def index_platforms(run: Run, ref_text: str) -> tuple[Platform, ...] | None:
    """The platforms of the image index ``ref_text`` names (None: it names one image, or a ``dir:``
    tree). Entries without a real platform (attestations: unknown/unknown) are not platforms."""
    found = open_index(run, ref_text)
    if found is None:
        return None
    store, desc = found
    index = Index.parse(store.get_manifest(desc), desc.media_type)
    out: list[Platform] = []
    for d in index.manifests:
        p = d.platform
        if p is not None and p.os != "unknown" and not any(same_platform(p, q) for q in out):
            out.append(p)
    return tuple(out)


def open_index(run: Run, ref_text: str) -> tuple[Store, Descriptor] | None:
    """The store and descriptor of the image index ``ref_text`` names (None: not an index)."""
    ref = run.lr.image_ref(ref_text)
    store: Store
    if isinstance(ref, LayoutRef):
        store, desc = open_layout_ref(ref)
    elif isinstance(ref, RegistryRef) and run.options.registry is not None:
        store, desc = run.options.registry(ref)
    else:
        return None
    return (store, desc) if desc.media_type in mt.INDEX_TYPES else None


def from_digest(run: Run, ref_text: str) -> str:
    """The digest of patch.from's image: its index's when the recipe patches several platforms of it
    (the whole index is copied in and patched platform by platform), else its image's (for an index,
    the host's platform's, as before platforms existed)."""
    if run_platforms(run) is not None:
        found = open_index(run, ref_text)
        if found is not None:
            return found[1].digest.text
    return run.image(ref_text).digest.text


def platform_image(run: Run, refs: Refs, platform: Platform, where: KeyPath) -> Image:
    """``platform``'s image of ``refs`` (its own reference, or its manifest of an index). A reference
    that has no image for the platform is the recipe's fault: a RecipeError naming ``where``."""
    ref = refs.for_platform(platform)
    if ref is None:
        raise run.lr.error(where, f"names no image for {platform}")
    try:
        image = run.image(ref, platform=platform)
    except InvalidDocument as e:
        if "no manifest for platform" in str(e) or "pick a platform" in str(e):
            raise run.lr.error(where, f"{ref} has no image for {platform} ({e.reason})") from None
        raise
    have = image.config.platform
    if not same_platform(have, platform) and not have.matches(platform):
        raise run.lr.error(where, f"{ref} is a {have} image, not {platform}")
    return image


def where_refs(run: Run, channel_or_base: str | None) -> KeyPath:
    """The recipe key a base or channel is written at (for errors)."""
    r = run.lr.recipe
    if channel_or_base is None:
        return ("build", "base")
    patch = r.patch
    if patch is not None and channel_or_base in patch.channels:
        value = patch.channels[channel_or_base]
        while isinstance(value, str) and value in patch.channels:
            channel_or_base, value = value, patch.channels[value]
        return ("patch", "channels", channel_or_base)
    return ("build", "base")



def check_serves(run: Run, refs: Refs, platforms: tuple[Platform, ...], where: KeyPath, what: str) -> None:
    """``refs`` has an image for each of ``platforms``, told before anything is made (a plan reads only
    manifests): a ``dir:`` tree serves any platform, an index the platforms it lists, a single image its
    own. A RecipeError naming ``where`` otherwise."""
    from ..refs import DirRef

    by_ref: dict[str, list[Platform]] = {}
    for p in platforms:
        ref = refs.for_platform(p)
        if ref is None:
            raise run.lr.error(where, f"{what} names no image for {p}")
        by_ref.setdefault(ref, []).append(p)
    for ref, wanted in by_ref.items():
        if isinstance(run.lr.image_ref(ref), DirRef):  # a missing dir: is a RecipeError naming its line
            continue
        # A per-platform mapping's entry is named by its own line.
        at = where if refs.single is not None else \
            (*where, next(k for k in refs.per_platform if same_platform(Platform.parse(k), wanted[0])))
        served = index_platforms(run, ref)
        if served is None:  # one image: it serves its own platform
            for p in wanted:
                platform_image(run, refs, p, at)
            continue
        missing = [str(p) for p in wanted if not any(same_platform(q, p) or q.matches(p) for q in served)]
        if missing:
            raise run.lr.error(at, f"{what} ({ref}) has no image for {', '.join(missing)} (it has: "
                                      f"{', '.join(map(str, served)) or 'none'}); the recipe builds "
                                      f"{', '.join(map(str, platforms))}")
