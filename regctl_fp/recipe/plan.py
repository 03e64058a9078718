"""The plan: the recipe's stages as a DAG of nodes, each with its content-addressed cache key and state.

A stage's key is the sha256 of a canonical JSON of its kind, its recipe fragment, the digests of its
input images, the source commit and regfp's output-format version (DESIGN section 5). An image whose
``dev.regfp.key`` annotation equals the key is reused; ``rebuildAfter`` expires builds by ``now``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import RecipeError, RegfpError
from ..gitsource import Commit, Repository
from ..oci.canonical import canonical_json
from ..oci.descriptor import Descriptor
from ..oci.manifest import Manifest
from ..refs import Ref, check_tag
from ..sources import BuildOptions
from ..stores.base import Store, closure
from ..stores.layout import LayoutStore
from ..timeutil import parse_duration, parse_rfc3339, rfc3339
from .load import LoadedRecipe
from .model import fragment

FORMAT_VERSION = 1  # bump when the same inputs would give different output bytes

A_KEY = "dev.regfp.key"
A_STAGE = "dev.regfp.stage"
A_BUILT_AT = "dev.regfp.built-at"  # on index entries only: the time is not part of the image
A_REBUILD_AFTER = "dev.regfp.rebuild-after"
A_CHANNEL = "dev.regfp.channel"
A_BASE_NAME = "org.opencontainers.image.base.name"
A_BASE_DIGEST = "org.opencontainers.image.base.digest"
A_REVISION = "org.opencontainers.image.revision"
A_CREATED = "org.opencontainers.image.created"
A_SOURCE = "org.opencontainers.image.source"

STAGES = frozenset({"build", "patch", "rollout", "environment", "matrix", "work"})
CHAIN = frozenset({"build", "patch", "rollout", "environment"})
NEEDS = {"patch": {"build"}, "rollout": {"build", "patch"}, "environment": {"build", "patch", "rollout"}}

State = Literal["cached", "build", "expired", "input"]


def stage_key(kind: str, fragment_: Any, inputs: dict[str, Any], commit: str | None) -> str:
    doc = {"kind": kind, "format": FORMAT_VERSION, "fragment": fragment_, "inputs": inputs, "commit": commit}
    return hashlib.sha256(canonical_json(doc)).hexdigest()


@dataclass(frozen=True)
class Node:
    id: str
    stage: str
    names: tuple[str, ...]
    state: State
    reason: str
    inputs: tuple[str, ...] = ()
    key: str | None = None
    digest: str | None = None


@dataclass(frozen=True)
class Existing:
    """What the layout already holds under a stage's name."""

    descriptor: Descriptor
    annotations: dict[str, str]
    built_at: int | None


@dataclass(frozen=True)
class ChannelInput:
    """A patch channel resolved for this run: the reference it stands for and that image's digest."""

    name: str
    ref: str  # as written in the recipe (relative paths stay relative: they go into keys)
    digest: str


@dataclass
class Plan:
    recipe: LoadedRecipe
    layout: Path
    repo: Repository | None
    repo_name: str
    commit: Commit
    base_ref: str
    channel: str | None
    build_fragment: Any
    existing: Existing | None
    nodes: list[Node] = field(default_factory=list)
    from_image: str | None = None  # patch.from: the digest of the image patched instead of a build
    channels: dict[str, ChannelInput] = field(default_factory=dict)
    patched: dict[str, Existing | None] = field(default_factory=dict)

    @property
    def build_node(self) -> Node:
        return next(n for n in self.nodes if n.id == "build")  # a build, or patch.from's image

    @property
    def has_build(self) -> bool:
        return any(n.id == "build" for n in self.nodes)

    def build_key(self, base_digest: str) -> str:
        return stage_key("build", self.build_fragment, {"base": {"name": self.base_ref, "digest": base_digest}},
                         self.commit.sha)

    def patch_key(self, build_digest: str, channel: str) -> str:
        ch = self.channels[channel]
        patch = self.recipe.recipe.patch
        fallback = patch.fallback if patch else "error"
        return stage_key("patch", {"channel": channel, "ref": ch.ref, "fallback": fallback},
                         {"build": build_digest, "base": ch.digest}, self.commit.sha)

    def patch_name(self, channel: str) -> str:
        return f"patch/{self.repo_name}/{self.commit.sha}:{channel}"

    def is_unit(self, node: Node) -> bool:
        """Independent units (what CI shards): patches, environments, matrix cells, work chunks. The
        rollout channel's patch is a prerequisite of the rollout, not a unit."""
        rollouts = self.recipe.recipe.rollouts
        if node.stage == "patch" and rollouts is not None and node.id == f"patch:{rollouts.channel}":
            return False
        return node.stage in ("patch", "environment", "matrix", "work")

    def nodes_of(self, stage: str) -> list[Node]:
        return [n for n in self.nodes if n.stage == stage]

    @property
    def build_names(self) -> tuple[str, ...]:
        if self.from_image is not None:
            return (f"from/{self.repo_name}:{self.commit.sha}",)
        names = [f"build/{self.repo_name}:{self.commit.sha}"]
        if self.commit.tag is not None and _valid_tag(self.commit.tag):
            names.append(f"build/{self.repo_name}:{self.commit.tag}")
        return tuple(names)


