"""How library code reports progress without printing: the caller hands in a ``Progress``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

OnBytes = Callable[[int], None]
OnFound = Callable[[int], None]


class Progress(Protocol):
    def task(self, label: str, total: int | None) -> OnBytes:
        """Start a unit of work of ``total`` bytes; call the result with each amount done."""
        ...

    def scanning(self, label: str) -> AbstractContextManager[OnFound]:
        """A scan of unknown extent (a directory tree) for the ``with`` block; call the value it gives
        with each number of files found. Shown as a spinner and a count, so a long scan is not silent."""
        ...


class _Silent:
    def task(self, label: str, total: int | None) -> OnBytes:
        return _ignore

    def scanning(self, label: str) -> AbstractContextManager[OnFound]:
        return nullcontext(_ignore)


def _ignore(n: int) -> None:
    pass


SILENT: Progress = _Silent()
