"""Stage kind ``debug``: a patched release plus debug tools, root, sshd with a developer's keys and the dev
environment's identity, under ``ad-hoc/<repo>/<sha>:<channel>`` (``-sshd`` for an sshd-only image).

It runs only when a run carries a ``DebugRequest`` (``regfp debug-image``): on the rollout channel's
patch of the current commit (built and patched in the same run), or on a release of the ledger.
"""

from __future__ import annotations

from ..errors import InvalidDocument, InvalidInput, LayoutError, NotFound, RefError
from ..oci import annotation_keys as A
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor, Platform
from ..oci.image import Image
from ..oci.manifest import Index
from ..recipe.load import LoadedRecipe
from ..recipe.model import Environment
from ..stages.debug import DebugInputs, HostKey, HostKeyInputs, debug_image, derive_host_key
from ..stores.base import read_image, write_image
from ..timeutil import parse_duration, parse_rfc3339, rfc3339
from ..values import valueclass
from .graph import Node, NodeId, Outcome
from .keys import stage_key
from .patch import patch_id
from .reuse import reuse_or_make
from .run import Run

DEBUG = NodeId("debug")
DEFAULT_TTL = 8 * 3600


@valueclass(kw_only=True)
class DebugRequest:
    keys: tuple[str, ...]  # the developers' public keys, checked
    host_seed: bytes  # the per-user secret host keys are derived from
    channel: str | None = None
    release: int | None = None
    delta: int | None = None
    ttl: str | None = None
    sshd_only: bool = False
    port: int = 2222
    platform: Platform | None = None  # --platform: which image of a multi-platform release (None: the host's)

    @property
    def from_ledger(self) -> bool:
        return self.release is not None or self.delta is not None


@valueclass(kw_only=True)
class DebugResult:
    name: str
    digest: str
    parent: str
    platform: str  # the parent's (one image: a debug image is of one platform)
    expires: str
    host_key: str  # public line
    port: int
    identity: str | None


def debug_channel(lr: LoadedRecipe, request: DebugRequest) -> str:
    """The patch channel a debug image of the current commit stands on."""
    r = lr.recipe
    if r.patch is None:
        raise InvalidInput(f"{lr.path}: debug images are built on a patched release; add patch.channels")
    return request.channel or (r.rollouts.channel if r.rollouts else next(iter(r.patch.channels)))


def debug_nodes(run: Run) -> list[Node]:
    request = run.debug
    if request is None:
        return []
    r = run.lr.recipe
    if r.debug is None or r.debug.tools is None:
        raise InvalidInput(f"{run.lr.path}: the recipe has no debug.tools image")
    if request.from_ledger:
        if r.rollouts is None:
            raise InvalidInput(f"{run.lr.path}: --release/--delta need a 'rollouts' section")
        return [Node(DEBUG)]
    return [Node(DEBUG, inputs=(patch_id(debug_channel(run.lr, request)),))]


def check_debug(run: Run) -> None:
    """The dev identity's CA is loaded before the layout is first written."""
    env = _dev_environment(run.lr)
    if run.dry or run.debug is None or env is None or env.identity is None:
        return
    from .environment import PreparedEnv, authority_of

    index = list(run.lr.recipe.environments).index(env)
    prepared = PreparedEnv(env, index, (), (), None)
    run.before_write(lambda: run.memo.setdefault("debug-authority",
                                                 authority_of(run.lr, prepared, run.secrets or {}, run.now)))


def evaluate_debug(run: Run, node: Node) -> Outcome:
    request = run.debug
    r = run.lr.recipe
    assert request is not None and r.debug is not None and r.debug.tools is not None
    parent_desc, revision, channel, number = _parent(run, node, request)
    parent = _pick_platform(run, parent_desc, request.platform,
                            f"r{number}" if number else f"the {channel} patch of {revision[:12]}")
    try:
        tools = run.image(r.debug.tools, platform=parent.config.platform)
    except (NotFound, LayoutError, RefError) as e:
        raise run.lr.error(("debug", "tools"), _missing_tools(run.lr, r.debug.tools, e)) from None
    except InvalidDocument as e:
        if "no manifest for platform" not in str(e):
            raise
        raise run.lr.error(("debug", "tools"), f"the debug tools image {r.debug.tools!r} has no image for "
                                               f"{parent.config.platform} ({e.reason}); a debug image runs "
                                               f"the tools on the app's platform") from None
    host_key = derive_host_key(request.host_seed, HostKeyInputs(parent.digest.text, tools.digest.text, request.keys,
                                                                channel))
    ttl = parse_duration(request.ttl or r.debug.ttl) if (request.ttl or r.debug.ttl) else DEFAULT_TTL
    env = _dev_environment(run.lr)
    identity = None
    if env is not None and env.identity is not None:
        from ..stages.identity import Subject, issue, window

        ident = env.identity
        run.store  # noqa: B018 - the before-write checks load the CA
        identity = issue(run.memo["debug-authority"],
                         Subject(r.name, env.location, env.environment, number, revision, ident.trust_domain,
                                 tuple(ident.hosts), ident.puller),
                         *window(run.now, min(parse_duration(ident.ttl), ttl)))
    expires = rfc3339(run.now + ttl)
    name = f"ad-hoc/{_repo_name(run)}/{revision}:{channel}" + ("-sshd" if request.sshd_only else "")
    key = stage_key("debug", {"sshd_only": request.sshd_only, "port": request.port, "expires": expires},
                    {"parent": parent.digest.text, "tools": tools.digest.text, "keys": list(request.keys),
                     "hostKey": host_key.public_line, "identity": identity.spiffe_id if identity else None},
                    revision)

    def make() -> Descriptor:
        return _make(run, request, parent, tools, host_key, expires, identity, env)

    out = reuse_or_make(run, node, key, (name,), make, cached_reason="the same request", make_reason="requested")
    run.memo["debug"] = DebugResult(name=name, digest=out.digest or "", parent=parent.digest.text,
                                    platform=str(parent.config.platform), expires=expires,
                                    host_key=host_key.public_line, port=request.port,
                                    identity=identity.spiffe_id if identity else None)
    return out


