"""A distribution-spec registry as a Store: blobs and manifests of one repository, and names
``repository:tag`` mapped under a prefix (``localhost:5000/acme`` + ``build/hello:abc`` is
``acme/build/hello:abc``).

A store bound to a repository (``store.repository("build/hello")``, or ``for_ref``) reads and writes
content there. An unbound prefix store reads content from wherever it found it (by ``resolve`` or
``names``) and moves names with ``set_names``, which first makes each manifest present in its target
repository (mounting blobs from a sibling repository when needed), then tags: so a tag never points
at a manifest whose blobs are missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import InvalidInput, NotFound, RegfpError, RegistryError
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.manifest import Index, Manifest
from ..oci.streams import ByteReader, Opener
from ..oci.verify import VerifyingReader, read_verified
from ..progress import Progress
from ..refs import RegistryRef, check_repository, check_tag, split_name
from . import blobio
from .base import MANIFEST_LIMIT, Store, check_size
from .blobio import OnBytes, pull_scope, push_scope
from .transport import RegistryClient, next_link, read_limited

if TYPE_CHECKING:
    from .http_client import Response

ACCEPT = ", ".join((mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_LIST))
TAG_PAGE = 1000


class RegistryStore:
    """The Store protocol over one registry's distribution API, for a prefix or one repository."""

    def __init__(self, client: RegistryClient, prefix: str = "", repository: str | None = None, *,
                 chunk_size: int = 8 << 20, monolithic_limit: int | None = None,
                 spool_dir: str | None = None) -> None:
        self.client = client
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_repository(self.prefix)
        self.bound = check_repository(repository) if repository else None
        self.chunk_size = chunk_size
        self.monolithic_limit = monolithic_limit  # blobs above it go up in PATCH chunks
        self.spool_dir = spool_dir
        self._manifests: dict[Digest, bytes] = {}  # bytes of manifests seen, for tagging and re-reads
        # Repository -> whether the registry serves the referrers API there (learnt from an OCI-Subject
        # answer or a probe; see stores/referrers.py).
        self.referrers_api: dict[str, bool] = {}

    @classmethod
    def for_ref(cls, client: RegistryClient, ref: RegistryRef, *, chunk_size: int = 8 << 20,
                monolithic_limit: int | None = None, spool_dir: str | None = None) -> RegistryStore:
        """A store bound to the reference's repository; its name for ``ref`` is ``name_of(ref)``."""
        return cls(client, "", ref.repository, chunk_size=chunk_size, monolithic_limit=monolithic_limit,
                   spool_dir=spool_dir)

    @staticmethod
    def name_of(ref: RegistryRef) -> str:
        return f"{ref.repository}:{ref.tag or 'latest'}"

    def repository(self, name: str) -> RegistryStore:
        """A store for one repository under the prefix, sharing this store's connections and tokens."""
        return self._at(self._full(name))

    def _at(self, full_repository: str) -> RegistryStore:
        other = RegistryStore(self.client, self.prefix, full_repository, chunk_size=self.chunk_size,
                              monolithic_limit=self.monolithic_limit, spool_dir=self.spool_dir)
        other._manifests = self._manifests
        other.referrers_api = self.referrers_api
        return other

    @property
    def location(self) -> str:
        where = self.bound or self.prefix
        return f"registry {self.client.host}/{where}" if where else f"registry {self.client.host}"

    # -- names <-> repositories ---------------------------------------------------------------------
    def _full(self, repo: str) -> str:
        return check_repository(f"{self.prefix}/{repo}" if self.prefix else repo)

    def split(self, name: str) -> tuple[str, str]:
        """``name`` -> (full repository, tag)."""
        repo, tag = split_name(name)
        return self._full(repo), check_tag(tag)

    def _name(self, repository: str, tag: str) -> str:
        if self.prefix:
            return f"{repository[len(self.prefix) + 1:]}:{tag}"
        return f"{repository}:{tag}"

    def _repo_for(self, digest: Digest) -> str:
        """Where to read ``digest``: the bound repository, or one of the prefix's known to hold it."""
        if self.bound:
            return self.bound
        for repo in self.client.locations.others(digest.text, ""):
            if not self.prefix or repo.startswith(self.prefix + "/"):
                return repo
        raise NotFound(f"{digest} (no repository under this prefix is known to hold it; "
                       "resolve a name first or use store.repository(NAME))", self.location)

    def _write_repo(self) -> str:
        if self.bound is None:
            raise RegfpError(f"{self.location}: content goes into one repository; use store.repository(NAME)")
        return self.bound

    # -- blobs --------------------------------------------------------------------------------------
    def has_blob(self, digest: Digest) -> bool:
        repo = self._repo_for(digest)
        if self.client.locations.has(digest.text, repo) or blobio.head_blob(self.client, repo, digest):
            return True
        return self._head_manifest(repo, digest.text) is not None  # manifests are blobs in a layout

    def open_blob(self, desc: Descriptor) -> VerifyingReader:
        return blobio.open_blob(self.client, self._repo_for(desc.digest), desc)

    def read_blob(self, desc: Descriptor, limit: int) -> bytes:
        if desc.media_type in mt.MANIFEST_TYPES | mt.INDEX_TYPES:
            return self.get_manifest(desc)
        with self.open_blob(desc) as f:
            return read_verified(f, desc.digest, desc.size, f"blob {desc.digest} in {self.location}", limit)

    # ``private`` changes nothing here: the spool file is anonymous and 0600 already, and what protects
    # a secret in a registry is its access control (push such images only to private repositories).
    def blob_sink(self, *, private: bool = False) -> blobio.SpoolSink:
        repo = self._write_repo()
        return blobio.SpoolSink(lambda desc, opener: self._upload(repo, desc, opener, None), self.spool_dir)

    def put_blob(self, stream: ByteReader, desc: Descriptor, *, private: bool = False) -> None:
        repo = self._write_repo()
        if self.client.locations.has(desc.digest.text, repo) or blobio.head_blob(self.client, repo, desc.digest):
            return
        blobio.spool(stream, desc, lambda d, opener: self._upload(repo, d, opener, None), self.spool_dir)

    def put_blob_from(self, opener: Opener, desc: Descriptor, on_bytes: OnBytes | None = None) -> bool:
        """Upload from a source that can be opened again for a retry; False if it was already there.

        ``opener`` must return a stream that verifies the content (a store's ``open_blob`` does).
        """
        return self._upload(self._write_repo(), desc, opener, on_bytes) == "uploaded"

    def _upload(self, repo: str, desc: Descriptor, opener: Opener, on_bytes: OnBytes | None) -> str:
        return blobio.upload_blob(self.client, repo, desc, opener, chunk_size=self.chunk_size,
                                  monolithic_limit=self.monolithic_limit, on_bytes=on_bytes)

    # -- manifests ----------------------------------------------------------------------------------
    def get_manifest(self, desc: Descriptor) -> bytes:
        repo = self._repo_for(desc.digest)
        data = self._manifests.get(desc.digest)
        if data is None:
            data = self._fetch_manifest(repo, desc)
        self._learn_children(repo, data, desc.media_type)
        return data

    def _fetch_manifest(self, repo: str, desc: Descriptor) -> bytes:
        if desc.size > MANIFEST_LIMIT:
            raise InvalidInput(f"manifest {desc.digest} is {desc.size} bytes, over the {MANIFEST_LIMIT} limit")
        resp = self.client.request("GET", f"/v2/{repo}/manifests/{desc.digest}", scopes=pull_scope(repo),
                                   headers={"Accept": ACCEPT}, stream=True)
        if resp.status_code == 404:
            resp.close()
            raise NotFound(f"manifest {desc.digest}", f"{self.client.host}/{repo}")
        if resp.status_code != 200:
            raise self.client.fail(resp, "GET")
        try:
            data = read_verified(_ResponseReader(resp), desc.digest, desc.size,
                                 f"manifest {desc.digest} in {self.client.host}/{repo}", MANIFEST_LIMIT)
        finally:
            resp.close()
        self._manifests[desc.digest] = data
        self.client.locations.add(desc.digest.text, repo)
        return data

    def put_manifest(self, data: bytes, media_type: str) -> Descriptor:
        check_size(f"the manifest ({media_type})", data, MANIFEST_LIMIT)
        repo = self._write_repo()
        desc = Descriptor(media_type, Digest.of(data), len(data))
        self._manifests[desc.digest] = data
        if self.client.locations.has(desc.digest.text, repo):
            return desc
        if self._head_manifest(repo, desc.digest.text) is None:
            self._require_children(repo, data, media_type)
            resp = self._put_manifest(repo, desc.digest.text, data, media_type)
            said = resp.headers.get("docker-content-digest")
            if said and said != desc.digest.text:
                raise RegistryError("PUT", str(resp.request.url), 201, "DIGEST_INVALID",
                                    f"the registry stored the manifest as {said}, not {desc.digest}")
            if resp.headers.get("oci-subject"):  # it indexed the manifest's subject: it has the referrers API
                self.referrers_api[repo] = True
        self.client.locations.add(desc.digest.text, repo)
        self._learn_children(repo, data, media_type)
        return desc

    def _require_children(self, repo: str, data: bytes, media_type: str) -> None:
        """Blobs before manifests, whatever the registry checks: refuse to store a manifest whose
        config, layers or (for an index) manifests are not in ``repo``. A document that does not parse
        is left for the registry to judge (and refuse, with its own error code)."""
        try:
            children = _children(data, media_type)
        except RegfpError:
            return
        for child in children:
            if self.client.locations.has(child.digest.text, repo):
                continue
            present = (self._head_manifest(repo, child.digest.text) is not None
                       if child.media_type in mt.MANIFEST_TYPES | mt.INDEX_TYPES
                       else blobio.head_blob(self.client, repo, child.digest))
            if not present:
                raise NotFound(f"{child.media_type} {child.digest} (needed by a manifest being pushed)",
                               f"{self.client.host}/{repo}")

    def _learn_children(self, repo: str, data: bytes, media_type: str) -> None:
        # A registry accepts a manifest only once its blobs are there: they are mount sources now.
        try:
            for child in _children(data, media_type):
                self.client.locations.add(child.digest.text, repo)
        except RegfpError:
            pass

    def _head_manifest(self, repo: str, reference: str) -> Descriptor | None:
        resp = self.client.request("HEAD", f"/v2/{repo}/manifests/{reference}", scopes=pull_scope(repo),
                                   headers={"Accept": ACCEPT})
        resp.close()
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self.client.fail(resp, "HEAD")
        said = resp.headers.get("docker-content-digest")
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        length = resp.headers.get("content-length", "")
        if not said or media_type not in mt.MANIFEST_TYPES | mt.INDEX_TYPES or not length.isdigit():
            return self._get_by_reference(repo, reference)
        digest = Digest.parse(said)
        if reference.startswith(("sha256:", "sha512:")) and said != reference:
            raise RegistryError("HEAD", str(resp.request.url), 200, "DIGEST_INVALID",
                                f"asked for {reference}, the registry answered {said}")
        self.client.locations.add(said, repo)
        return Descriptor(media_type, digest, int(length))

    def _get_by_reference(self, repo: str, reference: str) -> Descriptor | None:
        """A tag's manifest read whole, for registries whose HEAD does not say enough."""
        from ..oci.manifest import sniff_media_type

        resp = self.client.request("GET", f"/v2/{repo}/manifests/{reference}", scopes=pull_scope(repo),
                                   headers={"Accept": ACCEPT}, stream=True)
        if resp.status_code == 404:
            resp.close()
            return None
        if resp.status_code != 200:
            raise self.client.fail(resp, "GET")
        try:
            data = read_limited(resp, MANIFEST_LIMIT)
        finally:
            resp.close()
        digest = Digest.of(data)
        if reference.startswith(("sha256:", "sha512:")):
            wanted = Digest.parse(reference)
            if Digest.of(data, wanted.algorithm) != wanted:
                raise RegistryError("GET", str(resp.request.url), 200, "DIGEST_INVALID",
                                    f"the manifest served for {reference} has another digest")
            digest = wanted
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        if media_type not in mt.MANIFEST_TYPES | mt.INDEX_TYPES:
            media_type = sniff_media_type(data)
        self._manifests[digest] = data
        self.client.locations.add(digest.text, repo)
        return Descriptor(media_type, digest, len(data))

    # -- referrers ----------------------------------------------------------------------------------
    def referrers(self, subject: Digest, artifact_type: str | None = None) -> list[Descriptor]:
        """The referrers of ``subject`` in its repository: the referrers API, else the fallback tag."""
        from .referrers import registry_referrers

        return registry_referrers(self, self._repo_for(subject), subject, artifact_type)

    def add_referrers(self, referrers: list[Descriptor]) -> None:
        """Make pushed referrer manifests listed for their subjects (see ``referrers.publish``)."""
        from .referrers import publish

        publish(self, self._write_repo(), referrers)

    # -- names --------------------------------------------------------------------------------------
    def resolve(self, name: str) -> Descriptor:
        repo, tag = self.split(name)
        desc = self._head_manifest(repo, tag)
        if desc is None:
            raise NotFound(f"name {name!r}", f"{self.client.host}/{repo}")
        return desc

    def resolve_digest(self, digest: Digest) -> Descriptor:
        repo = self._repo_for(digest)
        desc = self._head_manifest(repo, digest.text)
        if desc is None:
            raise NotFound(f"manifest {digest}", f"{self.client.host}/{repo}")
        return desc

    def names(self) -> dict[str, Descriptor]:
        """Every tag as a name, but the referrers tags (``sha256-<hex>``): they list referrers, not images."""
        from ..oci.referrer import is_referrers_tag

        out: dict[str, Descriptor] = {}
        for repo in [self.bound] if self.bound else self._repositories():
            for tag in sorted(t for t in self.tags(repo) if not is_referrers_tag(t)):
                desc = self._head_manifest(repo, tag)
                if desc is not None:
                    out[self._name(repo, tag)] = desc
        return out

    def tags(self, repo: str) -> list[str]:
        found: list[str] = []
        path: str | None = f"/v2/{repo}/tags/list?n={TAG_PAGE}"
        while path:
            resp = self.client.request("GET", path, scopes=pull_scope(repo))
            if resp.status_code == 404:
                return found
            if resp.status_code != 200:
                raise self.client.fail(resp, "GET")
            found.extend(resp.json().get("tags") or [])
            path = next_link(resp)
        return found

    def _repositories(self) -> list[str]:
        found: list[str] = []
        path: str | None = f"/v2/_catalog?n={TAG_PAGE}"
        while path:
            resp = self.client.request("GET", path, scopes=frozenset({"registry:catalog:*"}))
            if resp.status_code != 200:
                raise self.client.fail(resp, "GET", "this registry does not list its repositories")
            found.extend(r for r in resp.json().get("repositories") or []
                         if not self.prefix or r.startswith(self.prefix + "/"))
            path = next_link(resp)
        return found

    def set_names(self, updates: Mapping[str, Descriptor | None]) -> None:
        """Make each manifest present in its name's repository, then move the tags, last."""
        targets: list[tuple[str, str, Descriptor]] = []
        for name, desc in updates.items():
            if desc is None:
                raise InvalidInput(f"cannot remove {name!r}: the distribution API deletes manifests, not tags")
            repo, tag = self.split(name)
            targets.append((repo, tag, desc))
        for repo, _tag, desc in targets:
            self._ensure_manifest(repo, desc)
        for repo, tag, desc in targets:
            current = self._head_manifest(repo, tag)
            if current is not None and current.digest == desc.digest:
                continue
            data = self._manifests.get(desc.digest) or self._fetch_manifest(repo, desc)
            self._put_manifest(repo, tag, data, desc.media_type)

    def _put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> Response:
        """PUT a manifest's exact bytes (which hash to the digest regfp holds them under).

        A DIGEST_INVALID answer to such bytes is the registry misreading its own storage: distribution
        2.8 gives it while a concurrent upload of one of the manifest's blobs to the same repository
        rewrites that blob's link file (seen with three shards publishing at once). Another try, after
        the usual backoff, succeeds; any other refusal, or that one persisting, is the error.
        """
        policy, timing = self.client.options.retry, self.client.options.timing
        for attempt in range(policy.attempts):
            resp = self.client.request("PUT", f"/v2/{repo}/manifests/{reference}", scopes=push_scope(repo),
                                       headers={"Content-Type": media_type}, body=data, length=len(data))
            if resp.status_code == 201:
                resp.close()
                return resp
            error = self.client.fail(resp, "PUT")
            if error.code != "DIGEST_INVALID" or attempt + 1 >= policy.attempts:
                raise error
            self.client.stats.add("retries")
            timing.sleep(policy.backoff(attempt, timing.random()))
        raise AssertionError("unreachable")

    def _ensure_manifest(self, repo: str, desc: Descriptor) -> None:
        if self.client.locations.has(desc.digest.text, repo) or self._head_manifest(repo, desc.digest.text):
            return
        sources = self.client.locations.others(desc.digest.text, repo)
        if not sources:
            raise NotFound(f"manifest {desc.digest}", f"{self.client.host}/{repo} (push its content first)")
        from .transfer import copy_descriptor

        copy_descriptor(self._at(sources[0]), self._at(repo), desc)


