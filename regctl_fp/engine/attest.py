"""Attestations of a run's images (recipe ``attest:``): for every build, patch, environment, matrix and
work image a run names, an SPDX SBOM statement and a SLSA provenance statement, each signed in a DSSE
envelope and stored as an OCI referrer of the image's manifest.

Part of the run's commit, not a stage kind: an attestation is a function of an image (its digest) and
the key, not of the recipe alone, so it is made once the node has its digest, and listed in the same
index.json replacement that names the image. An image that already has an attestation of each
predicate by this key (a referrer lookup per image) gets none again: a warm run makes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..attest.dsse import DSSE_MEDIA, IN_TOTO, sign
from ..attest.facts import Input, InputKind, SourceRef
from ..attest.keys import SigningKey, load_signing_key
from ..attest.provenance import SLSA_PROVENANCE, StageRun, provenance_statement
from ..attest.sbom import SPDX_PREDICATE, dependency_paths, image_created, sbom_document, sbom_statement
from ..attest.scan import LayerFindings, inventory, scan_entries, scan_layer
from ..oci import annotation_keys as A
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.image import Image
from ..oci.manifest import Index
from ..oci.referrer import artifact
from ..stores.base import read_image
from ..stores.layout import LayoutStore
from ..stores.referrers import write_artifact
from .graph import Outcome
from .keys import document_of
from .run import Run

ATTESTED = frozenset({"build", "patch", "environment", "matrix", "work"})
PREDICATES = (SPDX_PREDICATE, SLSA_PROVENANCE)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
FROM_SOURCE = frozenset({"build", "patch", "environment"})  # the kinds whose images hold the application


def signing_key(run: Run) -> SigningKey | None:
    """The recipe's attestation key, loaded once per run (None without ``attest:``)."""
    spec = run.lr.recipe.attest
    if spec is None:
        return None
    if "attest-key" not in run.memo:
        password = None
        if spec.key_password_env:
            password = (run.secrets or {}).get(spec.key_password_env)
            if password is None:
                raise run.lr.error(("attest", "keyPasswordEnv"), f"the signing key's password variable "
                                   f"{spec.key_password_env} is not set")
        run.memo["attest-key"] = load_signing_key(run.lr.resolve(spec.key), password)
    key: SigningKey = run.memo["attest-key"]
    return key


def attest(run: Run, outcomes: list[Outcome]) -> list[Descriptor]:
    """Store the attestations the run's images lack; their descriptors, to be listed with the names."""
    key = signing_key(run)
    if key is None:
        return []
    made: list[Descriptor] = []
    done: set[Digest] = set()
    for o in outcomes:
        if o.node.id.kind not in ATTESTED or o.key is None:
            continue
        named = [(n, d) for n, d in o.names.items() if d is not None]
        if not named:
            continue
        name, entry = named[0]
        for subject in _subjects(run, entry):
            if subject.digest in done:
                continue
            done.add(subject.digest)
            made += _attest_image(run, o, key, name, subject)
    return made


def _subjects(run: Run, entry: Descriptor) -> Iterator[Descriptor]:
    """The image manifests to attest: the entry's, or each platform's of an index (and the index)."""
    plain = Descriptor(entry.media_type, entry.digest, entry.size, platform=entry.platform)
    if entry.media_type in mt.INDEX_TYPES:
        store = run.store
        yield from Index.parse(store.get_manifest(plain), entry.media_type).manifests
    yield plain


def _attest_image(run: Run, o: Outcome, key: SigningKey, name: str, subject: Descriptor) -> list[Descriptor]:
    store: LayoutStore = run.store
    have = {d.annotations.get(A.PREDICATE_TYPE) for d in store.referrers(subject.digest, IN_TOTO)
            if d.annotations.get(A.ATTEST_KEYID) == key.keyid}
    missing = [p for p in PREDICATES if p not in have]
    if not missing:
        return []
    image = read_image(store, subject) if subject.media_type not in mt.INDEX_TYPES else None
    source = source_ref(run) if o.node.id.kind in FROM_SOURCE else None
    out = []
    for predicate in missing:
        if predicate == SPDX_PREDICATE:
            if image is None:
                continue  # an index has no layers: each of its images carries its own SBOM
            payload = sbom_statement(name, subject.digest, _sbom(run, image, name, source, o.node.id.kind))
        else:
            payload = provenance_statement(name, subject.digest, stage_run(run, o, source, image))
        art = artifact(subject, IN_TOTO, sign(payload, key).to_json(), DSSE_MEDIA,
                       {A.PREDICATE_TYPE: predicate, A.ATTEST_KEYID: key.keyid})
        out.append(write_artifact(store, art))
    return out


