"""Stage kinds ``input``, ``build`` and ``from``: the source and bases as inputs, the built image.

A build is history, not a pure function of now: it is reused while its key (its recipe fragment,
commit and the base digest it was built on) matches and it is younger than ``rebuildAfter`` by the
run's clock; then it is rebuilt on the base as it is then. Its build time lives on the layout's index
entry (``dev.regfp.built-at``), never in the image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..oci import annotation_keys as A
from ..oci.descriptor import Descriptor, Platform
from ..oci.image import Image
from ..stores.base import read_image, write_image, write_index
from ..timeutil import parse_duration, parse_rfc3339, rfc3339
from .graph import Node, NodeId, Outcome
from .platforms import open_index, platform_image, run_platforms, where_refs
from .reuse import reuse_or_make
from .run import Run
from .source import Source

if TYPE_CHECKING:  # the build stage (and the layer writer) is imported when a build is made
    from ..stages.build import SourceInputs

SOURCE = NodeId("input", "source")
BUILD = NodeId("build")
FROM = NodeId("from")


def image_input(ref: str) -> NodeId:
    """The input node of an image reference as the recipe writes it (channels followed): one node per
    image, whichever stages use it (a channel that is also the build's base or a matrix value)."""
    return NodeId("input", f"ref:{ref}")


def channel_input(channel: str) -> NodeId:
    """A multi-platform channel: one input standing for its image of every platform."""
    return NodeId("input", f"channel:{channel}")


def base_input(platform: Platform) -> NodeId:
    """A multi-platform build's base for one platform."""
    return NodeId("input", f"base:{platform}")


def build_nodes(run: Run) -> list[Node]:
    src = run.source
    if src is None or src.from_image is not None:
        return []
    r = run.lr.recipe
    assert r.source is not None
    source = Node(SOURCE, label=f"{r.source.git}@{r.source.ref}")
    platforms = run_platforms(run)
    if platforms is None:
        base = image_input(src.base_ref)
        return [source, Node(base, label=src.base_ref), Node(BUILD, src.build_names, (SOURCE, base))]
    refs = run.lr.base_refs()
    bases = [Node(base_input(p), label=refs.for_platform(p) or "") for p in platforms]
    return [source, *bases, Node(BUILD, src.build_names, (SOURCE, *(b.id for b in bases)))]


def from_nodes(run: Run) -> list[Node]:
    src = run.source
    if src is None or src.from_image is None:
        return []
    return [Node(FROM, src.build_names)]


def evaluate_input(run: Run, node: Node) -> Outcome:
    src = run.source
    if node.id == SOURCE:
        assert src is not None
        return Outcome(node, "input", "input", f"commit {src.commit.sha[:12]}", digest=src.commit.sha)
    if node.id.part.startswith("items:"):
        chunks = [c for c in run.memo.get("chunks", {}).values() if c.work.name == node.id.part[6:]]
        return Outcome(node, "input", "input", f"{sum(len(c.items) for c in chunks)} work items")
    if node.id.part.startswith("base:"):
        assert src is not None
        platform = Platform.parse(node.id.part.removeprefix("base:"))
        why = (f"channel {src.channel}" if src.channel else "image reference") + f" for {platform}"
        if not _base_needed(run):
            return Outcome(node, "input", "input", why)
        return Outcome(node, "input", "input", why, digest=_platform_base(run, platform).digest.text)
    if node.id.part.startswith("platforms:"):  # a multi-platform unit's image: each platform's found by the unit
        return Outcome(node, "input", "input", "image reference, for each platform")
    if node.id.part.startswith("channel:"):  # a multi-platform channel: each platform's image found by its patch
        name = node.id.part.removeprefix("channel:")
        platforms = run_platforms(run)
        shown = ", ".join(map(str, platforms)) if platforms else ""
        return Outcome(node, "input", "input", f"channel {name} ({shown})")
    ref = node.id.part.removeprefix("ref:")
    channels = run.lr.recipe.patch.channels if run.lr.recipe.patch else {}
    named = [c for c in channels if run.lr.channel_ref(c) == ref]
    why = f"channel {', '.join(named)}" if named else "image reference"
    if src is not None and run.memo.get("consumers", {}).get(node.id) == [BUILD] and not _base_needed(run):
        return Outcome(node, "input", "input", why)  # only the build uses it, and it is reused: pinned
    return Outcome(node, "input", "input", why, digest=run.image(ref).digest.text)


def evaluate_build(run: Run, node: Node) -> Outcome:
    src = run.source
    assert src is not None
    reused = _reusable(run, src)
    if isinstance(reused, tuple):
        key, entry, reason = reused
        return Outcome(node, "cached", "layout", reason, key, entry.digest.text, {n: entry for n in src.build_names})
    expired = reused  # the reason the existing build is not reused, when it expired
    platforms = run_platforms(run)
    if platforms is None:
        base_out = run.outcomes.get(node.inputs[1])
        base_digest = base_out.digest if base_out is not None and base_out.digest else \
            run.image(src.base_ref).digest.text
        key = src.build_key(base_digest)
    else:
        key = src.platforms_build_key({str(p): (_base_name(run, p), _base_digest(run, p)) for p in platforms})
    why = expired or _why_build(run, src)

    def make() -> Descriptor:
        return _make_build(run, src, key) if platforms is None else _make_platforms(run, src, key, platforms)

    return reuse_or_make(run, node, key, src.build_names, make, cached_reason="up to date", make_reason=why,
                         state="expired" if expired else "build", entry={A.BUILT_AT: rfc3339(run.now)},
                         fresh=bool(expired))


def _reusable(run: Run, src: Source) -> tuple[str, Descriptor, str] | str | None:
    """The existing build when it is still good (key, index entry, reason), else why it expired (or
    None when there is none, or it does not match)."""
    name = src.build_names[0]
    have = run.snapshot.names.get(name)
    if have is None:
        return None
    ann = run.snapshot.manifest_annotations(name)
    if ann.get(A.BASE_NAME) != src.base_ref:
        return None
    platforms = run_platforms(run)
    if platforms is None:
        pinned = ann.get(A.BASE_DIGEST)
        if pinned is None:
            return None
        key = src.build_key(pinned)
    else:
        bases = _pinned_bases(run, have, platforms)
        if bases is None:
            return None
        key = src.platforms_build_key(bases)
    if ann.get(A.KEY) != key:
        return None
    built = have.annotations.get(A.BUILT_AT)
    ttl = run.lr.recipe.build.rebuild_after if run.lr.recipe.build is not None else None
    reason = "up to date"
    if ttl is not None:
        try:
            built_at = parse_rfc3339(built) if built else None
        except ValueError:
            built_at = None
        if built_at is None:
            return "no build time recorded"
        expires = built_at + parse_duration(ttl)
        if run.now >= expires:
            return f"built {rfc3339(built_at)}, expired {rfc3339(expires)} (rebuildAfter {ttl})"
        reason = f"built {rfc3339(built_at)}, expires {rfc3339(expires)}"
    return key, run.entry(have, **{A.KEY: key, **({A.BUILT_AT: built} if built else {})}), reason


def _pinned_bases(run: Run, have: Descriptor, platforms: tuple[Platform, ...]) -> dict[str, tuple[str, str]] | None:
    """Each platform's base (reference, digest) as the existing multi-platform build records it on its
    images, for the platforms asked for now (None: it is not an index, or lacks one of them)."""
    from ..oci import mediatypes as mt
    from ..recipe.platforms import same_platform
    from ..stores.base import read_index_images

    store = run.snapshot.store
    if store is None or have.media_type not in mt.INDEX_TYPES:
        return None
    images = read_index_images(store, have)
    out = {}
    for p in platforms:
        image = next((im for q, im in images.items() if same_platform(q, p)), None)
        if image is None or image.annotations.get(A.BASE_NAME) != _base_name(run, p) or \
                A.BASE_DIGEST not in image.annotations:
            return None
        out[str(p)] = (_base_name(run, p), image.annotations[A.BASE_DIGEST])
    return out


def _base_name(run: Run, platform: Platform) -> str:
    return run.lr.base_refs().for_platform(platform) or ""


def _platform_base(run: Run, platform: Platform) -> Image:
    src = run.source
    assert src is not None
    return platform_image(run, run.lr.base_refs(), platform, where_refs(run, src.channel))


def _base_digest(run: Run, platform: Platform) -> str:
    out = run.outcomes.get(base_input(platform))
    return out.digest if out is not None and out.digest else _platform_base(run, platform).digest.text


def _base_needed(run: Run) -> bool:
    src = run.source
    return src is not None and not isinstance(_reusable(run, src), tuple)


def _why_build(run: Run, src: Source) -> str:
    ann = run.snapshot.manifest_annotations(src.build_names[0])
    if not ann:
        return "not built yet"
    if ann.get(A.BASE_NAME) != src.base_ref:
        return "the base reference changed"
    return "the recipe changed since the last build"


def check_build(run: Run) -> None:
    """A build that is not reused checks its tree against the copy rules and runs its host-side step
    (if any) now, before anything is written: a bad tree or a failing step leaves no trace. The step's
    outputs stay readable until the run ends."""
    src = run.source
    r = run.lr.recipe
    if run.dry or src is None or src.repo is None or r.build is None or isinstance(_reusable(run, src), tuple):
        return
    from ..stages.build import run_outputs

    platforms = run_platforms(run)
    if platforms is not None and per_platform_step(run):
        # Each platform's step runs in its own export of the tree; its outputs become that platform's layer.
        run.memo["run-steps"] = {p: run.hold_context(run_outputs(source_inputs(run, src), p)) for p in platforms}
        return
    target = run.image(src.base_ref).config.platform if per_platform_step(run) else None
    run.memo["run-step"] = run.hold_context(run_outputs(source_inputs(run, src), target))


def per_platform_step(run: Run) -> bool:
    """Whether the recipe's run step builds for a platform (``perPlatform``: it sees TARGET* variables)."""
    build = run.lr.recipe.build
    return build is not None and build.run is not None and bool(build.run.per_platform)


def source_inputs(run: Run, src: Source) -> SourceInputs:
    from ..stages.build import SourceInputs

    r = run.lr.recipe
    assert r.build is not None and r.source is not None and src.repo is not None
    return SourceInputs(spec=r.build, repo=src.repo, commit=src.commit, subdir=r.source.subdir)


def _make_build(run: Run, src: Source, key: str) -> Descriptor:
    from ..stages.build import build

    base = run.image(src.base_ref)
    image = build(source_inputs(run, src), base, build_annotations(run, src, base, key), run.store,
                  run.memo.get("run-step", []), run.progress)
    write_image(run.store, base)  # the base's manifest stays findable by its digest (for rebasing)
    return write_image(run.store, image)


def _make_platforms(run: Run, src: Source, key: str, platforms: tuple[Platform, ...]) -> Descriptor:
    """One image per platform on that platform's base, then the index. The Git tree's layers are the
    same bytes on every platform (their time comes from the commit), so each is one blob, shared; so is
    a run step's layer, unless the step runs per platform."""
    from ..stages.build import build

    images: dict[Platform, Image] = {}
    for platform in platforms:
        base = _platform_base(run, platform)
        annotations = build_annotations(run, src, base, key, base_name=_base_name(run, platform))
        outputs = run.memo["run-steps"][platform] if "run-steps" in run.memo else run.memo.get("run-step", [])
        image = build(source_inputs(run, src), base, annotations, run.store, outputs, run.progress)
        write_image(run.store, base)  # findable by digest, for rebasing this platform
        images[image.config.platform] = image
    index_annotations = build_annotations(run, src, None, key)
    return write_index(run.store, images, index_annotations)


def build_annotations(run: Run, src: Source, base: Image | None, key: str, *,
                      base_name: str | None = None) -> dict[str, str]:
    """A build's annotations; ``base`` None for a multi-platform build's index (each image names its
    own base)."""
    r = run.lr.recipe
    assert r.build is not None and r.source is not None
    annotations = {A.STAGE: "build", A.KEY: key, A.REVISION: src.commit.sha, A.CREATED: rfc3339(src.commit.time),
                   A.BASE_NAME: base_name or src.base_ref}
    if base is not None:
        annotations[A.BASE_DIGEST] = base.digest.text
    if r.build.rebuild_after:
        annotations[A.REBUILD_AFTER] = r.build.rebuild_after
    if src.channel:
        annotations[A.CHANNEL] = src.channel
    if r.source.url:
        annotations[A.SOURCE] = r.source.url
    return annotations


def evaluate_from(run: Run, node: Node) -> Outcome:
    """patch.from: the image to patch, copied into the layout under from/<name>:<digest hex>."""
    src = run.source
    assert src is not None and src.from_image is not None
    have = run.snapshot.names.get(node.names[0])
    if have is not None and have.digest.text == src.from_image:
        return Outcome(node, "cached", "layout", "an existing image (patch.from)", digest=src.from_image,
                       names={node.names[0]: run.entry(have)})
    if run.dry:
        return Outcome(node, "build", "pending", "to be copied into the layout", digest=src.from_image)
    found = open_index(run, src.base_ref) if run_platforms(run) is not None else None
    if found is not None and found[1].digest.text == src.from_image:  # every platform's image, as it is
        from ..stores.transfer import copy_descriptor

        desc = copy_descriptor(found[0], run.store, found[1])
    else:
        desc = write_image(run.store, run.image(src.base_ref))
    return Outcome(node, "build", "made", "copied into the layout", digest=desc.digest.text,
                   names={node.names[0]: run.entry(desc)})


def built_image(run: Run) -> Image:
    """The build (or patch.from's image) as this run made or found it, read from the layout."""
    src = run.source
    assert src is not None
    out = run.outcomes.get(BUILD) or run.outcomes[FROM]
    entry = next(d for d in out.names.values() if d is not None)
    return read_image(run.store, Descriptor(entry.media_type, entry.digest, entry.size))
