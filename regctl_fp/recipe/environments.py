"""Environment variants against a layout: inputs read and checked up front, keys, names, execution.

Everything an environment needs from disk (files, CA certificates, the identity CA) is read and
checked before any stage writes, so bad input fails with nothing written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..oci.descriptor import Descriptor
from ..stages.environment import FileSpec, check_ca_pem, pem_blocks
from ..stages.validity import needs_reissue, window
from ..timeutil import parse_duration, parse_rfc3339, rfc3339
from .load import LoadedRecipe
from .model import Environment, FileSource, fragment
from .plan import Existing, stage_key

if TYPE_CHECKING:
    from ..progress import Progress
    from ..sources import BuildOptions
    from ..stages.identity import Authority
    from ..stores.base import Store
    from ..stores.layout import LayoutStore
    from .execute import Report
    from .plan import Node, Plan

A_ENVIRONMENT = "dev.regfp.environment"
A_LOCATION = "dev.regfp.location"
A_RELEASE = "dev.regfp.release"
A_IDENTITY = "dev.regfp.identity"
A_NOT_BEFORE = "dev.regfp.identity-not-before"
A_NOT_AFTER = "dev.regfp.identity-not-after"
A_SECRET = "dev.regfp.contains-secret"


@dataclass(frozen=True)
class PreparedEnv:
    spec: Environment
    index: int
    files: tuple[FileSpec, ...]
    ca_certs: tuple[bytes, ...]
    ca_fingerprint: str | None  # of the identity CA certificate
    authority: Authority | None  # only when secrets were supplied (execution, not planning)

    @property
    def label(self) -> str:
        return f"{self.spec.location}.{self.spec.environment}"

    def names(self, name: str, release: int) -> tuple[str, str]:
        prefix = f"{self.label}/app/{name}"
        return f"{prefix}:live", f"{prefix}:r{release}"

    @property
    def ttl(self) -> int:
        assert self.spec.identity is not None
        return parse_duration(self.spec.identity.ttl)

    def window_for(self, existing: Existing | None, now: int) -> tuple[int, int] | None:
        """The identity's validity window: the existing one while it has a third of its life left."""
        if self.spec.identity is None:
            return None
        if existing is not None:
            nb, na = existing.annotations.get(A_NOT_BEFORE), existing.annotations.get(A_NOT_AFTER)
            if nb and na:
                start, end = parse_rfc3339(nb), parse_rfc3339(na)
                if end - start == self.ttl and not needs_reissue(end, self.ttl, now) and start <= now:
                    return start, end
        return window(now, self.ttl)

    def key(self, release: Descriptor, revision: str, polyfills: list[str], win: tuple[int, int] | None) -> str:
        inputs = {
            "release": release.digest.text,
            "polyfills": polyfills,
            "files": {f.path: hashlib.sha256(f.data).hexdigest() for f in self.files},
            "caCerts": [hashlib.sha256(c).hexdigest() for c in self.ca_certs],
            "identity": {"ca": self.ca_fingerprint, "window": list(win)} if win else None,
        }
        return stage_key("environment", fragment(self.spec), inputs, revision)


