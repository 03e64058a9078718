"""OCI 1.1 referrers across stores: listing them (a layout's index.json, a registry's referrers API or
its fallback tag), copying them along with their subject, and publishing them on a registry.

On a registry, a referrer is a manifest pushed with its ``subject``. A registry that answers the push
with ``OCI-Subject`` (or serves ``GET /v2/<name>/referrers/<digest>``) lists it by itself. One that does
not (distribution 2.8) gets the distribution spec's referrers tag schema: the tag ``<alg>-<hex>`` of
the subject holds an image index of referrer descriptors, which regfp updates read-modify-write. The
registry offers no conditional PUT, so after writing, regfp waits ``SETTLE`` seconds, reads the tag
again, and merges and writes again until the index it reads holds every descriptor it added: a
concurrent writer can only drop ours if its own read-to-write took longer than that pause.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..errors import InvalidDocument, InvalidInput, RegfpError
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.manifest import Index, Manifest
from ..oci.referrer import Artifact, filtered, referrer_descriptor, referrers_index, referrers_tag
from ..progress import Progress
from .base import MANIFEST_LIMIT, ReadStore, Store

if TYPE_CHECKING:
    from .registry import RegistryStore

SETTLE = 0.5  # seconds between writing a fallback index and reading it back (see the module docstring)
ATTEMPTS = 8  # rounds of merge-and-write before giving up on a fallback index
MAX_PAGES = 64  # pages of a referrers API answer followed at most
MAX_REFERRERS = 4096  # referrers of one subject, and referrers carried with one image, at most
MAX_DEPTH = 4  # referrers of referrers (a signature of an SBOM of an image) followed this deep


def write_artifact(store: Store, art: Artifact) -> Descriptor:
    """Store an artifact (its blobs first, skipping what exists, then its manifest) and return the
    descriptor a referrers list shows for it. It is not listed yet: pass it to ``add_referrers`` or to a
    layout's ``set_names(..., referrers=...)``."""
    for desc, data in art.blobs:
        if not store.has_blob(desc.digest):
            store.put_blob(io.BytesIO(data), desc)
    written = store.put_manifest(art.manifest_bytes, art.manifest.media_type)
    if written.digest != art.descriptor.digest:  # a store that re-encodes would break the subject link
        raise RegfpError(f"{store.location} stored the artifact as {written.digest}, not {art.descriptor.digest}")
    return art.descriptor


def list_referrers(store: ReadStore, subject: Digest, artifact_type: str | None = None) -> list[Descriptor]:
    """The referrers of ``subject`` in ``store`` (artifactType and annotations on each), optionally only
    those of ``artifact_type``; a store that keeps no referrers (a skopeo ``dir:``) has none."""
    lister = getattr(store, "referrers", None)
    if lister is None:
        return []
    found: list[Descriptor] = lister(subject, artifact_type)
    return found


def referrers_below(store: ReadStore, root: Descriptor) -> list[Descriptor]:
    """Every referrer of ``root``, of the manifests of an index ``root`` is, and of those referrers in
    turn (up to ``MAX_DEPTH``), each once, a referrer before those that refer to it."""
    subjects = [root]
    if root.media_type in mt.INDEX_TYPES:
        subjects += [d for d in Index.parse(store.get_manifest(root), root.media_type).manifests
                     if d.media_type in mt.MANIFEST_TYPES | mt.INDEX_TYPES]
    seen = {d.digest for d in subjects}
    out: list[Descriptor] = []
    for _ in range(MAX_DEPTH):
        found = []
        for subject in subjects:
            for ref in list_referrers(store, subject.digest):
                if ref.digest not in seen:
                    seen.add(ref.digest)
                    found.append(ref)
        out += found
        if len(out) > MAX_REFERRERS:
            raise InvalidInput(f"{store.location}: {root.digest} has over {MAX_REFERRERS} referrers; "
                               "copy it with --no-referrers")
        subjects = found
        if not subjects:
            break
    return out


def copy_referrers(src: ReadStore, dst: Store, root: Descriptor, *, jobs: int = 1,
                   progress: Progress | None = None) -> list[Descriptor]:
    """Copy the content of every referrer of ``root`` (``referrers_below``) from ``src`` to ``dst``;
    returns their descriptors, which are not listed yet: the caller lists them with
    ``dst.add_referrers`` (a registry: before it moves the subject's tag) or, in a layout, with
    ``set_names(..., referrers=...)`` together with the subject's name, in one index.json replacement."""
    from .transfer import copy_descriptor

    found = referrers_below(src, root)
    for ref in found:
        copy_descriptor(src, dst, ref.with_annotations({}), jobs=jobs, progress=progress)
    return found


# -- registries -------------------------------------------------------------------------------------------
def registry_referrers(store: RegistryStore, repo: str, subject: Digest,
                       artifact_type: str | None = None) -> list[Descriptor]:
    """The referrers API's answer if the registry has it there, else the fallback tag's index."""
    if store.referrers_api.get(repo) is not False:
        found = _api_referrers(store, repo, subject, artifact_type)
        store.referrers_api[repo] = found is not None
        if found is not None:
            return found
    try:
        return filtered(_tag_referrers(store, repo, subject), artifact_type)
    except InvalidDocument:  # the tag holds something else: the spec says to assume no referrers
        return []


def publish(store: RegistryStore, repo: str, referrers: Sequence[Descriptor], *,
            settle: float | None = None) -> None:
    """Make referrer manifests already pushed to ``repo`` listed for their subjects: nothing to do where
    the registry has the referrers API; else each subject's fallback tag index gains them."""
    publish_all(store, {repo: referrers}, settle=settle)


