"""Carrying out a plan: compute what is not cached, store it, then move names (last)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import NotFound, RegfpError
from ..oci.descriptor import Descriptor
from ..oci.image import Image
from ..progress import SILENT, Progress
from ..refs import DirRef, LayoutRef, Ref
from ..sources import BuildOptions, load_image, open_layout_ref
from ..stores.base import read_image, write_image
from ..stores.layout import LayoutStore
from ..timeutil import rfc3339
from .model import Rollouts

if TYPE_CHECKING:
    from ..stages.rollout import Ledger
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
    layers_compressed: int = 0  # layers gzip/zstd-compressed by this whole command (planning included)
    rollout: dict[str, object] | None = None
    notes: list[str] = field(default_factory=list)
    remote: dict[str, int] | None = None  # remote cache counters

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "images": [{"stage": i.stage, "name": i.name, "digest": i.digest, "cached": i.cached,
                        "state": i.state, "reason": i.reason} for i in self.images],
            "stats": {"layersCompressed": self.layers_compressed}}
        if self.rollout is not None:
            out["rollout"] = self.rollout
        if self.notes:
            out["notes"] = self.notes
        if self.remote is not None:
            out["stats"]["remote"] = self.remote  # type: ignore[index]
        return out

    def add(self, node: Node, digest: str, cached: bool, reason: str | None = None) -> None:
        for name in node.names:
            self.images.append(ImageResult(node.stage, name, digest, cached, "cached" if cached else node.state,
                                           reason or node.reason))


REMOTE_HIT = "in the remote cache"


def from_remote(options: BuildOptions, key: str | None, store: LayoutStore) -> Descriptor | None:
    """The stage result for ``key`` from the remote cache, copied into ``store`` (None on a miss)."""
    if options.remote is None or key is None:
        return None
    from ..remote_cache import key_tag

    found = options.remote.lookup(key_tag(key))
    return options.remote.fetch(found, store) if found is not None else None  # None also when fetching fails


def to_remote(options: BuildOptions, key: str | None, store: LayoutStore, desc: Descriptor) -> None:
    if options.remote is not None and key is not None:
        from ..remote_cache import key_tag

        options.remote.publish(key_tag(key), store, desc)


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
            built = None
            for node, channel, key in todo:
                hit = from_remote(options, key, store)
                if hit is None:
                    if built is None:
                        built = read_image(store, store.resolve(plan.build_names[0]))
                        old_base = _old_base_finder(plan, store, built, options)
                    desc = _patch_or_rebuild(plan, store, built, old_base, channel, key, options, progress, now)
                else:
                    desc = hit
                store.set_names({n: desc for n in node.names})
                if hit is None:
                    to_remote(options, key, store, desc)
                report.add(node, desc.digest.text, hit is not None, REMOTE_HIT if hit else None)
    if plan.nodes_of("rollout"):
        _run_rollout(plan, now, options, report)
    if prepared:
        from . import environments

        environments.run(plan, prepared, now=now, options=options, progress=progress, report=report)
    elif env_nodes:
        for node in env_nodes:
            report.add(node, node.digest or "", True)
    if plan.nodes_of("matrix") or plan.nodes_of("work"):
        from . import units

        units.run(plan, options=options, progress=progress, report=report)
    from ..layers import Counters

    report.layers_compressed = Counters.compressed
    return report


def _run_rollout(plan: Plan, now: int, options: BuildOptions, report: Report) -> None:
    """Cut a release when the rollout channel's image is new; names move in one atomic update.

    With a remote cache the ledger is shared through it: a newer remote ledger is adopted first, and
    after a cut the ledger is published; if another machine published in between (the tag moved under
    us), its ledger is re-read and the cut retried on top of it.
    """
    from ..oci.manifest import Manifest
    from .rollouts import read_ledger, update

    r = plan.recipe.recipe
    spec = r.rollouts
    assert spec is not None
    with LayoutStore.open_or_create(plan.layout) as store:
        desc = store.resolve(plan.patch_name(spec.channel))
        image = Descriptor(desc.media_type, desc.digest, desc.size)
        manifest = Manifest.parse(store.get_manifest(image), image.media_type)
        base = manifest.annotations.get(A_BASE_DIGEST, "")

        def cut(ledger: Ledger) -> Ledger:
            return ledger.cut(image, created=rfc3339(now), revision=plan.commit.sha, channel=spec.channel,
                              base_digest=base)

        initial = None
        for _attempt in range(5):
            theirs = _adopt_remote_ledger(options, store, r.name, spec)
            if initial is None:
                initial = max(read_ledger(store, r.name).last, theirs.last if theirs else 0)
            _, after = update(store, r.name, spec, cut)
            if options.remote is None or _published(options, store, r.name):
                break
        else:
            raise RegfpError(f"the rollout ledger of {r.name} kept moving in the remote cache; try again")
    latest = after.latest
    assert latest is not None
    was_cut = after.last > (initial or 0)
    report.images.append(ImageResult("rollout", f"rollouts/{r.name}:r{latest.number}", latest.image.digest.text,
                                     not was_cut, "build" if was_cut else "cached",
                                     f"cut r{latest.number}" if was_cut else f"r{latest.number} is the newest release"))
    report.rollout = {"release": latest.number, "cut": was_cut}


def _adopt_remote_ledger(options: BuildOptions, store: LayoutStore, name: str, spec: Rollouts) -> Ledger | None:
    """The remote cache's ledger is the shared truth: when it differs from the layout's and is not older,
    take it (and the release images it lists) into the layout. Returns it, or None."""
    if options.remote is None:
        return None
    from ..remote_cache import ledger_tag
    from ..stages.rollout import Ledger, ledger_name
    from .rollouts import read_ledger, update

    found = options.remote.lookup(ledger_tag(name))
    if found is None:
        return None
    theirs = Ledger.parse(name, options.remote.store.get_manifest(found))
    local = read_ledger(store, name)
    current = store.names().get(ledger_name(name))
    if theirs.last < local.last or (current is not None and current.digest == found.digest):
        return theirs
    if options.remote.fetch(found, store) is None:  # the index and every release image in it
        return None  # an incomplete remote ledger is not adopted
    update(store, name, spec, lambda _: theirs)
    return theirs


def _published(options: BuildOptions, store: LayoutStore, name: str) -> bool:
    """Publish the layout's ledger unless the remote one is it; False when another machine's landed in
    between (the caller adopts theirs and tries again)."""
    from ..remote_cache import ledger_tag
    from ..stages.rollout import ledger_name

    assert options.remote is not None
    ours = store.resolve(ledger_name(name))
    current = options.remote.lookup(ledger_tag(name))
    if current is not None and current.digest == ours.digest:
        return True
    options.remote.publish(ledger_tag(name), store, ours)
    check = options.remote.lookup(ledger_tag(name))
    return check is not None and check.digest == ours.digest


def _patch_or_rebuild(plan: Plan, store: LayoutStore, built: Image, old_base: Callable[[], Image], channel: str,
                      key: str, options: BuildOptions, progress: Progress, now: int) -> Descriptor:
    """The patch; when the old base cannot be found or is not under the build, and the recipe says
    ``fallback: rebuild``, a full build on the channel's base instead."""
    from ..mutate import RebaseError
    from ..stages.patch import BaseMoved, MissingBase

    try:
        return _patch(plan, store, built, old_base, channel, key, options, progress)
    except (RebaseError, MissingBase, BaseMoved):
        r = plan.recipe.recipe
        if r.patch is None or r.patch.fallback != "rebuild" or r.build is None or r.source is None:
            raise
    from ..stages.build import SourceInputs, build, run_outputs

    ch = plan.channels[channel]
    assert plan.repo is not None
    src = SourceInputs(spec=r.build, repo=plan.repo, commit=plan.commit, subdir=r.source.subdir)
    with run_outputs(src) as run_entries:
        base = load_image(plan.recipe.image_ref(ch.ref), work=store, platform=built.config.platform,
                          options=options, progress=progress)
        annotations = {**_annotations(plan, base), A_STAGE: "patch", A_KEY: key, A_CHANNEL: channel,
                       A_BASE_NAME: ch.ref, "dev.regfp.fallback": "rebuild"}
        image = build(src, base, annotations, store, run_entries, progress)
        write_image(store, base)
        return write_image(store, image)


