"""``verify --rebuild``: make an image again from its provenance and compare digests.

The provenance names the stage kind and key, the source commit, and the document the key hashes
(recipe fragment, inputs). The recipe (the user's checkout) supplies how to reach the source and the
inputs; the run is pinned to the provenance's commit, uses no remote cache and writes only into a
scratch layout. The same key must come out with the same digest. When the key differs, the recipe or
an input changed since the image was made, and the differing parts of the key's document are named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, replace
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..oci.canonical import canonical_json
from ..recipe.load import LoadedRecipe
from ..sources import BuildOptions
from ..values import valueclass
from .converge import converge
from .keys import document_of, key_of
from .run import Run

REBUILDABLE = frozenset({"build", "patch", "matrix", "work"})


@valueclass
class Rebuilt:
    kind: str
    name: str  # the statement's subject name
    key: str  # the stage key the provenance names
    expected: str  # the image's digest
    digest: str | None = None  # the digest made again under that name (None: the run made no such name)
    made_key: str | None = None
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.digest == self.expected and self.made_key == self.key


def claimed_document(statement: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The stage key a provenance names, and the key document it states (kind, format, fragment, inputs,
    commit); InvalidInput when it lacks them."""
    try:
        definition = statement["predicate"]["buildDefinition"]
        stage = definition["externalParameters"]["stage"]
        internal = definition.get("internalParameters") or {}
        return str(stage["key"]), {"kind": str(stage["kind"]), "format": internal.get("format"),
                                   "fragment": definition["externalParameters"]["recipe"].get("fragment"),
                                   "inputs": internal.get("inputs"), "commit": internal.get("commit")}
    except (KeyError, TypeError, AttributeError):
        raise InvalidInput("the provenance lacks the stage, its key or its parameters") from None


def key_problem(statement: Mapping[str, Any]) -> str | None:
    """Why the provenance's parameters do not hash to the stage key it names (None: they do), so what
    it says the stage used is what the key, and the image's ``dev.regfp.key``, stand for."""
    key, claimed = claimed_document(statement)
    made = key_of(claimed)
    return None if made == key else f"its parameters hash to stage key {made}, not the {key} it names"


def rebuild(lr: LoadedRecipe, statement: Mapping[str, Any], expected: str, scratch: Path, *, now: int,
            options: BuildOptions, git_cache: Path | None) -> Rebuilt:
    """Run the stage the provenance ``statement`` describes from ``lr`` into ``scratch``; the result."""
    key, claimed = claimed_document(statement)
    kind = claimed["kind"]
    try:
        name = str(statement["subject"][0]["name"])
    except (KeyError, TypeError, IndexError):
        raise InvalidInput("the provenance names no subject") from None
    if kind not in REBUILDABLE:
        raise InvalidInput(f"--rebuild makes build, patch, matrix and work images again, not {kind} images "
                           "(an environment depends on the release ledger and the identity window)")
    recipe = replace(lr.recipe, cache=None, attest=None, push=None)
    commit = claimed["commit"]
    if isinstance(commit, str) and recipe.source is not None:
        recipe = replace(recipe, source=replace(recipe.source, ref=commit))
    run = Run(replace(lr, recipe=recipe), scratch, now, replace(options, remote=None), secrets={},
              git_cache=git_cache)
    converge(run, [kind])
    outcome = next((o for o in run.outcomes.values() if o.node.id.kind == kind and name in o.names), None)
    if outcome is None:
        outcome = next((o for o in run.outcomes.values() if o.key == key), None)
    if outcome is None:
        return Rebuilt(kind, name, key, expected, differences=[f"the recipe makes no {kind} image named {name}"])
    made = document_of(outcome.key) if outcome.key else None
    differences = _differences(claimed, made) if outcome.key != key and made is not None else []
    return Rebuilt(kind, name, key, expected, outcome.digest, outcome.key, differences)


def _differences(claimed: Mapping[str, Any], made: Mapping[str, Any], path: str = "") -> list[str]:
    """Where the provenance's key document and the one made now differ, as short sentences."""
    out = []
    for k in sorted(set(claimed) | set(made)):
        here = f"{path}.{k}" if path else k
        a, b = claimed.get(k), made.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, here)
        else:
            out.append(f"{here}: {_short(a)} in the provenance, {_short(b)} now")
    return out


def _short(value: Any) -> str:
    text = canonical_json(value).decode() if value is not None else "absent"
    return text if len(text) <= 100 else text[:97] + "..."