def prepare(lr: LoadedRecipe, *, now: int, secrets: Mapping[str, str] | None) -> list[PreparedEnv]:
    """Read and check every environment's inputs. ``secrets`` (env var -> value) unlocks CA keys; without
    it (planning) keys are not touched."""
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
            try:  # fully parsed when executing; planning only needs the bytes
                certs.append(check_ca_pem(data, str(lr.resolve(rel))) if secrets is not None else
                             b"".join(block for kind, block in pem_blocks(data) if kind == "CERTIFICATE"))
            except InvalidInput as e:
                raise lr.error((*kp, "caCerts", j), e.message) from None
        fingerprint = authority = None
        if env.identity is not None:
            ident = env.identity
            cert_path = lr.resolve(ident.ca)
            fingerprint = _cert_fingerprint(cert_path)
            if secrets is not None:
                from ..stages.identity import IdentityError, load_authority

                password = None
                if ident.key_password_env:
                    password = secrets.get(ident.key_password_env)
                    if password is None:
                        raise lr.error((*kp, "identity", "keyPasswordEnv"),
                                       f"environment variable {ident.key_password_env} is not set")
                try:
                    authority = load_authority(cert_path, lr.resolve(ident.key), password, now=now)
                except IdentityError as e:
                    raise lr.error((*kp, "identity"), e.message) from None
            elif fingerprint is None:
                raise lr.error((*kp, "identity", "ca"), f"{cert_path}: not a readable PEM certificate")
        out.append(PreparedEnv(env, i, tuple(files), tuple(certs), fingerprint, authority))
    return out


def _cert_fingerprint(path: Path) -> str | None:
    """SHA-256 of the first certificate's DER, as ``Certificate.fingerprint`` gives, without parsing it."""
    import base64
    import binascii

    from ..errors import InputFileError
    from ..regularfile import PEM_LIMIT, read_regular

    try:
        data = read_regular(path, PEM_LIMIT, "CA certificate")
        blocks = [b for kind, b in pem_blocks(data) if kind == "CERTIFICATE"]
        body = b"".join(blocks[0].splitlines()[1:-1]) if blocks else b""
        return hashlib.sha256(base64.b64decode(body, validate=True)).hexdigest() if body else None
    except (OSError, InputFileError, binascii.Error, ValueError):
        return None  # reported when the CA is loaded, or below when planning


def _read(lr: LoadedRecipe, rel: str, kp: tuple[str | int, ...]) -> bytes:
    from ..errors import InputFileError
    from ..regularfile import SMALL_FILE_LIMIT, read_regular

    path: Path = lr.resolve(rel)
    try:
        return read_regular(path, SMALL_FILE_LIMIT, "file read into an image")
    except InputFileError as e:
        raise lr.error(kp, e.message) from None
    except OSError as e:
        raise lr.error(kp, f"{path}: cannot read ({e.strerror})") from None


def identity_annotations(spiffe: str, win: tuple[int, int]) -> dict[str, str]:
    return {A_IDENTITY: spiffe, A_NOT_BEFORE: rfc3339(win[0]), A_NOT_AFTER: rfc3339(win[1]), A_SECRET: "true"}


def password_vars(lr: LoadedRecipe) -> list[str]:
    return sorted({e.identity.key_password_env for e in lr.recipe.environments
                   if e.identity is not None and e.identity.key_password_env})


# ---- planning and execution ---------------------------------------------------------------------------

def plan_nodes(plan: Plan, store: LayoutStore | None, now: int, options: BuildOptions,
               work: Store | None = None) -> list[Node]:
    from .plan import A_KEY, Node, digest_of, lookup
    from .rollouts import read_ledger

    r = plan.recipe.recipe
    ledger = read_ledger(store, r.name) if store is not None else None
    nodes = []
    for env in prepare(plan.recipe, now=now, secrets=None):
        inputs = ("rollout",)
        rel = ledger.at_delta(env.spec.delta) if ledger else None
        nid = f"env:{env.label}"
        if rel is None:
            nodes.append(Node(nid, "environment", (f"{env.label}/app/{r.name}:live",), "build",
                              f"waits for a release at n-{env.spec.delta}", inputs))
            continue
        live, rname = env.names(r.name, rel.number)
        existing = lookup(store, rname) if store is not None else None
        polys = [digest_of(plan.recipe.image_ref(p), options, work) for p in env.spec.polyfills]
        key = env.key(rel.image, rel.revision, polys, env.window_for(existing, now))
        if existing is not None and existing.annotations.get(A_KEY) == key:
            nodes.append(Node(nid, "environment", (live, rname), "cached", f"r{rel.number} at n-{env.spec.delta}",
                              inputs, key=key, digest=existing.descriptor.digest.text))
        else:
            why = "identity expires soon: re-issued" if existing is not None and env.spec.identity else \
                f"r{rel.number} at n-{env.spec.delta}"
            nodes.append(Node(nid, "environment", (live, rname), "build", why, inputs, key=key))
    return nodes


