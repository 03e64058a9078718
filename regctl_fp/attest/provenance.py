"""Build provenance: an in-toto Statement v1 about one image, with a SLSA provenance v1 predicate.

Everything in it is a function of the stage's key inputs (kind, key, recipe fragment, commit, input
digests) and of times the caller passes in: no clock, no host name, no path of this machine. So the
statement, and its envelope signed deterministically, have the same digest wherever they are made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

from .. import __version__
from ..oci.canonical import canonical_json
from ..oci.digest import Digest
from ..timeutil import rfc3339
from ..values import valueclass
from .facts import Input, SourceRef

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://regfp.dev/buildtypes/stage/v1"
BUILDER_ID = f"https://regfp.dev/builder/v{__version__}"


@valueclass
class StageRun:
    """One stage's evaluation as provenance describes it. ``recipe`` is the stage's recipe fragment (the
    JSON-able mapping its key hashes); ``started``/``finished`` are epoch seconds the caller chose (the
    commit time or SOURCE_DATE_EPOCH for a reproducible statement), omitted when None."""

    kind: str
    key: str
    recipe: Mapping[str, Any]
    source: SourceRef | None = None
    inputs: Sequence[Input] = ()
    started: int | None = None
    finished: int | None = None
    internal: Mapping[str, Any] = field(default_factory=dict)  # e.g. the output-format version


def _source_dependency(src: SourceRef) -> dict[str, Any]:
    dep: dict[str, Any] = {"name": f"source:{src.name}", "digest": {"gitCommit": src.commit}}
    if src.git_uri:
        dep["uri"] = f"{src.git_uri}@{src.commit}"
    if src.subdir:
        dep["annotations"] = {"subdir": src.subdir}
    return dep


def _input_dependency(item: Input) -> dict[str, Any]:
    dep: dict[str, Any] = {"name": f"{item.kind}:{item.name}", "digest": {item.digest.algorithm: item.digest.hex},
                           "annotations": {"kind": item.kind}}
    if item.uri:
        dep["uri"] = item.uri
    return dep


def predicate(run: StageRun) -> dict[str, Any]:
    """The SLSA provenance v1 predicate of ``run``."""
    deps = [_source_dependency(run.source)] if run.source is not None else []
    # Sorted so the order the engine collected inputs in cannot change the statement's bytes.
    deps += sorted((_input_dependency(i) for i in run.inputs), key=lambda d: (d["name"], canonical_json(d)))
    build_definition: dict[str, Any] = {
        "buildType": BUILD_TYPE,
        "externalParameters": {"recipe": dict(run.recipe), "stage": {"kind": run.kind, "key": run.key}},
        "resolvedDependencies": deps,
    }
    if run.internal:
        build_definition["internalParameters"] = dict(run.internal)
    metadata: dict[str, Any] = {"invocationId": f"urn:regfp:stage:{run.kind}:{run.key}"}
    if run.started is not None:
        metadata["startedOn"] = rfc3339(run.started)
    if run.finished is not None:
        metadata["finishedOn"] = rfc3339(run.finished)
    return {"buildDefinition": build_definition,
            "runDetails": {"builder": {"id": BUILDER_ID, "version": {"regfp": __version__}},
                           "metadata": metadata}}


def statement(subject_name: str, subject_digest: Digest, predicate_type: str,
              body: Mapping[str, Any]) -> dict[str, Any]:
    """An in-toto Statement v1 about one artifact (an image manifest: its name and digest)."""
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": subject_name, "digest": {subject_digest.algorithm: subject_digest.hex}}],
            "predicateType": predicate_type, "predicate": dict(body)}


def provenance_statement(subject_name: str, subject_digest: Digest, run: StageRun) -> bytes:
    """The provenance statement of the image ``subject_digest`` as canonical JSON bytes (the DSSE
    payload)."""
    return canonical_json(statement(subject_name, subject_digest, SLSA_PROVENANCE, predicate(run)))
