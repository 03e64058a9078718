"""``@valueclass`` behaves as ``@dataclass(frozen=True)`` does: equality, hashing, repr, field flags,
freezing, ``replace``/``fields``/``asdict``, ``kw_only``; only the way its methods come to be differs."""

from __future__ import annotations

import dataclasses
from dataclasses import FrozenInstanceError, asdict, dataclass, field, fields, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regctl_fp.values import valueclass


@valueclass
class Shared:
    name: str
    size: int = 0
    tags: tuple[str, ...] = ()
    secret: str = field(default="", repr=False)
    note: str = field(default="", compare=False)
    weight: int = field(default=0, hash=False)


@dataclass(frozen=True)
class Generated:
    name: str
    size: int = 0
    tags: tuple[str, ...] = ()
    secret: str = field(default="", repr=False)
    note: str = field(default="", compare=False)
    weight: int = field(default=0, hash=False)


@valueclass
class One:
    only: str


@dataclass(frozen=True)
class OneGenerated:
    only: str


@valueclass
class Empty:
    pass


@valueclass(kw_only=True)
class Keywords:
    a: int
    b: str = "b"


values = st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 2), st.sampled_from([(), ("x",), ("x", "y")]),
                   st.sampled_from(["", "s3cret"]), st.sampled_from(["", "n"]), st.integers(0, 1))


@given(values, values)
def test_equality_and_hash_match_a_frozen_dataclass(a: tuple, b: tuple) -> None:  # type: ignore[type-arg]
    sa, sb, ga, gb = Shared(*a), Shared(*b), Generated(*a), Generated(*b)
    assert (sa == sb) == (ga == gb)
    assert (sa != sb) == (ga != gb)
    if sa == sb:
        assert hash(sa) == hash(sb)
    # the same fields go into the hash as a dataclass puts into its own (compare, and hash= honoured)
    assert hash(sa) == hash(tuple(getattr(sa, f.name) for f in fields(Generated)
                                  if (f.compare if f.hash is None else f.hash)))
    assert repr(sa).replace("Shared", "Generated", 1) == repr(ga)
    assert asdict(sa) == asdict(ga)


def test_single_field_and_empty_classes() -> None:
    assert One("x") == One("x") != One("y")
    assert (One("x") == OneGenerated("x")) is False  # another class is never equal, as with dataclasses
    assert len({One("x"), One("x"), One("y")}) == 2
    assert repr(One("x")) == "One(only='x')"
    assert Empty() == Empty() and hash(Empty()) == hash(Empty()) and repr(Empty()) == "Empty()"


def test_secrets_stay_out_of_repr() -> None:
    assert "s3cret" not in repr(Shared("a", secret="s3cret"))
    assert "s3cret" not in str(Shared("a", secret="s3cret"))


def test_frozen_replace_fields_and_keywords() -> None:
    s = Shared("a", 1)
    with pytest.raises(FrozenInstanceError):
        s.size = 2  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del s.size  # type: ignore[misc]
    assert replace(s, size=2) == Shared("a", 2)
    assert [f.name for f in fields(s)] == [f.name for f in fields(Generated)]
    assert dataclasses.is_dataclass(s)
    assert Keywords(a=1) == Keywords(a=1, b="b")
    with pytest.raises(TypeError):
        Keywords(1)  # type: ignore[misc]


def test_a_subclass_is_not_equal_to_its_base() -> None:
    @valueclass
    class Sub(Shared):
        extra: int = 0

    assert Sub("a") != Shared("a") and Shared("a") != Sub("a")
    assert repr(Sub("a", extra=3)).startswith("test_a_subclass_is_not_equal_to_its_base.<locals>.Sub(name='a'")


def test_a_class_with_its_own_eq_is_refused() -> None:
    with pytest.raises(TypeError, match="defines __eq__"):
        @valueclass
        class Own:
            x: int

            def __eq__(self, other: object) -> bool:
                return True