def run(plan: Plan, prepared: list[PreparedEnv], *, now: int, options: BuildOptions, progress: Progress,
        report: Report) -> None:
    from ..oci.manifest import Manifest
    from ..sources import load_image
    from ..stages.environment import EnvironmentInputs, environment_image
    from ..stages.identity import Subject, issue
    from ..stores.base import read_image, write_image
    from .execute import REMOTE_HIT, ImageResult, from_remote, to_remote
    from .plan import A_KEY, A_REVISION, A_STAGE, lookup
    from .rollouts import read_ledger

    lr = plan.recipe
    r = lr.recipe
    from ..stores.layout import LayoutStore

    with LayoutStore.open_or_create(plan.layout) as store:
        ledger = read_ledger(store, r.name)
        for env in prepared:
            rel = ledger.at_delta(env.spec.delta)
            if rel is None:
                report.notes.append(f"{env.label}: no release at n-{env.spec.delta} yet")
                continue
            live, rname = env.names(r.name, rel.number)
            existing = lookup(store, rname)
            release = read_image(store, rel.image)
            polyfills = [load_image(lr.image_ref(p), work=store, platform=release.config.platform, options=options)
                         for p in env.spec.polyfills]
            win = env.window_for(existing, now)
            key = env.key(rel.image, rel.revision, [p.digest.text for p in polyfills], win)
            if existing is not None and existing.annotations.get(A_KEY) == key:
                desc = existing.descriptor
                if store.names().get(live, None) is None or store.names()[live].digest != desc.digest:
                    store.set_names({live: desc})
                for n in (live, rname):
                    report.images.append(ImageResult("environment", n, desc.digest.text, True, "cached",
                                                     f"r{rel.number} at n-{env.spec.delta}"))
                continue
            hit = from_remote(options, key, store)
            if hit is not None:
                store.set_names({live: hit, rname: hit})
                for n in (live, rname):
                    report.images.append(ImageResult("environment", n, hit.digest.text, True, "cached", REMOTE_HIT))
                continue
            annotations = {A_STAGE: "environment", A_KEY: key, A_ENVIRONMENT: env.label,
                           A_LOCATION: env.spec.location, A_RELEASE: f"r{rel.number}", A_REVISION: rel.revision}
            identity = None
            if win is not None:
                ident = env.spec.identity
                assert ident is not None and env.authority is not None
                identity = issue(env.authority, Subject(r.name, env.spec.location, env.spec.environment,
                                                        rel.number, rel.revision, ident.trust_domain,
                                                        tuple(ident.hosts), ident.puller), *win)
                annotations.update(identity_annotations(identity.spiffe_id, win))
            created = Manifest.parse(store.get_manifest(rel.image), rel.image.media_type).annotations.get(
                "org.opencontainers.image.created")
            mtime = parse_rfc3339(created) if created else 0
            inputs = EnvironmentInputs(release=release, release_number=rel.number, name=r.name,
                                       location=env.spec.location, environment=env.spec.environment,
                                       revision=rel.revision, channel=rel.channel, mtime=mtime,
                                       env=dict(env.spec.env), files=env.files, ca_certs=env.ca_certs,
                                       polyfills=tuple(polyfills), identity=identity)
            image = environment_image(inputs, store, annotations, progress)
            desc = write_image(store, image)
            store.set_names({live: desc, rname: desc})
            to_remote(options, key, store, desc)
            for n in (live, rname):
                report.images.append(ImageResult("environment", n, desc.digest.text, False, "build",
                                                 f"r{rel.number} at n-{env.spec.delta}"))
