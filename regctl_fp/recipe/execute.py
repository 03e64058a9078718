"""Carrying out a plan: compute what is not cached, store it, then move names (last)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NotFound
from ..oci.descriptor import Descriptor
from ..oci.image import Image
from ..progress import SILENT, Progress
from ..refs import DirRef, LayoutRef, Ref
from ..sources import BuildOptions, load_image, open_layout_ref
from ..stores.base import read_image, write_image
from ..stores.layout import LayoutStore
from ..timeutil import rfc3339
from .plan import (
    A_BASE_DIGEST,
    A_BASE_NAME,
    A_BUILT_AT,
    A_CHANNEL,
    A_CREATED,
    A_KEY,
    A_REBUILD_AFTER,
    A_REVISION,
    A_SOURCE,
    A_STAGE,
    CHAIN,
    Node,
    Plan,
)


@dataclass(frozen=True)
class ImageResult:
    stage: str
    name: str
    digest: str
    cached: bool
    state: str
    reason: str


@dataclass
class Report:
    images: list[ImageResult] = field(default_factory=list)
    layers_written: int = 0  # layers tarred and compressed by this run
    rollout: dict[str, object] | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "images": [{"stage": i.stage, "name": i.name, "digest": i.digest, "cached": i.cached,
                        "state": i.state, "reason": i.reason} for i in self.images],
            "stats": {"layersWritten": self.layers_written}}
        if self.rollout is not None:
            out["rollout"] = self.rollout
        if self.notes:
            out["notes"] = self.notes
        return out

    def add(self, node: Node, digest: str, cached: bool) -> None:
        for name in node.names:
            self.images.append(ImageResult(node.stage, name, digest, cached, "cached" if cached else node.state,
                                           node.reason))


def execute(plan: Plan, *, now: int, options: BuildOptions, progress: Progress = SILENT,
            secrets: Mapping[str, str] | None = None) -> Report:
    """Run the plan. ``secrets`` maps environment variable names to values (CA key passwords)."""
    report = Report()
    prepared = []
    env_nodes = plan.nodes_of("environment")
    # Environment inputs (files, CAs, keys) are read and checked before anything is written, unless the
    # whole chain is cached: then nothing will be written and the keys stay untouched.
    chain_clean = all(n.state == "cached" for n in plan.nodes if n.stage in CHAIN)
    if env_nodes and not chain_clean:
        from .environments import prepare

        prepared = prepare(plan.recipe, now=now, secrets=secrets or {})
    build_digest = _run_build(plan, now, options, progress, report) if plan.has_build else ""
    todo = []
    for node in plan.nodes_of("patch"):
        channel = node.id.split(":", 1)[1]
        key = plan.patch_key(build_digest, channel)
        existing = plan.patched.get(channel)
        if existing is not None and existing.annotations.get(A_KEY) == key:
            report.add(node, existing.descriptor.digest.text, True)
        else:
            todo.append((node, channel, key))
    if todo:
        with LayoutStore.open_or_create(plan.layout) as store:
            built = read_image(store, store.resolve(plan.build_names[0]))
            old_base = _old_base(plan, store, built, options)
            for node, channel, key in todo:
                if isinstance(plan.recipe.image_ref(plan.channels[channel].ref), DirRef):
                    report.layers_written += 1  # the channel's directory is tarred to load it
                desc = _patch(plan, store, built, old_base, channel, key, options, progress)
                store.set_names({n: desc for n in node.names})
                report.add(node, desc.digest.text, False)
    if plan.nodes_of("rollout"):
        _run_rollout(plan, now, report)
    if prepared:
        from . import environments

        environments.run(plan, prepared, now=now, options=options, progress=progress, report=report)
    elif env_nodes:
        for node in env_nodes:
            report.add(node, node.digest or "", True)
    if plan.nodes_of("matrix") or plan.nodes_of("work"):
        from . import units

        units.run(plan, options=options, progress=progress, report=report)
    return report


def _run_rollout(plan: Plan, now: int, report: Report) -> None:
    """Cut a release when the rollout channel's image is new; names move in one atomic update."""
    from ..oci.manifest import Manifest
    from .rollouts import update

    r = plan.recipe.recipe
    spec = r.rollouts
    assert spec is not None
    with LayoutStore.open_or_create(plan.layout) as store:
        desc = store.resolve(plan.patch_name(spec.channel))
        image = Descriptor(desc.media_type, desc.digest, desc.size)
        manifest = Manifest.parse(store.get_manifest(image), image.media_type)
        base = manifest.annotations.get(A_BASE_DIGEST, "")
        before, after = update(store, r.name, spec, lambda ledger: ledger.cut(
            image, created=rfc3339(now), revision=plan.commit.sha, channel=spec.channel, base_digest=base))
    latest = after.latest
    assert latest is not None
    cut = after.last != before.last
    report.images.append(ImageResult("rollout", f"rollouts/{r.name}:r{latest.number}", latest.image.digest.text,
                                     not cut, "build" if cut else "cached",
                                     f"cut r{latest.number}" if cut else f"r{latest.number} is the newest release"))
    report.rollout = {"release": latest.number, "cut": cut}


