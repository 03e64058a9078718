"""``regfp copy``: one path for every pair of reference kinds (dir:, oci:, registry -> oci:, registry).

Blobs first (in parallel, skipping what the destination has, mounting within a registry), then
manifests, then the referrers of the image (artifacts whose ``subject`` it is: SBOMs, provenance,
signatures; unless ``--no-referrers``), then the destination name. Debug images stay in ad-hoc/
names; an image that carries a private key goes to a registry only with ``--private``.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput, LayerInputError, NotFound, RefError
from ..oci import annotation_keys as A
from ..oci import mediatypes as mt
from ..refs import DirRef, LayoutRef, Ref, RegistryRef, parse_ref
from . import edge, options, output
from .progress import progress_bar
from .registry_session import session

if TYPE_CHECKING:
    from ..oci.descriptor import Descriptor
    from ..stores.base import ReadStore, Store
    from ..stores.layout import LayoutStore
    from ..stores.registry import RegistryStore
    from .registry_session import Session

JOBS = 6  # blobs moved at a time (skopeo moves 6 too)


def copy(src_text: str, dst_text: str, platform: str | None, json_out: bool, private: bool = False,
         referrers: bool = True) -> None:
    from ..sources import load_image, open_layout_ref
    from ..stages.promotion import refuse_promotion
    from ..stores.base import manifest_annotations, read_image, write_image
    from ..stores.referrers import copy_referrers
    from ..stores.transfer import copy_descriptor
    from .commands import skopeo_dir

    src, dst = _source(src_text), parse_ref(dst_text)
    want = edge.parse_platform(platform)
    held = skopeo_dir(src)  # a dir: skopeo wrote holds an image or index: copied as stored, not computed
    if isinstance(dst, LayoutRef):
        if dst.name is None:
            raise RefError(dst_text, "the destination needs a name: oci:PATH:NAME")
        repository = dst.name.rpartition(":")[0] if ":" in dst.name else dst.name
    elif isinstance(dst, RegistryRef):
        repository = dst.repository
    else:
        raise RefError(dst_text, "a dir: reference is computed from a directory: it cannot be a destination")
    if isinstance(src, DirRef) and held is None:
        _check_source_dir(src)
    with session() as s, progress_bar() as bar, ExitStack() as stack:
        source: ReadStore
        target: Store | None = None
        if held is not None:
            source, desc = held
        elif isinstance(src, DirRef):  # made straight into the destination: nothing to copy after
            target = _open_target(s, dst, stack)
            source = target
            image = load_image(src, work=target, options=options.build_options(want), progress=bar)
            desc = write_image(target, image)
        elif isinstance(src, LayoutRef):
            source, desc = open_layout_ref(src)
        else:
            source, desc = s.open(src)
        if want is not None and desc.media_type in mt.INDEX_TYPES:
            desc = read_image(source, desc, want).descriptor
        # Every refusal comes before the destination is touched: a refused copy leaves nothing behind.
        refuse_promotion(source, desc, repository, dst_text)
        if isinstance(dst, RegistryRef) and not private and \
                any(a.get(A.CONTAINS_SECRET) == "true" for a in manifest_annotations(source, desc)):
            raise InvalidInput(f"{dst_text}: the image carries a private key ({A.CONTAINS_SECRET}); push it only "
                               "to a private repository, and say so with --private")
        if target is None:
            target = _open_target(s, dst, stack)
        copied = desc if source is target else copy_descriptor(source, target, desc, jobs=JOBS, progress=bar)
        carried = copy_referrers(source, target, desc, jobs=JOBS, progress=bar) \
            if referrers and source is not target else []
        if isinstance(dst, RegistryRef):
            if carried:  # listed before the tag moves: whoever finds the image finds its referrers
                _registry(target).add_referrers(carried)
            _name_in_registry(s.store(dst), dst, copied)  # the session keeps one client per host
        else:
            assert dst.name is not None
            _layout(target).set_names({dst.name: copied}, referrers=carried)
    if json_out:
        output.print_json({"source": src_text, "destination": dst_text, "digest": copied.digest.text,
                           "mediaType": copied.media_type, "size": copied.size,
                           "referrers": [output.referrer_json(d) for d in carried]})
    else:
        output.line(f"{dst_text} {copied.digest}")
        for d in carried:
            output.line(f"  referrer {d.artifact_type or '-'} {d.digest}")


def _open_target(s: Session, dst: LayoutRef | RegistryRef, stack: ExitStack) -> Store:
    from ..stores.layout import LayoutStore

    if isinstance(dst, RegistryRef):
        return s.store(dst)
    return stack.enter_context(LayoutStore.open_or_create(dst.path))


def _registry(store: Store) -> RegistryStore:
    from ..stores.registry import RegistryStore

    assert isinstance(store, RegistryStore)  # what _open_target opens for a registry reference
    return store


def _layout(store: Store) -> LayoutStore:
    from ..stores.layout import LayoutStore

    assert isinstance(store, LayoutStore)  # what _open_target opens for a layout reference
    return store


def _source(text: str) -> Ref:
    ref = parse_ref(text)
    if isinstance(ref, DirRef | LayoutRef | RegistryRef):
        return ref
    raise RefError(text, "not usable here")


def _check_source_dir(ref: DirRef) -> None:
    """Fail on a missing source before the destination layout is created, so a typo leaves nothing."""
    path = Path(ref.path)
    if not path.exists():
        raise NotFound(f"directory {path}", "the filesystem")
    if not path.is_dir():
        raise LayerInputError(str(path), "dir: needs a directory")


def _name_in_registry(target: RegistryStore, dst: RegistryRef, copied: Descriptor) -> None:
    from ..stores.registry import RegistryStore

    if dst.digest is not None:
        if dst.digest != copied.digest:
            raise RefError(str(dst), f"the image copied is {copied.digest}, not the digest the destination names")
        if dst.tag is None:
            return
    target.set_names({RegistryStore.name_of(dst): copied})