def _make(run: Run, request: DebugRequest, parent: Image, tools: Image, host_key: HostKey, expires: str,
          identity: object, env: Environment | None) -> Descriptor:
    from ..stages.identity import Issued

    r = run.lr.recipe
    assert r.debug is not None
    issued = identity if isinstance(identity, Issued) else None
    created = parent.annotations.get(A.CREATED)
    annotations = {A.STAGE: "debug",
                   A.ENVIRONMENT: f"{env.location}.{env.environment}" if env else r.debug.environment}
    if issued is not None:
        annotations[A.IDENTITY] = issued.spiffe_id
    image = debug_image(DebugInputs(parent=parent, tools=tools, keys=request.keys, host_key=host_key, expires=expires,
                                    mtime=parse_rfc3339(created) if created else 0, identity=issued,
                                    sshd_only=request.sshd_only, port=request.port), run.store, annotations)
    return write_image(run.store, image)


def _parent(run: Run, node: Node, request: DebugRequest) -> tuple[Descriptor, str, str, int]:
    """The image the debug image stands on: (descriptor, revision, channel, release number or 0)."""
    if request.from_ledger:
        from .rollout import read_ledger

        r = run.lr.recipe
        store = run.readable
        if store is None:
            raise InvalidInput(f"{r.name} has no releases yet: there is no layout at {run.layout}")
        ledger = read_ledger(store, r.name)
        rel = ledger.get(request.release) if request.release is not None else ledger.at_delta(request.delta or 0)
        if rel is None:
            raise InvalidInput(f"{r.name} has no release at n-{request.delta}")
        return rel.image, rel.revision, rel.channel, rel.number
    patched = run.outcome(node.inputs[0])
    entry = next(d for d in patched.names.values() if d is not None)
    assert run.source is not None
    return (Descriptor(entry.media_type, entry.digest, entry.size), run.source.commit.sha, node.inputs[0].part, 0)


def _pick_platform(run: Run, desc: Descriptor, asked: Platform | None, what: str) -> Image:
    """The one image a debug image stands on: ``asked``'s image of a multi-platform release (by default
    the host's, or the only one), or the release itself when it is one image of that platform."""
    from ..recipe.platforms import same_platform

    store = run.store
    want = asked or run.options.platform
    if desc.media_type in mt.INDEX_TYPES:
        index = Index.parse(store.get_manifest(desc), desc.media_type)
        have = [d for d in index.manifests if d.platform is not None and d.media_type in mt.MANIFEST_TYPES]
        pick = next((d for d in have if d.platform is not None and same_platform(d.platform, want)), None)
        if pick is None and asked is None and len(have) == 1:
            pick = have[0]
        if pick is None:
            raise InvalidInput(f"{what} has no image for {want} (it has: "
                               f"{', '.join(str(d.platform) for d in have) or 'none'}); pick one with --platform")
        return read_image(store, pick)
    image = read_image(store, desc)
    if asked is not None and not same_platform(image.config.platform, asked):
        raise InvalidInput(f"{what} is one {image.config.platform} image; it has no {asked} image to debug")
    return image


def _missing_tools(lr: LoadedRecipe, text: str, error: Exception) -> str:
    """Which key asked for the tools image, and how to make one (the script ships with regfp)."""
    from ..refs import LayoutRef

    ref = lr.image_ref(text)
    where = f"{ref.path} {ref.name}" if isinstance(ref, LayoutRef) and ref.name else "LAYOUT NAME"
    return (f"the debug tools image {text!r} is not there ({error}); make one (it must provide "
            f"/usr/sbin/dropbear and a shell), e.g. with regfp's `bash testdata/debug-tools/make-tools.sh "
            f"{where}` (uses Debian's busybox-static and dropbear-bin)")


def _dev_environment(lr: LoadedRecipe) -> Environment | None:
    r = lr.recipe
    if r.debug is None:
        return None
    wanted = r.debug.environment
    for env in r.environments:
        if wanted in (env.environment, f"{env.location}.{env.environment}"):
            return env
    return None


def _repo_name(run: Run) -> str:
    from .source import repo_name

    if run.source is not None:
        return run.source.repo_name
    source = run.lr.recipe.source
    if source is None:
        return repo_name(run.lr, None)
    if source.name:
        return source.name
    from ..gitsource import Repository

    return repo_name(run.lr, Repository.open(source.git, base=run.lr.directory))
