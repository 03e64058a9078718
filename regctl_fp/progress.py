"""How library code reports progress without printing: the caller hands in a ``Progress``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

OnBytes = Callable[[int], None]


class Progress(Protocol):
    def task(self, label: str, total: int | None) -> OnBytes:
        """Start a unit of work of ``total`` bytes; call the result with each amount done."""
        ...


class _Silent:
    def task(self, label: str, total: int | None) -> OnBytes:
        return _ignore


def _ignore(n: int) -> None:
    pass


SILENT: Progress = _Silent()
