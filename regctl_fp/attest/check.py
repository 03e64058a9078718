"""Checking an image's attestations in any store: every in-toto referrer of the image (and of each
platform's image of an index) is a DSSE envelope signed by the key, about this image's digest, of the
predicate its annotation names; each image has an SBOM and a provenance; and the provenance agrees with
what the image says of itself (its stage key, base digest and source revision annotations)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from ..errors import RegfpError
from ..oci import annotation_keys as A
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.manifest import Index, Manifest
from ..stores.base import ReadStore
from ..stores.referrers import list_referrers
from ..values import valueclass
from .dsse import DSSE_MEDIA, ENVELOPE_LIMIT, IN_TOTO, verify
from .keys import PublicKey
from .provenance import SLSA_PROVENANCE
from .sbom import SPDX_PREDICATE

_SHORT = {SPDX_PREDICATE: "sbom", SLSA_PROVENANCE: "provenance"}


@valueclass
class Finding:
    """One attestation's result (``referrer`` None: one that should be there and is not)."""

    subject: str  # the image's manifest digest
    predicate: str  # sbom, provenance, or the predicate type as annotated
    referrer: str | None
    problem: str | None = None
    statement: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # once it verified

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "predicate": self.predicate, "referrer": self.referrer,
                "ok": self.ok, **({"problem": self.problem} if self.problem else {})}


def check_attestations(store: ReadStore, desc: Descriptor, key: PublicKey) -> list[Finding]:
    """Every attestation of ``desc`` (an image, or an index and each of its images) checked with ``key``."""
    plain = Descriptor(desc.media_type, desc.digest, desc.size)
    if desc.media_type in mt.INDEX_TYPES:
        index = Index.parse(store.get_manifest(plain), desc.media_type)
        out = []
        for child in index.manifests:
            out += _check_subject(store, child, key)
        return out + _check_subject(store, plain, key)
    return _check_subject(store, plain, key)


def _check_subject(store: ReadStore, subject: Descriptor, key: PublicKey) -> list[Finding]:
    is_index = subject.media_type in mt.INDEX_TYPES
    document = store.get_manifest(Descriptor(subject.media_type, subject.digest, subject.size))
    own = (Index.parse(document, subject.media_type) if is_index
           else Manifest.parse(document, subject.media_type)).annotations
    found = []
    seen = set()
    for ref in list_referrers(store, subject.digest, IN_TOTO):
        predicate = ref.annotations.get(A.PREDICATE_TYPE, "")
        statement: dict[str, Any] | None = None
        try:
            statement = verified_statement(store, ref, key)
            _check_statement(statement, subject, predicate, own)
            seen.add(predicate)
            problem = None
        except (KeyError, TypeError, AttributeError, IndexError, RecursionError):
            # Only a statement signed by the key gets this far: malformed, but by someone holding it.
            problem, statement = "the signed statement does not have the shape of an in-toto statement", None
        except (RegfpError, ValueError) as e:
            problem, statement = str(e), None
        found.append(Finding(subject.digest.text, _SHORT.get(predicate, predicate or "?"), ref.digest.text, problem,
                             statement))
    wanted = (SLSA_PROVENANCE,) if is_index else (SPDX_PREDICATE, SLSA_PROVENANCE)
    for predicate in wanted:
        if predicate not in seen and not any(f.predicate == _SHORT[predicate] for f in found):
            found.append(Finding(subject.digest.text, _SHORT[predicate], None, "no such attestation"))
    return found


def verified_statement(store: ReadStore, ref: Descriptor, key: PublicKey) -> dict[str, Any]:
    manifest = Manifest.parse(store.get_manifest(Descriptor(ref.media_type, ref.digest, ref.size)), ref.media_type)
    if len(manifest.layers) != 1 or manifest.layers[0].media_type != DSSE_MEDIA:
        raise ValueError(f"the attestation is not one {DSSE_MEDIA} layer")
    layer = manifest.layers[0]
    if layer.size > ENVELOPE_LIMIT:
        raise ValueError(f"its envelope is {layer.size} bytes, over the {ENVELOPE_LIMIT}-byte limit")
    payload = verify(store.read_blob(layer, ENVELOPE_LIMIT), key)
    statement = json.loads(payload)
    if not isinstance(statement, dict):
        raise ValueError("the statement is not a JSON object")
    return statement


def _check_statement(statement: dict[str, Any], subject: Descriptor, predicate: str,
                     own: Mapping[str, str]) -> None:
    digests = [s.get("digest", {}).get(subject.digest.algorithm) for s in statement.get("subject", [])
               if isinstance(s, dict)]
    if subject.digest.hex not in digests:
        raise ValueError(f"the statement is about {', '.join(map(str, digests)) or 'nothing'}, not "
                         f"{subject.digest}")
    if statement.get("predicateType") != predicate:
        raise ValueError(f"its predicate is {statement.get('predicateType')!r}, annotated {predicate!r}")
    if predicate == SLSA_PROVENANCE:
        _check_provenance(statement["predicate"], own)


def _check_provenance(body: dict[str, Any], own: Mapping[str, str]) -> None:
    """The provenance's stage key and dependencies agree with the image's own annotations."""
    definition = body["buildDefinition"]
    key = definition["externalParameters"]["stage"]["key"]
    if A.KEY in own and own[A.KEY] != key:
        raise ValueError(f"it names stage key {key}, the image {own[A.KEY]}")
    deps = definition["resolvedDependencies"]
    digests = {f"{alg}:{value}" for d in deps for alg, value in d.get("digest", {}).items() if alg != "gitCommit"}
    commits = {d["digest"]["gitCommit"] for d in deps if "gitCommit" in d.get("digest", {})}
    base = own.get(A.BASE_DIGEST)
    if base is not None and base not in digests:
        raise ValueError(f"the image's base {base} is not among its resolved dependencies")
    revision = own.get(A.REVISION)
    if revision is not None and commits and revision not in commits:
        raise ValueError(f"the image's revision {revision} is not the source commit it names "
                         f"({', '.join(sorted(commits))})")
