"""Stage kind ``patch``: the build rebased onto each channel's OS base, without rebuilding.

A channel's digest is part of the patch key, so a moved channel re-patches. When the old base cannot
be found or is not under the build and the recipe says ``fallback: rebuild``, that channel gets a full
build on its base instead.
"""

from __future__ import annotations

from collections.abc import Callable

from ..oci import annotation_keys as A
from ..oci.descriptor import Descriptor
from ..oci.image import Image
from ..stores.base import write_image
from .build import BUILD, FROM, built_image, image_input
from .graph import Node, NodeId, Outcome
from .keys import stage_key
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
    for channel in r.patch.channels:
        if run.channels is not None and channel not in run.channels:
            continue
        ref = run.lr.channel_ref(channel)
        nodes.append(Node(image_input(ref), label=ref))
        # The rollout channel's patch is the rollout's prerequisite, not an independent unit.
        nodes.append(Node(patch_id(channel), (src.patch_name(channel),), (upstream, image_input(ref)),
                          unit=channel != rollout_channel))
    return nodes


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
        r = run.lr.recipe
        if r.patch is None or r.patch.fallback != "rebuild" or r.build is None or r.source is None:
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
    from .build import build_annotations, source_inputs

    src = run.source
    assert src is not None
    inputs = source_inputs(run, src)
    with run_outputs(inputs) as run_entries:
        annotations = {**build_annotations(run, src, base, key), A.STAGE: "patch", A.CHANNEL: channel,
                       A.BASE_NAME: run.lr.channel_ref(channel), A.FALLBACK: "rebuild"}
        image = build(inputs, base, annotations, run.store, run_entries, run.progress)
        write_image(run.store, base)
        return write_image(run.store, image)