def _take_from_image(plan: Plan, options: BuildOptions, progress: Progress, report: Report) -> str:
    """patch.from: the image to patch, copied into the layout under from/<name>:<digest hex>."""
    node = plan.build_node
    assert plan.from_image is not None
    with LayoutStore.open_or_create(plan.layout) as store:
        have = store.names().get(node.names[0])
        if have is not None and have.digest.text == plan.from_image:
            report.add(node, plan.from_image, True)
            return plan.from_image
        image = load_image(plan.recipe.image_ref(plan.base_ref), work=store, platform=options.platform,
                           options=options, progress=progress)
        desc = write_image(store, image)
        store.set_names({node.names[0]: desc})
    report.add(node, desc.digest.text, False, "copied into the layout")
    return desc.digest.text


def _run_build(plan: Plan, now: int, options: BuildOptions, progress: Progress, report: Report) -> str:
    if plan.from_image is not None:
        return _take_from_image(plan, options, progress, report)
    node = plan.build_node
    if node.state == "cached":
        assert node.digest is not None
        _ensure_names(plan, node.names)
        report.add(node, node.digest, True)
        return node.digest
    from ..stages.build import SourceInputs, build, run_outputs  # only when something is built

    lr = plan.recipe
    r = lr.recipe
    assert r.build is not None and r.source is not None and plan.repo is not None  # not a patch.from recipe
    base_ref = lr.image_ref(plan.base_ref)
    _check_available(base_ref)
    if options.remote is not None:  # a result another machine built: no run step, no layer work
        from ..stores.null import NullStore

        probe = load_image(base_ref, work=NullStore(), platform=options.platform, options=options)
        with LayoutStore.open_or_create(plan.layout) as store:
            hit = from_remote(options, plan.build_key(probe.digest.text), store)
            if hit is not None:
                _name_build(store, node.names, hit, now)
                report.add(node, hit.digest.text, True, REMOTE_HIT)
                return hit.digest.text
    src = SourceInputs(spec=r.build, repo=plan.repo, commit=plan.commit, subdir=r.source.subdir)
    with run_outputs(src) as run_entries, LayoutStore.open_or_create(plan.layout) as store:
        base = load_image(base_ref, work=store, platform=options.platform, options=options, progress=progress)
        image = build(src, base, _annotations(plan, base), store, run_entries, progress)
        write_image(store, base)  # the base's manifest stays findable by its digest (for rebasing)
        desc = write_image(store, image)
        _name_build(store, node.names, desc, now)
        to_remote(options, plan.build_key(base.digest.text), store, desc)
    report.add(node, desc.digest.text, False)
    return desc.digest.text


