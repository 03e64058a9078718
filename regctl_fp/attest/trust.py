"""Whether a remote cache entry was made by a holder of the recipe's attestation key for this very stage:
one of its referrers is a provenance envelope that verifies with the key, is about the entry's manifest
(an index entry: the index's own provenance), and names the stage kind, stage key and input digests the
evaluating node has. Cheap: one referrers listing and, normally, one envelope read."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import RegfpError
from ..oci import annotation_keys as A
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..stores.base import ReadStore
from ..stores.referrers import list_referrers
from .check import verified_statement
from .dsse import IN_TOTO
from .keys import PublicKey
from .provenance import SLSA_PROVENANCE

MAX_TRIED = 4  # provenance referrers annotated with our key id read at most (a forger may add decoys)


def provenance_problem(store: ReadStore, entry: Descriptor, key: PublicKey, kind: str, stage_key: str,
                       inputs: Iterable[Digest] = ()) -> str | None:
    """None when ``entry`` in ``store`` has a provenance by ``key`` for stage ``kind``/``stage_key`` (and
    listing every digest of ``inputs``); else why not."""
    try:
        refs = [r for r in list_referrers(store, entry.digest, IN_TOTO)
                if r.annotations.get(A.PREDICATE_TYPE) == SLSA_PROVENANCE
                and r.annotations.get(A.ATTEST_KEYID) == key.keyid]
    except RegfpError as e:
        return f"its referrers cannot be listed: {e}"
    if not refs:
        return f"it has no provenance signed by key {key.keyid[:16]}"
    problem = ""
    for ref in refs[:MAX_TRIED]:
        try:
            _matches(verified_statement(store, ref, key), entry.digest, kind, stage_key, set(inputs))
            return None
        except (KeyError, TypeError, AttributeError, IndexError, RecursionError):
            problem = "its signed provenance does not have the shape of a provenance statement"
        except (RegfpError, ValueError) as e:
            problem = str(e)
    return problem


def _matches(statement: dict[str, Any], subject: Digest, kind: str, stage_key: str, inputs: set[Digest]) -> None:
    if statement["predicateType"] != SLSA_PROVENANCE:
        raise ValueError(f"its provenance has predicate {statement['predicateType']!r}")
    about = [s["digest"].get(subject.algorithm) for s in statement["subject"]]
    if subject.hex not in about:
        raise ValueError(f"its provenance is about another image, not {subject}")
    definition = statement["predicate"]["buildDefinition"]
    stage = definition["externalParameters"]["stage"]
    if stage["kind"] != kind or stage["key"] != stage_key:
        raise ValueError(f"its provenance is of stage {stage['kind']} {str(stage['key'])[:16]}, not "
                         f"{kind} {stage_key[:16]}")
    listed = {f"{alg}:{value}" for d in definition["resolvedDependencies"]
              for alg, value in d["digest"].items() if alg != "gitCommit"}
    missing = sorted(d.text for d in inputs if d.text not in listed)
    if missing:
        raise ValueError(f"its provenance does not list the input {missing[0]}")