def source_ref(run: Run) -> SourceRef | None:
    src = run.source
    recipe = run.lr.recipe
    if src is None:
        return None
    subdir = recipe.source.subdir if recipe.source is not None else ""
    url = recipe.source.url if recipe.source is not None else None
    return SourceRef(src.repo_name, src.commit.sha, url, subdir)


def _lockfiles(run: Run, kind: str) -> tuple[str, ...]:
    build = run.lr.recipe.build
    return dependency_paths(build.copy, build.dependencies) if build is not None and kind in FROM_SOURCE else ()


@contextmanager
def scanning(run: Run) -> Iterator[None]:
    """While the run makes its images, scan each layer it writes from the entries it is written from
    (only the few files the scanner wants are read again), so the SBOM never reads a new layer's blob
    back; layers the run did not write (bases, cache hits) are read once, in ``_sbom``."""
    from ..layers import Entry, observing

    scans: dict[tuple[Digest, tuple[str, ...]], LayerFindings] = run.memo.setdefault("layer-scans", {})
    lockfiles = {(), _lockfiles(run, "build")}

    def seen(entries: Sequence[Entry], desc: Descriptor) -> None:
        for files in lockfiles:
            if (desc.digest, files) not in scans:
                scans[(desc.digest, files)] = scan_entries(entries, files)

    with observing(seen):
        yield


def _sbom(run: Run, image: Image, name: str, source: SourceRef | None, kind: str) -> dict[str, Any]:
    """The image's SPDX document; each layer is read once per run, whichever images share it."""
    lockfiles = _lockfiles(run, kind)
    scans: dict[tuple[Digest, tuple[str, ...]], LayerFindings] = run.memo.setdefault("layer-scans", {})
    findings = []
    for layer in image.layers:
        memo_key = (layer.digest, lockfiles)
        if memo_key not in scans:
            scans[memo_key] = scan_layer(layer, lockfiles)
        findings.append(scans[memo_key])
    return sbom_document(image, inventory(findings), name=name, created=image_created(image) or 0, source=source)


def stage_run(run: Run, o: Outcome, source: SourceRef | None, image: Image | None) -> StageRun:
    """What the provenance says of the stage: its key and the document the key hashes (kind, recipe
    fragment, inputs, commit), and every input image digest found in those inputs."""
    assert o.key is not None
    doc = document_of(o.key) or {}
    inputs = inputs_of(o.node.id.kind, doc.get("inputs") or {}, doc.get("fragment"))
    # The OS base the image names (an environment carries its release's) is a dependency even when the
    # stage took it in through another image: a verifier matches it against the image's annotation.
    own = image.annotations if image is not None else {}
    base = own.get(A.BASE_DIGEST)
    if base is not None and _DIGEST.fullmatch(base) and all(i.digest.text != base for i in inputs):
        inputs.append(Input("base", own.get(A.BASE_NAME) or "base", Digest.parse(base)))
    when = image_created(image) if image is not None else None
    internal = {"format": doc.get("format"), "inputs": doc.get("inputs"), "commit": doc.get("commit")}
    return StageRun(kind=o.node.id.kind, key=o.key, recipe={"fragment": doc.get("fragment")}, source=source,
                    inputs=inputs, started=when, finished=when, internal=internal)


def inputs_of(kind: str, inputs: Any, fragment: Any) -> list[Input]:
    """Every image digest in a key's inputs, named by where it is (or the reference beside it; a patch's
    channel by the reference the channel stands for)."""
    found: dict[tuple[str, str], Input] = {}
    channel_ref = fragment.get("ref") if kind == "patch" and isinstance(fragment, dict) else None

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            digest = value.get("digest")
            if isinstance(digest, str) and _DIGEST.fullmatch(digest):
                label = str(value.get("name") or path)
                found.setdefault((path, digest), Input(_kind(kind, path), label, Digest.parse(digest)))
                return
            for k in sorted(value):
                walk(value[k], f"{path}.{k}" if path else str(k))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        elif isinstance(value, str) and _DIGEST.fullmatch(value):
            label = str(channel_ref) if path == "base" and channel_ref else path
            found.setdefault((path, value), Input(_kind(kind, path), label, Digest.parse(value)))

    walk(inputs, "")
    return list(found.values())


def _kind(stage: str, path: str) -> InputKind:
    top = re.split(r"[.\[]", path, maxsplit=1)[0]
    if top in ("base", "platforms"):
        return "channel" if stage == "patch" else "base"
    if top == "polyfills":
        return "polyfill"
    if top == "tools":
        return "tool"
    return "image"