def _name_build(store: LayoutStore, names: tuple[str, ...], desc: Descriptor, now: int) -> None:
    stamped = desc.annotated(**{A_BUILT_AT: rfc3339(now)})
    store.set_names({name: stamped for name in names})


def _patch(plan: Plan, store: LayoutStore, built: Image, old_base: Callable[[], Image], channel: str, key: str,
           options: BuildOptions, progress: Progress) -> Descriptor:
    from ..stages.patch import patch_onto

    ch = plan.channels[channel]
    new_base = load_image(plan.recipe.image_ref(ch.ref), work=store, platform=built.config.platform,
                          options=options, progress=progress)
    patched = patch_onto(built, new_base, ch.ref, old_base, channel=channel,
                         annotations={A_STAGE: "patch", A_KEY: key})
    write_image(store, new_base)
    return write_image(store, patched)


def _old_base_finder(plan: Plan, store: LayoutStore, built: Image, options: BuildOptions) -> Callable[[], Image]:
    """The base the build was made on, looked for once and only when needed."""
    from functools import cache

    from ..stages.patch import old_base_of

    @cache
    def find() -> Image:
        return old_base_of(built, store, lambda name: load_image(plan.recipe.image_ref(name), work=store,
                                                                 platform=built.config.platform, options=options))
    return find


def _check_available(ref: Ref) -> None:
    """Fail before the layout is touched when an input is plainly missing."""
    if isinstance(ref, DirRef) and not Path(ref.path).is_dir():
        raise NotFound(f"base directory {ref.path}", "the filesystem")
    if isinstance(ref, LayoutRef):
        open_layout_ref(ref)


def _annotations(plan: Plan, base: Image) -> dict[str, str]:
    r = plan.recipe.recipe
    assert r.build is not None and r.source is not None
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
