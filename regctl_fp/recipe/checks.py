"""Load-time checks of matrix and work sections that types alone cannot express."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import RefError
from ..refs import parse_ref
from .platforms import duplicate, parse_platform, same_platform
from .yamlsrc import KeyPath

if TYPE_CHECKING:
    from ..oci.descriptor import Platform
    from .load import LoadedRecipe


def check_units(lr: LoadedRecipe) -> None:
    names = [m.name for m in lr.recipe.matrix]
    if len(set(names)) != len(names):
        raise lr.error(("matrix",), "two matrices share a name")
    works = [w.name for w in lr.recipe.work]
    if len(set(works)) != len(works):
        raise lr.error(("work",), "two work sections share a name")
    listed = [parse_platform(p) for p in lr.recipe.platforms]
    for i, m in enumerate(lr.recipe.matrix):
        # Per-platform values of one matrix agree on the platforms (the recipe's, when it lists them).
        want: tuple[list[Platform], str] | None = (listed, "platforms") if listed else None
        for axis, values in m.axes.items():
            for value, ref in values.items():
                kp: KeyPath = ("matrix", i, "axes", axis, value)
                if isinstance(ref, str):
                    _valid_ref(lr, kp, ref)
                    continue
                want = _per_platform(lr, kp, ref, want)
    for i, w in enumerate(lr.recipe.work):
        if isinstance(w.base, str):
            refs = lr.channel_refs(w.base)
            for ref in [refs.single] if refs.single is not None else refs.per_platform.values():
                _valid_ref(lr, ("work", i, "base"), ref)
        elif w.base is not None:
            _per_platform(lr, ("work", i, "base"), w.base, (listed, "platforms") if listed else None)


def _per_platform(lr: LoadedRecipe, kp: KeyPath, mapping: Mapping[str, str],
                  want: tuple[list[Platform], str] | None) -> tuple[list[Platform], str]:
    """Check a per-platform mapping (each reference, each platform once, the platforms ``want`` says);
    what later mappings of the same unit must match."""
    if not mapping:
        raise lr.error(kp, "a per-platform mapping needs at least one platform: reference entry")
    have = [parse_platform(p) for p in mapping]
    twice = duplicate(have)
    if twice is not None:
        raise lr.error((*kp, str(twice[1])), f"{twice[1]} is given twice (as {twice[0]} too)")
    for platform, ref in mapping.items():
        _valid_ref(lr, (*kp, platform), ref)
    if want is None:
        return have, ".".join(map(str, kp))
    platforms, whose = want
    check_same_platforms(lr, kp, have, platforms, whose)
    return want


def check_same_platforms(lr: LoadedRecipe, kp: KeyPath, have: Sequence[Platform], want: Sequence[Platform],
                         whose: str) -> None:
    """A per-platform mapping at ``kp`` must name exactly the platforms ``want`` (listed in ``whose``)."""
    missing = [str(p) for p in want if not any(same_platform(p, h) for h in have)]
    if missing:
        raise lr.error(kp, f"names no image for {', '.join(missing)} (listed in {whose}); add "
                           f"'{missing[0]}: REFERENCE'")
    extra = [str(h) for h in have if not any(same_platform(h, p) for p in want)]
    if extra:
        raise lr.error((*kp, extra[0]), f"{extra[0]} is not one of the recipe's platforms "
                                        f"({', '.join(map(str, want))}, from {whose})")


def _valid_ref(lr: LoadedRecipe, kp: KeyPath, ref: str) -> None:
    if not ref.startswith(("oci:", "dir:", "docker://")) and "/" not in ref:
        raise lr.error(kp, f"{ref!r} is not an image reference (oci:PATH:NAME, dir:PATH or registry/repo:tag) "
                           "or a channel name")
    try:
        parse_ref(ref)
    except RefError as e:
        raise lr.error(kp, e.reason) from None