def _valid_tag(tag: str) -> bool:
    try:
        check_tag(tag)
    except RegfpError:
        return False
    return True


def repo_name(lr: LoadedRecipe, repo: Repository | None) -> str:
    """``<repo>`` in image names: source.name, else the repository's basename in the OCI name grammar
    (the recipe's name for a recipe that patches an existing image)."""
    source = lr.recipe.source
    if source is None or repo is None:
        return lr.recipe.name
    if source.name:
        return source.name
    name = re.sub(r"[^a-z0-9._-]+", "-", repo.basename.lower())
    name = re.sub(r"[._-]{2,}", "-", name).strip("._-")
    if not name:
        raise RecipeError(str(lr.path), lr.doc.line(("source",)), f"cannot derive an image name from repository "
                          f"{repo.basename!r}; set source.name", "source.name")
    return name


def make_plan(lr: LoadedRecipe, *, now: int, options: BuildOptions, layout: Path | None = None,
              git_cache: Path | None = None, stages: frozenset[str] = STAGES,
              channels: tuple[str, ...] | None = None, shard: tuple[int, int] | None = None,
              work: Store | None = None) -> Plan:
    """Resolve the source and the channel bases and look up what the layout already has.

    Names nothing: ``dir:`` channel bases are made into ``work`` (the layout about to be built, so the
    blobs need not be made twice) or, for a pure plan, hashed into a digest-only store. ``shard`` (I, N)
    keeps only this shard's share of the independent units.
    """
    r = lr.recipe
    stages = frozenset().union(*({s} | NEEDS.get(s, set()) for s in stages))
    out = layout or lr.output_layout
    base_ref = lr.base_ref()
    store = open_existing(out)
    if r.build is None or r.source is None:  # patch.from: an existing image stands in for the build
        digest = digest_of(lr.image_ref(base_ref), options, work)
        commit = Commit(digest.split(":", 1)[1], 0, None)
        plan = Plan(lr, out, None, repo_name(lr, None), commit, base_ref, None, {"from": base_ref}, None,
                    from_image=digest)
        if stages & CHAIN:
            plan.nodes = [Node("build", "from", plan.build_names, "cached", "an existing image (patch.from)",
                               (), digest=digest)]
    else:
        repo = Repository.open(r.source.git, base=lr.directory, cache=git_cache)
        commit = repo.resolve(r.source.ref)
        channel = r.build.base if r.patch and r.build.base in r.patch.channels else None
        build_fragment = {"build": fragment(r.build),
                          "source": {k: v for k, v in (("subdir", r.source.subdir), ("url", r.source.url)) if v}}
        plan = Plan(lr, out, repo, repo_name(lr, repo), commit, base_ref, channel, build_fragment, None)
        if store is not None:
            plan.existing = lookup(store, plan.build_names[0])
        if stages & CHAIN:  # the chain's stages all stand on the build
            plan.nodes = [
                Node("source", "input", (f"{r.source.git}@{r.source.ref}",), "input", f"commit {commit.sha[:12]}",
                     key=None, digest=commit.sha),
                Node("base", "input", (base_ref,), "input", f"channel {channel}" if channel else "image reference"),
                _build_node(plan, now),
            ]
    if "patch" in stages and r.patch is not None:
        wanted = channels if channels is not None else tuple(r.patch.channels)
        for name in wanted:
            if name not in r.patch.channels:
                raise lr.error(("patch", "channels"), f"no channel {name!r} in this recipe "
                                                      f"(channels: {', '.join(r.patch.channels)})")
            ref = lr.channel_ref(name)
            digest = digest_of(lr.image_ref(ref), options, work)
            plan.channels[name] = ChannelInput(name, ref, digest)
            if store is not None:
                plan.patched[name] = lookup(store, plan.patch_name(name))
            plan.nodes.append(Node(f"channel:{name}", "input", (ref,), "input", f"channel {name}",
                                   digest=digest))
            plan.nodes.append(_patch_node(plan, name))
    if "rollout" in stages and r.rollouts is not None and r.rollouts.channel in plan.channels:
        plan.nodes.append(_rollout_node(plan, store))
        if "environment" in stages and r.environments:
            from .environments import plan_nodes

            plan.nodes.extend(plan_nodes(plan, store, now, options, work))
    if stages & {"matrix", "work"} and (r.matrix or r.work):
        from . import units

        plan.nodes.extend(n for n in units.plan_nodes(plan, store, options, work) if n.stage in stages)
    if shard is not None:
        plan.nodes = [n for n in plan.nodes if not plan.is_unit(n) or in_shard(n.id, *shard)]
    return plan