def push_names(src: Store, dst: RegistryStore, names: Mapping[str, Descriptor], *, jobs: int = 4,
               progress: Progress | None = None, referrers: bool = True) -> None:
    """Push each named image from ``src`` into its repository under ``dst``'s prefix, with its referrers
    (unless ``referrers`` is false; listed for their subjects before any tag moves), then move every tag,
    last. A blob shared by several names is uploaded once and mounted into the other repositories."""
    from .referrers import copy_referrers, publish_all
    from .transfer import copy_descriptor

    carried: dict[str, list[Descriptor]] = {}
    for name, desc in names.items():
        repo, _tag = dst.split(name)
        copy_descriptor(src, dst._at(repo), desc, jobs=jobs, progress=progress)
        if referrers:
            carried.setdefault(repo, []).extend(copy_referrers(src, dst._at(repo), desc, jobs=jobs,
                                                               progress=progress))
    publish_all(dst, {repo: descs for repo, descs in carried.items() if descs})
    dst.set_names(dict(names))


def _children(data: bytes, media_type: str) -> list[Descriptor]:
    if media_type in mt.INDEX_TYPES:
        return list(Index.parse(data, media_type).manifests)
    if media_type in mt.MANIFEST_TYPES:
        m = Manifest.parse(data, media_type)
        return [m.config, *(d for d in m.layers if not d.urls)]
    return []


class _ResponseReader:
    """A streamed response body as a readable stream, for ``read_verified``."""

    def __init__(self, resp: Response) -> None:
        self._chunks = resp.iter_raw()
        self._resp = resp

    def read(self, n: int = -1) -> bytes:
        return next(self._chunks, b"")

    def close(self) -> None:
        self._resp.close()