def publish_all(store: RegistryStore, referrers: Mapping[str, Sequence[Descriptor]], *,
                settle: float | None = None) -> None:
    """``publish`` for several repositories (full names) at once: the fallback indexes of all of them
    are written, then read back after one pause, not one pause per repository."""
    fallback: dict[tuple[str, Digest], list[Descriptor]] = {}
    for repo, descs in referrers.items():
        by_subject: dict[Digest, list[Descriptor]] = {}
        for desc in descs:
            data = store._at(repo).get_manifest(desc)
            document = (Index.parse(data, desc.media_type) if desc.media_type in mt.INDEX_TYPES
                        else Manifest.parse(data, desc.media_type))
            if document.subject is None:
                raise InvalidInput(f"{desc.digest} has no subject: it is not a referrer")
            entry = referrer_descriptor(Descriptor(desc.media_type, desc.digest, desc.size), document)
            by_subject.setdefault(document.subject.digest, []).append(entry)
        if not by_subject:
            continue
        if store.referrers_api.get(repo) is None:
            store.referrers_api[repo] = _api_referrers(store, repo, next(iter(by_subject)), None) is not None
        if not store.referrers_api[repo]:
            fallback.update(((repo, subject), entries) for subject, entries in by_subject.items())
    if fallback:
        _update_fallback(store, fallback, SETTLE if settle is None else settle)


def _api_referrers(store: RegistryStore, repo: str, subject: Digest,
                   artifact_type: str | None) -> list[Descriptor] | None:
    """``GET /v2/<repo>/referrers/<digest>``, every page; None when the registry answers 404 (no API)."""
    from .blobio import pull_scope  # the registry client: imported only when a registry is asked
    from .transport import next_link, read_limited

    client = store.client
    query = f"?artifactType={quote(artifact_type, safe='')}" if artifact_type is not None else ""
    path: str | None = f"/v2/{repo}/referrers/{subject}{query}"
    found: list[Descriptor] = []
    for page in range(MAX_PAGES):
        assert path is not None
        resp = client.request("GET", path, scopes=pull_scope(repo), headers={"Accept": mt.OCI_INDEX}, stream=True)
        if resp.status_code == 404 and page == 0:
            resp.close()
            return None
        if resp.status_code != 200:
            raise client.fail(resp, "GET")
        said = resp.headers.get("content-type", "").split(";")[0].strip()
        if page == 0 and said != mt.OCI_INDEX:  # not a referrers API (one that answers every path): none
            resp.close()
            return None
        try:
            data = read_limited(resp, MANIFEST_LIMIT)
        finally:
            resp.close()
        found += Index.parse(data, mt.OCI_INDEX, what=f"referrers of {subject} in {client.host}/{repo}").manifests
        if len(found) > MAX_REFERRERS:
            raise InvalidInput(f"{client.host}/{repo} lists over {MAX_REFERRERS} referrers of {subject}")
        path = next_link(resp)
        if path is None:
            return filtered(found, artifact_type)  # filtered again: a registry may not apply the filter
    raise InvalidInput(f"the referrers of {subject} in {client.host}/{repo} span over {MAX_PAGES} pages")


def _tag_referrers(store: RegistryStore, repo: str, subject: Digest) -> list[Descriptor]:
    """The fallback tag's referrer descriptors, read afresh; none when the tag does not exist. Raises
    InvalidDocument when the tag holds something other than an image index."""
    desc = store._head_manifest(repo, referrers_tag(subject))
    if desc is None:
        return []
    if desc.media_type != mt.OCI_INDEX:
        raise InvalidDocument(f"tag {referrers_tag(subject)} in {store.client.host}/{repo}",
                              f"holds a {desc.media_type}, not the image index of the referrers tag schema")
    data = store._manifests.get(desc.digest) or store._fetch_manifest(repo, desc)
    return list(Index.parse(data, mt.OCI_INDEX, what=f"referrers tag {referrers_tag(subject)}").manifests)


def _update_fallback(store: RegistryStore, by_subject: dict[tuple[str, Digest], list[Descriptor]],
                     settle: float) -> None:
    """Each (repository, subject)'s fallback index gains our entries: merge and write, pause, read back;
    again for those whose index lost any of ours to a concurrent writer (see the module docstring)."""
    timing = store.client.options.timing
    pending = dict(by_subject)
    for _ in range(ATTEMPTS):
        wrote = False
        for (repo, subject), ours in pending.items():
            current = _tag_referrers(store, repo, subject)
            have = {d.digest for d in current}
            if all(d.digest in have for d in ours):
                continue
            merged = referrers_index([*current, *(d for d in ours if d.digest not in have)])
            store._put_manifest(repo, referrers_tag(subject), merged.to_bytes(), mt.OCI_INDEX)
            wrote = True
        if not wrote:
            return
        timing.sleep(settle * (1 + timing.random()))  # jittered, so two writers do not stay in step
        pending = {(repo, s): ours for (repo, s), ours in pending.items()
                   if not _holds(_tag_referrers(store, repo, s), ours)}
        if not pending:
            return
    repo, subject = next(iter(pending))
    raise RegfpError(f"{store.client.host}/{repo}: the referrers tag of {subject} kept losing regfp's entries "
                     f"to concurrent writers after {ATTEMPTS} attempts")


def _holds(entries: Iterable[Descriptor], ours: Iterable[Descriptor]) -> bool:
    have = {d.digest for d in entries}
    return all(d.digest in have for d in ours)
