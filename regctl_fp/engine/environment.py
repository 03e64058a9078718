"""Stage kind ``environment``: per location x environment, the release at its delta plus env, files,
CA certificates, polyfills and an identity certificate.

Everything an environment needs from disk (files, CA certificates, the identity CA) is read and
checked before any name moves; a missing CA password fails before anything is made. The identity's
validity window is a function of the run's clock alone (``stages.validity.window``), so the desired
image is a function of the recipe, the ledger, the inputs and ``now``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputFileError, InvalidInput
from ..oci import annotation_keys as A
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor, Platform
from ..oci.manifest import Index
from ..recipe.load import LoadedRecipe
from ..recipe.model import Environment, FileSource, fragment
from ..regularfile import PEM_LIMIT, SMALL_FILE_LIMIT, read_regular
from ..stages.environment import FileSpec, ca_pem_certificates, check_ca_pem, pem_blocks
from ..stages.validity import window
from ..timeutil import parse_duration, parse_rfc3339, rfc3339
from ..values import valueclass
from .graph import Node, NodeId, Outcome
from .keys import stage_key
from .reuse import reuse_or_make
from .rollout import ROLLOUT
from .run import Run

if TYPE_CHECKING:
    from ..oci.image import Image
    from ..stages.environment import EnvironmentInputs
    from ..stages.identity import Authority, Issued
    from ..stages.rollout import Ledger, Release


@valueclass
class PreparedEnv:
    spec: Environment
    index: int
    files: tuple[FileSpec, ...]
    ca_certs: tuple[bytes, ...]
    ca_fingerprint: str | None  # of the identity CA certificate

    @property
    def label(self) -> str:
        return f"{self.spec.location}.{self.spec.environment}"

    def names(self, name: str, release: int | None) -> tuple[str, ...]:
        prefix = f"{self.label}/app/{name}"
        return (f"{prefix}:live",) if release is None else (f"{prefix}:live", f"{prefix}:r{release}")

    def window(self, now: int) -> tuple[int, int] | None:
        if self.spec.identity is None:
            return None
        return window(now, parse_duration(self.spec.identity.ttl))

    def key(self, release: Descriptor, revision: str, polyfills: list[str] | list[dict[str, str]],
            win: tuple[int, int] | None) -> str:
        inputs = {
            "release": release.digest.text,
            "polyfills": polyfills,
            "files": {f.path: hashlib.sha256(f.data).hexdigest() for f in self.files},
            "caCerts": [hashlib.sha256(c).hexdigest() for c in self.ca_certs],
            "identity": {"ca": self.ca_fingerprint, "window": list(win)} if win else None,
        }
        return stage_key("environment", fragment(self.spec), inputs, revision)


def prepare(lr: LoadedRecipe, *, full: bool) -> list[PreparedEnv]:
    """Read and check every environment's inputs; ``full`` also parses CA certificates completely."""
    out = []
    for i, env in enumerate(lr.recipe.environments):
        kp = ("environments", i)
        files = []
        for image_path, source in env.files.items():
            src = FileSource(src=source) if isinstance(source, str) else source
            data = _read(lr, src.src, (*kp, "files", image_path))
            uid, _, gid = src.owner.partition(":")
            files.append(FileSpec(image_path, data, int(src.mode, 8), int(uid), int(gid or uid)))
        certs = []
        for j, rel in enumerate(env.ca_certs):
            data = _read(lr, rel, (*kp, "caCerts", j))
            try:  # checked when executing (parsed before the first write); planning only needs the bytes
                certs.append(ca_pem_certificates(data, str(lr.resolve(rel))) if full else
                             b"".join(block for kind, block in pem_blocks(data) if kind == "CERTIFICATE"))
            except InvalidInput as e:
                raise lr.error((*kp, "caCerts", j), e.message) from None
        fingerprint = None
        if env.identity is not None:
            cert_path = lr.resolve(env.identity.ca)
            try:
                fingerprint = _cert_fingerprint(read_regular(cert_path, PEM_LIMIT, "CA certificate"))
            except InputFileError as e:
                raise lr.error((*kp, "identity", "ca"), e.message) from None
            except OSError as e:
                raise lr.error((*kp, "identity", "ca"), f"{cert_path}: cannot read ({e.strerror})") from None
            if fingerprint is None:
                raise lr.error((*kp, "identity", "ca"), f"{cert_path}: not a readable PEM certificate")
        out.append(PreparedEnv(env, i, tuple(files), tuple(certs), fingerprint))
    return out