def in_shard(unit: str, index: int, count: int) -> bool:
    """Unit ids go to shards by sha256, so every shard agrees without talking to the others."""
    return int(hashlib.sha256(unit.encode()).hexdigest(), 16) % count == index - 1


def _rollout_node(plan: Plan, store: LayoutStore | None) -> Node:
    from ..stages.rollout import ledger_name
    from .rollouts import read_ledger

    r = plan.recipe.recipe
    assert r.rollouts is not None
    channel = r.rollouts.channel
    inputs = (f"patch:{channel}",)
    name = ledger_name(r.name)
    ledger = read_ledger(store, r.name) if store is not None else None
    latest = ledger.latest if ledger else None
    patch = next(n for n in plan.nodes if n.id == f"patch:{channel}")
    if latest is None:
        return Node("rollout", "rollout", (name,), "build", "no release yet: r1 will be cut", inputs)
    if patch.state == "cached" and patch.digest == latest.image.digest.text:
        return Node("rollout", "rollout", (name,), "cached", f"r{latest.number} is the newest release", inputs,
                    digest=latest.image.digest.text)
    return Node("rollout", "rollout", (name,), "build", f"a new {channel} image: r{ledger.last + 1} will be cut"
                if ledger else "a new release will be cut", inputs)


def digest_of(ref: Ref, options: BuildOptions, work: Store | None = None) -> str:
    """The manifest digest ``ref`` stands for; blobs a ``dir:`` needs go to ``work`` (default: nowhere)."""
    from ..sources import load_image
    from ..stores.null import NullStore

    return load_image(ref, work=work or NullStore(), platform=options.platform, options=options).digest.text


def _patch_node(plan: Plan, channel: str) -> Node:
    name = plan.patch_name(channel)
    inputs = ("build", f"channel:{channel}")
    build = plan.build_node
    if build.state != "cached" or build.digest is None:
        return Node(f"patch:{channel}", "patch", (name,), "build", "the build is (re)built first", inputs)
    key = plan.patch_key(build.digest, channel)
    ex = plan.patched.get(channel)
    if ex is None:
        return Node(f"patch:{channel}", "patch", (name,), "build", "not patched yet", inputs, key=key)
    if ex.annotations.get(A_KEY) == key:
        return Node(f"patch:{channel}", "patch", (name,), "cached", "up to date", inputs, key=key,
                    digest=ex.descriptor.digest.text)
    if ex.annotations.get(A_BASE_DIGEST) != plan.channels[channel].digest:
        why = f"channel {channel} moved to {plan.channels[channel].digest[:19]}"
    else:
        why = "the build or recipe changed"
    return Node(f"patch:{channel}", "patch", (name,), "build", why, inputs, key=key)


def open_existing(path: Path) -> LayoutStore | None:
    if not (path / "oci-layout").exists():
        return None
    return LayoutStore.open(path)


def lookup(store: LayoutStore, name: str) -> Existing | None:
    desc = store.names().get(name)
    if desc is None:
        return None
    try:
        manifest = Manifest.parse(store.get_manifest(desc), desc.media_type)
        closure(store, [desc])
    except RegfpError:
        return None  # damaged or incomplete: treat as absent, so it is rebuilt
    built = desc.annotations.get(A_BUILT_AT)
    try:
        built_at = parse_rfc3339(built) if built else None
    except ValueError:
        built_at = None
    return Existing(desc, dict(manifest.annotations), built_at)


def _build_node(plan: Plan, now: int) -> Node:
    names = plan.build_names
    inputs = ("source", "base")
    ex = plan.existing
    if ex is None:
        return Node("build", "build", names, "build", "not built yet", inputs)
    pinned = ex.annotations.get(A_BASE_DIGEST)
    if ex.annotations.get(A_BASE_NAME) != plan.base_ref or pinned is None:
        return Node("build", "build", names, "build", "the base reference changed", inputs)
    key = plan.build_key(pinned)
    if ex.annotations.get(A_KEY) != key:
        return Node("build", "build", names, "build", "the recipe changed since the last build", inputs)
    build = plan.recipe.recipe.build
    ttl = build.rebuild_after if build is not None else None
    if ttl is not None:
        if ex.built_at is None:
            return Node("build", "build", names, "expired", "no build time recorded", inputs, key=key,
                        digest=ex.descriptor.digest.text)
        expires = ex.built_at + parse_duration(ttl)
        if now >= expires:
            return Node("build", "build", names, "expired",
                        f"built {rfc3339(ex.built_at)}, expired {rfc3339(expires)} (rebuildAfter {ttl})", inputs,
                        key=key, digest=ex.descriptor.digest.text)
        reason = f"built {rfc3339(ex.built_at)}, expires {rfc3339(expires)}"
    else:
        reason = "up to date"
    return Node("build", "build", names, "cached", reason, inputs, key=key, digest=ex.descriptor.digest.text)