def _run_build(plan: Plan, now: int, options: BuildOptions, progress: Progress, report: Report) -> str:
    node = plan.build_node
    if node.state == "cached":
        assert node.digest is not None
        _ensure_names(plan, node.names)
        report.add(node, node.digest, True)
        return node.digest
    from ..stages.build import SourceInputs, build, run_outputs  # only when something is built

    lr = plan.recipe
    r = lr.recipe
    base_ref = lr.image_ref(plan.base_ref)
    _check_available(base_ref)
    src = SourceInputs(spec=r.build, repo=plan.repo, commit=plan.commit, subdir=r.source.subdir)
    with run_outputs(src) as run_entries, LayoutStore.open_or_create(plan.layout) as store:
        base = load_image(base_ref, work=store, platform=options.platform, options=options, progress=progress)
        if isinstance(base_ref, DirRef):
            report.layers_written += 1
        image = build(src, base, _annotations(plan, base), store, run_entries, progress)
        report.layers_written += len(image.layers) - len(base.layers)
        write_image(store, base)  # the base's manifest stays findable by its digest (for rebasing)
        desc = write_image(store, image)
        stamped = desc.annotated(**{A_BUILT_AT: rfc3339(now)})
        store.set_names({name: stamped for name in node.names})
    report.add(node, desc.digest.text, False)
    return desc.digest.text


def _old_base(plan: Plan, store: LayoutStore, built: Image, options: BuildOptions) -> Image:
    from ..stages.patch import old_base_of

    return old_base_of(built, store, lambda name: load_image(plan.recipe.image_ref(name), work=store,
                                                             platform=built.config.platform, options=options))


def _patch(plan: Plan, store: LayoutStore, built: Image, old_base: Image, channel: str, key: str,
           options: BuildOptions, progress: Progress) -> Descriptor:
    from ..stages.patch import patch

    ch = plan.channels[channel]
    new_base = load_image(plan.recipe.image_ref(ch.ref), work=store, platform=built.config.platform,
                          options=options, progress=progress)
    patched = patch(built, old_base, new_base, base_name=ch.ref, channel=channel,
                    annotations={A_STAGE: "patch", A_KEY: key})
    write_image(store, new_base)
    return write_image(store, patched)


def _check_available(ref: Ref) -> None:
    """Fail before the layout is touched when an input is plainly missing."""
    if isinstance(ref, DirRef) and not Path(ref.path).is_dir():
        raise NotFound(f"base directory {ref.path}", "the filesystem")
    if isinstance(ref, LayoutRef):
        open_layout_ref(ref)


def _annotations(plan: Plan, base: Image) -> dict[str, str]:
    r = plan.recipe.recipe
    annotations = {
        A_STAGE: "build",
        A_KEY: plan.build_key(base.digest.text),
        A_REVISION: plan.commit.sha,
        A_CREATED: rfc3339(plan.commit.time),
        A_BASE_NAME: plan.base_ref,
        A_BASE_DIGEST: base.digest.text,
    }
    if r.build.rebuild_after:
        annotations[A_REBUILD_AFTER] = r.build.rebuild_after
    if plan.channel:
        annotations[A_CHANNEL] = plan.channel
    if r.source.url:
        annotations[A_SOURCE] = r.source.url
    return annotations


def _ensure_names(plan: Plan, names: tuple[str, ...]) -> None:
    """A cached build reached through a new tag gets that name too (no layer work)."""
    assert plan.existing is not None
    store = LayoutStore.open(plan.layout)
    current = store.names()
    missing = {n: plan.existing.descriptor for n in names if n not in current}
    if missing:
        with store:
            store.set_names(missing)
