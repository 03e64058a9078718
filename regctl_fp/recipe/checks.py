"""Load-time checks of matrix and work sections that types alone cannot express."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import RefError
from ..refs import parse_ref

if TYPE_CHECKING:
    from .load import LoadedRecipe


def check_units(lr: LoadedRecipe) -> None:
    names = [m.name for m in lr.recipe.matrix]
    if len(set(names)) != len(names):
        raise lr.error(("matrix",), "two matrices share a name")
    works = [w.name for w in lr.recipe.work]
    if len(set(works)) != len(works):
        raise lr.error(("work",), "two work sections share a name")
    for i, m in enumerate(lr.recipe.matrix):
        for axis, values in m.axes.items():
            for value, ref in values.items():
                _valid_ref(lr, ("matrix", i, "axes", axis, value), ref)
    for i, w in enumerate(lr.recipe.work):
        if w.base is not None:
            _valid_ref(lr, ("work", i, "base"), lr.channel_ref(w.base))


def _valid_ref(lr: LoadedRecipe, kp: tuple[str | int, ...], ref: str) -> None:
    if not ref.startswith(("oci:", "dir:", "docker://")) and "/" not in ref:
        raise lr.error(kp, f"{ref!r} is not an image reference (oci:PATH:NAME, dir:PATH or registry/repo:tag) "
                           "or a channel name")
    try:
        parse_ref(ref)
    except RefError as e:
        raise lr.error(kp, e.reason) from None