def authority(run: Run, env: PreparedEnv) -> Authority:
    """The identity CA of ``env``, loaded once per run."""
    ident = env.spec.identity
    assert ident is not None
    memo_key = f"authority:{ident.ca}:{ident.key}:{ident.key_password_env}"
    if memo_key not in run.memo:
        run.memo[memo_key] = authority_of(run.lr, env, run.secrets or {}, run.now)
    found: Authority = run.memo[memo_key]
    return found


def authority_of(lr: LoadedRecipe, env: PreparedEnv, secrets: Mapping[str, str], now: int) -> Authority:
    """The identity CA of ``env``, its key unlocked with the password the recipe names."""
    from ..stages.identity import IdentityError, load_authority

    ident = env.spec.identity
    assert ident is not None
    kp = ("environments", env.index)
    password = None
    if ident.key_password_env:
        password = secrets.get(ident.key_password_env)
        if password is None:
            raise lr.error((*kp, "identity", "keyPasswordEnv"),
                           f"environment variable {ident.key_password_env} is not set")
    try:
        return load_authority(lr.resolve(ident.ca), lr.resolve(ident.key), password, now=now)
    except IdentityError as e:
        raise lr.error((*kp, "identity"), e.message) from None


def _cert_fingerprint(pem: bytes) -> str | None:
    """SHA-256 of the first certificate's DER, as ``Certificate.fingerprint`` gives, without parsing it."""
    import base64
    import binascii

    try:
        blocks = [b for kind, b in pem_blocks(pem) if kind == "CERTIFICATE"]
        body = b"".join(blocks[0].splitlines()[1:-1]) if blocks else b""
        return hashlib.sha256(base64.b64decode(body, validate=True)).hexdigest() if body else None
    except (binascii.Error, ValueError):
        return None  # reported by the caller


def _read(lr: LoadedRecipe, rel: str, kp: tuple[str | int, ...]) -> bytes:
    """A file the recipe names, read whole: a regular file only, and bounded."""
    path: Path = lr.resolve(rel)
    try:
        return read_regular(path, SMALL_FILE_LIMIT, "file read into an image")
    except InputFileError as e:
        raise lr.error(kp, e.message) from None
    except OSError as e:
        raise lr.error(kp, f"{path}: cannot read ({e.strerror})") from None


def identity_annotations(spiffe: str, win: tuple[int, int]) -> dict[str, str]:
    return {A.IDENTITY: spiffe, A.IDENTITY_NOT_BEFORE: rfc3339(win[0]), A.IDENTITY_NOT_AFTER: rfc3339(win[1]),
            A.CONTAINS_SECRET: "true"}


# ---- the stage kind -----------------------------------------------------------------------------------

def prepared(run: Run) -> list[PreparedEnv]:
    if "environments" not in run.memo:
        run.memo["environments"] = prepare(run.lr, full=not run.dry)
    envs: list[PreparedEnv] = run.memo["environments"]
    return envs


def check_inputs(run: Run) -> None:
    """Every input is read now; the identity CAs (keys, passwords) are loaded before the layout is first
    written, so a bad key fails with nothing written, and a run that writes nothing never loads them."""
    envs = prepared(run)
    for env in envs:
        for ref in env.spec.polyfills:
            run.lr.image_ref(ref)
    from .platforms import run_platforms

    platforms = run_platforms(run)
    if platforms is not None:  # each polyfill has an image for every platform, before anything is made
        for env in envs:
            _platform_polyfills(run, env, platforms)
    if run.dry:
        return

    def load_authorities() -> None:
        for env in envs:
            for j, data in enumerate(env.ca_certs):  # parsed (cryptography) only when something is written
                rel = env.spec.ca_certs[j]
                try:
                    check_ca_pem(data, str(run.lr.resolve(rel)))
                except InvalidInput as e:
                    raise run.lr.error(("environments", env.index, "caCerts", j), e.message) from None
            if env.spec.identity is not None:
                authority(run, env)

    run.before_write(load_authorities)


def environment_nodes(run: Run) -> list[Node]:
    r = run.lr.recipe
    if r.rollouts is None:
        return []
    return [Node(NodeId("environment", f"{e.location}.{e.environment}"),
                 (f"{e.location}.{e.environment}/app/{r.name}:live",), (ROLLOUT,), unit=True)
            for e in r.environments]


