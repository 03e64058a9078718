"""``debug-image`` orchestration: pick the patched release, add tools, root, sshd, keys and a dev identity."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput, LayoutError, NotFound, RefError
from ..oci.descriptor import Descriptor
from ..progress import SILENT, Progress
from ..recipe.load import LoadedRecipe
from ..recipe.model import Environment
from ..sources import BuildOptions, load_image
from ..stages.debug import DebugInputs, HostKeyInputs, debug_image, derive_host_key
from ..stores.base import read_image, write_image
from ..stores.layout import LayoutStore
from ..timeutil import parse_duration, parse_rfc3339, rfc3339


@dataclass(frozen=True)
class DebugResult:
    name: str
    digest: str
    parent: str
    expires: str
    host_key: str  # public line
    port: int
    identity: str | None


def make_debug_image(lr: LoadedRecipe, *, keys: tuple[str, ...], host_seed: bytes, now: int, options: BuildOptions,
                     secrets: Mapping[str, str], layout: Path | None = None, git_cache: Path | None = None,
                     channel: str | None = None, release: int | None = None, delta: int | None = None,
                     ttl: str | None = None, sshd_only: bool = False, port: int = 2222,
                     progress: Progress = SILENT) -> DebugResult:
    r = lr.recipe
    if r.debug is None or r.debug.tools is None:
        raise InvalidInput(f"{lr.path}: the recipe has no debug.tools image")
    env = _dev_environment(lr)
    out = layout or lr.output_layout
    ttl_seconds = parse_duration(ttl or r.debug.ttl) if (ttl or r.debug.ttl) else 8 * 3600
    authority = None
    if env is not None and env.identity is not None:  # checked before anything is made
        from .environment import PreparedEnv, authority_of

        index = list(r.environments).index(env)
        authority = authority_of(lr, PreparedEnv(env, index, (), (), None), secrets, now)
    number = 0
    if release is not None or delta is not None:
        parent_desc, revision, channel_name, number = _from_ledger(lr, out, release, delta)
    else:
        parent_desc, revision, channel_name = _current(lr, out, channel, now, options, secrets, git_cache, progress)
    with LayoutStore.open_or_create(out) as store:
        parent = read_image(store, parent_desc)
        try:
            tools = load_image(lr.image_ref(r.debug.tools), work=store, platform=parent.config.platform,
                               options=options, progress=progress)
        except (NotFound, LayoutError, RefError) as e:
            raise lr.error(("debug", "tools"), _missing_tools(lr, r.debug.tools, e)) from None
        host_key = derive_host_key(host_seed, HostKeyInputs(parent.digest.text, tools.digest.text, keys,
                                                            channel_name))
        identity = None
        if authority is not None and env is not None and env.identity is not None:
            from ..stages.identity import Subject, issue, window

            ident = env.identity
            identity = issue(authority, Subject(r.name, env.location, env.environment, number, revision,
                                                         ident.trust_domain, tuple(ident.hosts), ident.puller),
                             *window(now, min(parse_duration(ident.ttl), ttl_seconds)))
        expires = rfc3339(now + ttl_seconds)
        created = parent.annotations.get("org.opencontainers.image.created")
        annotations = {"dev.regfp.stage": "debug", "dev.regfp.environment": f"{env.location}.{env.environment}"
                       if env else r.debug.environment}
        if identity is not None:
            annotations["dev.regfp.identity"] = identity.spiffe_id
        image = debug_image(DebugInputs(parent=parent, tools=tools, keys=keys, host_key=host_key, expires=expires,
                                        mtime=parse_rfc3339(created) if created else 0, identity=identity,
                                        sshd_only=sshd_only, port=port), store, annotations)
        desc = write_image(store, image)
        # The sshd-only image has its own tag: it must not replace the full debug image of the same target.
        name = f"ad-hoc/{_repo_name(lr)}/{revision}:{channel_name}" + ("-sshd" if sshd_only else "")
        store.set_names({name: desc})
    return DebugResult(name, desc.digest.text, parent.digest.text, expires, host_key.public_line, port,
                       identity.spiffe_id if identity else None)


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
    assert r.debug is not None
    wanted = r.debug.environment
    for env in r.environments:
        if wanted in (env.environment, f"{env.location}.{env.environment}"):
            return env
    return None


def _repo_name(lr: LoadedRecipe) -> str:
    from .source import repo_name

    source = lr.recipe.source
    if source is None:
        return repo_name(lr, None)
    if source.name:
        return source.name
    from ..gitsource import Repository

    return repo_name(lr, Repository.open(source.git, base=lr.directory))


def _from_ledger(lr: LoadedRecipe, out: Path, release: int | None,
                 delta: int | None) -> tuple[Descriptor, str, str, int]:
    from .rollout import read_ledger

    r = lr.recipe
    if r.rollouts is None:
        raise InvalidInput(f"{lr.path}: --release/--delta need a 'rollouts' section")
    ledger = read_ledger(LayoutStore.open(out), r.name)
    rel = ledger.get(release) if release is not None else ledger.at_delta(delta or 0)
    if rel is None:
        raise InvalidInput(f"{r.name} has no release at n-{delta}")
    return rel.image, rel.revision, rel.channel, rel.number


def _current(lr: LoadedRecipe, out: Path, channel: str | None, now: int, options: BuildOptions,
             secrets: Mapping[str, str], git_cache: Path | None, progress: Progress) -> tuple[Descriptor, str, str]:
    from .converge import converge
    from .run import Run

    r = lr.recipe
    if r.patch is None:
        raise InvalidInput(f"{lr.path}: debug images are built on a patched release; add patch.channels")
    name = channel or (r.rollouts.channel if r.rollouts else next(iter(r.patch.channels)))
    run = Run(lr, out, now, options, progress=progress, secrets=secrets, git_cache=git_cache, channels=(name,))
    converge(run, ("build", "patch"))
    assert run.source is not None
    store = LayoutStore.open(out)
    desc = store.resolve(run.source.patch_name(name))
    return Descriptor(desc.media_type, desc.digest, desc.size), run.source.commit.sha, name
