"""Stage kinds ``input``, ``build`` and ``from``: the source and bases as inputs, the built image.

A build is history, not a pure function of now: it is reused while its key (its recipe fragment,
commit and the base digest it was built on) matches and it is younger than ``rebuildAfter`` by the
run's clock; then it is rebuilt on the base as it is then. Its build time lives on the layout's index
entry (``dev.regfp.built-at``), never in the image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..oci import annotation_keys as A
from ..oci.descriptor import Descriptor
from ..oci.image import Image
from ..stores.base import read_image, write_image
from ..timeutil import parse_duration, parse_rfc3339, rfc3339
from .graph import Node, NodeId, Outcome
from .reuse import reuse_or_make
from .run import Run
from .source import Source

if TYPE_CHECKING:  # the build stage (and the layer writer) is imported when a build is made
    from ..stages.build import SourceInputs

SOURCE = NodeId("input", "source")
BASE = NodeId("input", "base")
BUILD = NodeId("build")
FROM = NodeId("from")


def channel_input(channel: str) -> NodeId:
    return NodeId("input", f"channel:{channel}")


def build_nodes(run: Run) -> list[Node]:
    src = run.source
    if src is None or src.from_image is not None:
        return []
    r = run.lr.recipe
    assert r.source is not None
    return [Node(SOURCE, label=f"{r.source.git}@{r.source.ref}"),
            Node(BASE, label=src.base_ref),
            Node(BUILD, src.build_names, (SOURCE, BASE))]


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
    if node.id == BASE:
        assert src is not None
        why = f"channel {src.channel}" if src.channel else "image reference"
        if not _base_needed(run):
            return Outcome(node, "input", "input", why)  # the build is reused: its base is pinned
        return Outcome(node, "input", "input", why, digest=run.image(src.base_ref).digest.text)
    if node.id.part.startswith("ref:"):
        ref = node.id.part.removeprefix("ref:")
        return Outcome(node, "input", "input", "image reference", digest=run.image(ref).digest.text)
    name = node.id.part.removeprefix("channel:")
    return Outcome(node, "input", "input", f"channel {name}", digest=run.image(run.lr.channel_ref(name)).digest.text)


def evaluate_build(run: Run, node: Node) -> Outcome:
    src = run.source
    assert src is not None
    reused = _reusable(run, src)
    if isinstance(reused, tuple):
        key, entry, reason = reused
        return Outcome(node, "cached", "layout", reason, key, entry.digest.text, {n: entry for n in src.build_names})
    expired = reused  # the reason the existing build is not reused, when it expired
    base_out = run.outcomes.get(BASE)
    base_digest = base_out.digest if base_out is not None and base_out.digest else run.image(src.base_ref).digest.text
    key = src.build_key(base_digest)
    why = expired or _why_build(run, src)

    def make() -> Descriptor:
        return _make_build(run, src, key)

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
    pinned = ann.get(A.BASE_DIGEST)
    if ann.get(A.BASE_NAME) != src.base_ref or pinned is None:
        return None
    key = src.build_key(pinned)
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
    """A build that is not reused runs its host-side step (if any) now, before anything is written:
    a failing step leaves no trace. Its outputs stay readable until the run ends."""
    src = run.source
    r = run.lr.recipe
    if run.dry or src is None or src.repo is None or r.build is None or r.build.run is None or \
            isinstance(_reusable(run, src), tuple):
        return
    from ..stages.build import run_outputs

    run.memo["run-step"] = run.hold_context(run_outputs(source_inputs(run, src)))


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


def build_annotations(run: Run, src: Source, base: Image, key: str) -> dict[str, str]:
    r = run.lr.recipe
    assert r.build is not None and r.source is not None
    annotations = {A.STAGE: "build", A.KEY: key, A.REVISION: src.commit.sha, A.CREATED: rfc3339(src.commit.time),
                   A.BASE_NAME: src.base_ref, A.BASE_DIGEST: base.digest.text}
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
