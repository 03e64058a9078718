"""Deep-frozen JSON values: dicts that refuse mutation and hash, tuples for arrays."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn, TypeAlias, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")


class FrozenDict(dict[K, V]):
    """A dict that cannot change after construction (so values built from it stay values).

    It stays a ``dict`` subclass so ``json`` serialises it without help.
    """

    __slots__ = ("_hash",)
    _hash: int

    def _immutable(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("FrozenDict is immutable; build a new one")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _immutable
    __ior__ = _immutable

    def __hash__(self) -> int:  # type: ignore[override]  # dict declares itself unhashable; this one is not
        try:
            return self._hash
        except AttributeError:
            # Order-free, so keys need not be comparable with each other.
            h = hash(frozenset(self.items()))
            self._hash = h  # the slot is a cache; only the dict content is frozen
            return h

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


JSONObject: TypeAlias = FrozenDict[str, Any]
"""A frozen JSON object (an image config, a history entry's extra fields): values are frozen JSON."""

# Empty, so a value of every key and value type: the shared default of every frozen map field.
EMPTY: FrozenDict[Any, Any] = FrozenDict()


@overload
def freeze(value: Mapping[str, Any]) -> JSONObject: ...
@overload
def freeze(value: list[Any] | tuple[Any, ...]) -> tuple[Any, ...]: ...
@overload
def freeze(value: object) -> Any: ...
def freeze(value: object) -> Any:
    """Recursively turn dicts into FrozenDict and lists into tuples."""
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


@overload
def thaw(value: Mapping[str, Any]) -> dict[str, Any]: ...
@overload
def thaw(value: object) -> Any: ...
def thaw(value: object) -> Any:
    """The inverse of :func:`freeze`: plain dicts and lists, ready to edit."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def frozen_str_map(value: Mapping[str, str] | None) -> FrozenDict[str, str]:
    """``value`` as a frozen string map (itself when it is one already: frozen values need no copy)."""
    if not value:
        return EMPTY
    if isinstance(value, FrozenDict):
        return value
    return FrozenDict(value)
