"""``@valueclass``: a frozen dataclass whose ``__eq__``, ``__hash__`` and ``__repr__`` are shared functions.

``@dataclass(frozen=True)`` writes six methods as source text and compiles each one, for every class,
at import: about 1 ms a class here, and a warm no-op ``regfp build`` defines some sixty of them before
it does any work. ``@valueclass`` asks ``dataclasses`` for only what must be per class (``__init__`` and the
frozen ``__setattr__``/``__delattr__``) and gives every class the same three functions for the rest,
reading the field names ``dataclasses`` recorded. Equality, hashing and repr follow the dataclass rules
exactly: only an instance of the very same class is equal; fields with ``compare=False`` are left out of
both equality and the hash (``hash=`` on a field is honoured); fields with ``repr=False`` (secrets) are
left out of the repr. ``dataclasses.fields``, ``replace`` and ``asdict`` work as on any dataclass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")


def _nothing(_obj: object) -> tuple[()]:
    return ()


def _tuple_of(names: tuple[str, ...]) -> Callable[[object], object]:
    """A C-level getter of the named attributes, as a tuple (a single name: the value itself)."""
    return attrgetter(*names) if names else _nothing


def _eq(self: object, other: object) -> object:
    if other.__class__ is self.__class__:
        key = self.__class__._value_compared  # type: ignore[attr-defined]
        return bool(key(self) == key(other))
    return NotImplemented


def _hash(self: object) -> int:
    return hash(self.__class__._value_hashed(self))  # type: ignore[attr-defined]


def _repr(self: object) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__class__._value_shown)  # type: ignore[attr-defined]
    return f"{self.__class__.__qualname__}({shown})"


def _finish(cls: type[T]) -> type[T]:
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    compared = tuple(f.name for f in fields if f.compare)
    hashed = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
    shared: dict[str, object] = {
        "_value_compared": staticmethod(_tuple_of(compared)), "_value_hashed": staticmethod(_tuple_of(hashed)),
        "_value_shown": tuple(f.name for f in fields if f.repr), "__eq__": _eq, "__hash__": _hash, "__repr__": _repr}
    for name, attribute in shared.items():
        setattr(cls, name, attribute)
    return cls


@overload
def valueclass(cls: type[T], /) -> type[T]: ...


@overload
def valueclass(*, kw_only: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def valueclass(cls: type[T] | None = None, /, *, kw_only: bool = False) -> Any:
    """``@dataclass(frozen=True)`` (``kw_only`` as there), with the shared methods described above."""

    def wrap(c: type[T]) -> type[T]:
        for name in ("__eq__", "__hash__", "__repr__"):
            if name in c.__dict__:
                raise TypeError(f"@valueclass class {c.__qualname__} defines {name}: use @dataclass instead")
        return _finish(dataclasses.dataclass(c, frozen=True, eq=False, repr=False, kw_only=kw_only))

    return wrap if cls is None else wrap(cls)