def evaluate_environment(run: Run, node: Node) -> Outcome:
    r = run.lr.recipe
    env = next(e for e in prepared(run) if e.label == node.id.part)
    ledger: Ledger = run.memo["ledger"]
    delta = env.spec.delta
    rel = ledger.at_delta(delta)
    if rel is None:
        return Outcome(node, "waiting", "none", f"no release at n-{delta} yet",
                       names={n: None for n in env.names(r.name, None)})
    names = env.names(r.name, rel.number)
    platforms = release_platforms(run, rel.image)
    polyfills: list[str] | list[dict[str, str]] = \
        [run.image(p).digest.text for p in env.spec.polyfills] if platforms is None else \
        _platform_polyfills(run, env, platforms)
    win = env.window(run.now)
    key = env.key(rel.image, rel.revision, polyfills, win)
    at = f"r{rel.number} at n-{delta}"
    have = run.snapshot.manifest_annotations(names[1]) if names[1] in run.snapshot.names else {}
    why = "identity re-issued for a new validity window" if have and env.spec.identity else at
    return reuse_or_make(run, node, key, names, lambda: _make(run, env, rel, key, win),
                         cached_reason=at, make_reason=why)


def _platform_polyfills(run: Run, env: PreparedEnv, platforms: tuple[Platform, ...]) -> list[dict[str, str]]:
    """Each polyfill's image digest for every platform of a multi-platform release (each moves the key);
    a polyfill without an image of one of them is the recipe's error, found before anything is made."""
    from ..recipe.platforms import Refs
    from .platforms import platform_image

    return [{str(q): platform_image(run, Refs.of(ref), q, ("environments", env.index, "polyfills", j)).digest.text
             for q in platforms} for j, ref in enumerate(env.spec.polyfills)]


def release_platforms(run: Run, release: Descriptor) -> tuple[Platform, ...] | None:
    """The platforms of a multi-platform release (an image index), in its order; None for one image."""
    if release.media_type not in mt.INDEX_TYPES:
        return None
    store = run.readable
    assert store is not None, "a release in the ledger is in the layout"
    index = Index.parse(store.get_manifest(release), release.media_type)
    return tuple(d.platform for d in index.manifests if d.platform is not None and d.media_type in mt.MANIFEST_TYPES)


def _make(run: Run, env: PreparedEnv, rel: Release, key: str, win: tuple[int, int] | None) -> Descriptor:
    """The environment's image; for a multi-platform release, one per platform and then their index.
    The identity is issued once for the environment, so every platform carries the same certificate,
    and the generated layer (files, CA bundle, identity) is one blob wherever its bytes are equal."""
    from ..stages.environment import environment_image
    from ..stores.base import read_image, read_index_images, write_image, write_index

    r = run.lr.recipe
    store = run.store
    annotations = {A.STAGE: "environment", A.KEY: key, A.ENVIRONMENT: env.label, A.LOCATION: env.spec.location,
                   A.RELEASE: f"r{rel.number}", A.REVISION: rel.revision}
    identity = None
    if win is not None:
        from ..stages.identity import Subject, issue

        ident = env.spec.identity
        assert ident is not None
        identity = issue(authority(run, env), Subject(r.name, env.spec.location, env.spec.environment, rel.number,
                                                      rel.revision, ident.trust_domain, tuple(ident.hosts),
                                                      ident.puller), *win)
        annotations.update(identity_annotations(identity.spiffe_id, win))
    if rel.image.media_type in mt.INDEX_TYPES:
        images = {p: environment_image(_inputs(run, env, rel, release, identity), store, annotations, run.progress)
                  for p, release in read_index_images(store, rel.image).items()}
        return write_index(store, images, annotations)
    release = read_image(store, rel.image)
    return write_image(store, environment_image(_inputs(run, env, rel, release, identity), store, annotations,
                                                run.progress))


def _inputs(run: Run, env: PreparedEnv, rel: Release, release: Image, identity: Issued | None) -> EnvironmentInputs:
    from ..stages.environment import EnvironmentInputs

    polyfills = [run.image(p, platform=release.config.platform) for p in env.spec.polyfills]
    created = release.annotations.get(A.CREATED)
    return EnvironmentInputs(release=release, release_number=rel.number, name=run.lr.recipe.name,
                             location=env.spec.location, environment=env.spec.environment,
                             revision=rel.revision, channel=rel.channel,
                             mtime=parse_rfc3339(created) if created else 0, env=dict(env.spec.env),
                             files=env.files, ca_certs=env.ca_certs, polyfills=tuple(polyfills),
                             identity=identity)
