"""Stage kind ``patch``: the build rebased onto each channel's OS base, without rebuilding.

A channel's digest is part of the patch key, so a moved channel re-patches. When the old base cannot
be found or is not under the build and the recipe says ``fallback: rebuild``, that channel gets a full
build on its base instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..oci import annotation_keys as A
from ..oci import mediatypes as mt
from ..oci.canonical import canonical_json
from ..oci.descriptor import Descriptor, Platform
from ..oci.image import Image
from ..stores.base import read_image, read_index_images, write_image, write_index
from .build import BUILD, FROM, built_image, channel_input, image_input
from .graph import Node, NodeId, Outcome
from .keys import stage_key
from .platforms import check_serves, platform_image, run_platforms, where_refs
from .reuse import reuse_or_make
from .run import Run


def patch_id(channel: str) -> NodeId:
    return NodeId("patch", channel)


def patch_nodes(run: Run) -> list[Node]:
    r = run.lr.recipe
    src = run.source
    if r.patch is None or src is None:
        return []
    upstream = FROM if src.from_image is not None else BUILD
    rollout_channel = r.rollouts.channel if r.rollouts else None
    if run.channels is not None:
        for name in run.channels:
            if name not in r.patch.channels:
                raise run.lr.error(("patch", "channels"), f"no channel {name!r} in this recipe "
                                                         f"(channels: {', '.join(r.patch.channels)})")
    nodes = []
    platforms = run_platforms(run)
    for channel in r.patch.channels:
        if run.channels is not None and channel not in run.channels:
            continue
        # A multi-platform channel is one input whose digest stands for every platform's base (each
        # reference is checked, and each platform's image found, before anything is made: check_channels).
        ref = run.lr.channel_ref(channel)
        base = image_input(ref) if platforms is None else channel_input(channel)
        nodes.append(Node(base, label=ref if platforms is None else ""))
        # The rollout channel's patch is the rollout's prerequisite, not an independent unit.
        nodes.append(Node(patch_id(channel), (src.patch_name(channel),), (upstream, base),
                          unit=channel != rollout_channel))
    return nodes


def check_channels(run: Run) -> None:
    """Every channel of a multi-platform recipe has an image for each platform (plan time, before
    anything is made): a per-platform mapping names one (checked at load), an index serves it, a ``dir:``
    tree serves any; a single image of one platform serves only that one."""
    r = run.lr.recipe
    platforms = run_platforms(run)
    if r.patch is None or platforms is None or run.source is None:
        return
    if run.source.from_image is not None and r.patch.from_ is not None:
        from ..recipe.platforms import Refs

        check_serves(run, Refs.of(r.patch.from_), platforms, ("patch", "from"), "patch.from")
    for channel in r.patch.channels:
        if run.channels is not None and channel not in run.channels:
            continue
        check_serves(run, run.lr.channel_refs(channel), platforms, where_refs(run, channel), f"channel {channel!r}")


def _channel_digests(run: Run, channel: str, platforms: tuple[Platform, ...]) -> dict[str, str]:
    refs = run.lr.channel_refs(channel)
    where = where_refs(run, channel)
    return {str(p): platform_image(run, refs, p, where).digest.text for p in platforms}


def patch_key(run: Run, channel: str, build_digest: str, base_digest: str) -> str:
    src = run.source
    assert src is not None
    patch = run.lr.recipe.patch
    fallback = patch.fallback if patch else "error"
    return stage_key("patch", {"channel": channel, "ref": run.lr.channel_ref(channel), "fallback": fallback},
                     {"build": build_digest, "base": base_digest}, src.commit.sha)


def evaluate_patch(run: Run, node: Node) -> Outcome:
    channel = node.id.part
    upstream = run.outcome(node.inputs[0])
    base = run.outcome(node.inputs[1])
    platforms = run_platforms(run)
    if platforms is not None:
        if upstream.digest is None:
            return Outcome(node, "build", "pending", "the build is (re)built first")
        bases = _channel_digests(run, channel, platforms)
        key = patch_key(run, channel, upstream.digest, canonical_json(bases).decode())
        out = reuse_or_make(run, node, key, node.names, lambda: _patch_platforms(run, channel, key, platforms),
                            cached_reason="up to date", make_reason=_why_platforms(run, node, bases))
        rebuilt = run.memo.get("rebuilt", {}).get(channel)
        if out.how == "made" and rebuilt:
            out = replace(out, reason=f"{out.reason}; rebuilt {', '.join(rebuilt)} (fallback: rebuild)")
        return out
    if upstream.digest is None or base.digest is None:
        return Outcome(node, "build", "pending", "the build is (re)built first")
    key = patch_key(run, channel, upstream.digest, base.digest)
    why = _why(run, node, base.digest)
    return reuse_or_make(run, node, key, node.names, lambda: _patch_or_rebuild(run, channel, key),
                         cached_reason="up to date", make_reason=why)


def _why(run: Run, node: Node, base_digest: str) -> str:
    ann = run.snapshot.manifest_annotations(node.names[0])
    if not ann:
        return "not patched yet"
    if ann.get(A.BASE_DIGEST) != base_digest:
        return f"channel {node.id.part} moved to {base_digest[:19]}"
    return "the build or recipe changed"


def _why_platforms(run: Run, node: Node, bases: dict[str, str]) -> str:
    """Which platforms' bases moved since the channel's patch was made (from its images' annotations)."""
    have = run.snapshot.names.get(node.names[0])
    store = run.snapshot.store
    if have is None or store is None or have.media_type not in mt.INDEX_TYPES:
        return "not patched yet"
    from ..recipe.platforms import same_platform

    images = read_index_images(store, have)
    moved = [p for p, digest in bases.items()
             if not any(same_platform(q, Platform.parse(p)) and im.annotations.get(A.BASE_DIGEST) == digest
                        for q, im in images.items())]
    if moved:
        return f"channel {node.id.part} moved for {', '.join(moved)}"
    return "the build or recipe changed"


def _patch_platforms(run: Run, channel: str, key: str, platforms: tuple[Platform, ...]) -> Descriptor:
    """Each platform's build rebased onto the channel's image for that platform, then the index. Each
    image carries its own key (its build image and base): a platform whose inputs did not move keeps
    the image the channel's patch already holds, so a moved arm64 base re-patches arm64 only."""
    from ..mutate import RebaseError
    from ..recipe.platforms import same_platform
    from ..stages.patch import BaseMoved, MissingBase, old_base_of, patch_onto

    out = run.outcomes.get(BUILD) or run.outcome(FROM)  # the build, or patch.from's image
    entry = next(d for d in out.names.values() if d is not None)
    desc = Descriptor(entry.media_type, entry.digest, entry.size)
    if desc.media_type in mt.INDEX_TYPES:
        built = read_index_images(run.store, desc)
    else:  # patch.from names one image: it serves its own platform (checked at plan time)
        one = read_image(run.store, desc)
        built = {one.config.platform: one}
    src = run.source
    assert src is not None
    have = run.snapshot.names.get(src.patch_name(channel))
    existing = read_index_images(run.store, have) if have is not None and have.media_type in mt.INDEX_TYPES \
        and run.store.has_blob(have.digest) else {}
    refs = run.lr.channel_refs(channel)
    where = where_refs(run, channel)
    images: dict[Platform, Image] = {}
    rebuilt: list[str] = []
    for p in platforms:
        image = next(im for q, im in built.items() if same_platform(q, p))
        new_base = platform_image(run, refs, p, where)
        own_key = patch_key(run, channel, image.digest.text, new_base.digest.text)
        kept = next((im for q, im in existing.items() if same_platform(q, p) and im.annotations.get(A.KEY) == own_key),
                    None)
        if kept is not None:
            images[kept.config.platform] = kept
            continue

        def old(image: Image = image, p: Platform = p) -> Image:
            return old_base_of(image, run.store, lambda name: run.image(name, platform=p))

        try:
            patched = patch_onto(image, new_base, refs.for_platform(p) or refs.text, old, channel=channel,
                                 annotations={A.STAGE: "patch", A.KEY: own_key})
        except (RebaseError, MissingBase, BaseMoved):
            if not _may_rebuild(run):
                raise
            # Only this platform's base cannot be rebased onto: it alone is built again, on its new base.
            patched = _rebuild_platform(run, channel, own_key, new_base, refs.for_platform(p) or refs.text, p)
            rebuilt.append(str(p))
        write_image(run.store, new_base)
        images[patched.config.platform] = patched
    annotations = {A.STAGE: "patch", A.KEY: key, A.CHANNEL: channel, A.BASE_NAME: refs.text,
                   A.REVISION: src.commit.sha}
    if rebuilt:
        run.memo.setdefault("rebuilt", {})[channel] = rebuilt
        annotations[A.FALLBACK] = f"rebuild {' '.join(rebuilt)}"  # which platforms were built again
    return write_index(run.store, images, annotations)


def _may_rebuild(run: Run) -> bool:
    r = run.lr.recipe
    return r.patch is not None and r.patch.fallback == "rebuild" and r.build is not None and r.source is not None


def _rebuild_platform(run: Run, channel: str, key: str, base: Image, base_name: str, platform: Platform) -> Image:
    """``platform``'s build made again on the channel's image (fallback: rebuild), not yet written. A
    run step that is not per platform runs once for every platform rebuilt (its layer stays shared)."""
    from ..stages.build import build, run_outputs
    from .build import build_annotations, per_platform_step, source_inputs

    src = run.source
    assert src is not None
    inputs = source_inputs(run, src)
    target = platform if per_platform_step(run) else None
    steps: dict[Platform | None, list[Any]] = run.memo.setdefault("fallback-steps", {})
    if target not in steps:
        steps[target] = run.hold_context(run_outputs(inputs, target))
    annotations = {**build_annotations(run, src, base, key, base_name=base_name), A.STAGE: "patch",
                   A.CHANNEL: channel, A.FALLBACK: "rebuild"}
    return build(inputs, base, annotations, run.store, steps[target], run.progress)


def _patch_or_rebuild(run: Run, channel: str, key: str) -> Descriptor:
    from ..mutate import RebaseError
    from ..stages.patch import BaseMoved, MissingBase, patch_onto

    built = built_image(run)
    ref = run.lr.channel_ref(channel)
    new_base = run.image(ref, platform=built.config.platform)
    try:
        patched = patch_onto(built, new_base, ref, _old_base(run, built), channel=channel,
                             annotations={A.STAGE: "patch", A.KEY: key})
    except (RebaseError, MissingBase, BaseMoved):
        if not _may_rebuild(run):
            raise
        return _rebuild_on(run, channel, key, new_base)
    write_image(run.store, new_base)
    return write_image(run.store, patched)


def _old_base(run: Run, built: Image) -> Callable[[], Image]:
    """The base the build was made on, looked for once per run and only when needed."""
    from ..stages.patch import old_base_of

    def find() -> Image:
        if "old-base" not in run.memo:
            run.memo["old-base"] = old_base_of(built, run.store,
                                               lambda name: run.image(name, platform=built.config.platform))
        found: Image = run.memo["old-base"]
        return found
    return find


def _rebuild_on(run: Run, channel: str, key: str, base: Image) -> Descriptor:
    from ..stages.build import build, run_outputs
    from .build import build_annotations, per_platform_step, source_inputs

    src = run.source
    assert src is not None
    inputs = source_inputs(run, src)
    with run_outputs(inputs, base.config.platform if per_platform_step(run) else None) as run_entries:
        annotations = {**build_annotations(run, src, base, key), A.STAGE: "patch", A.CHANNEL: channel,
                       A.BASE_NAME: run.lr.channel_ref(channel), A.FALLBACK: "rebuild"}
        image = build(inputs, base, annotations, run.store, run_entries, run.progress)
        write_image(run.store, base)
        return write_image(run.store, image)
