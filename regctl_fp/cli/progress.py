"""A rich progress bar on stderr when it is a terminal; silence otherwise (pipes, CI logs, ``--json``
consumers reading stderr get nothing but errors)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ..progress import SILENT, OnBytes, Progress


class _RichProgress:
    def __init__(self, bar) -> None:  # type: ignore[no-untyped-def]
        self._bar = bar

    def task(self, label: str, total: int | None) -> OnBytes:
        from .output import clean

        task_id = self._bar.add_task(clean(label, keep_newlines=False), total=total)
        return lambda n: self._bar.advance(task_id, n)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Progress]:
    if not enabled or not sys.stderr.isatty():
        yield SILENT
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import (
        Progress as RichBar,
    )

    from .output import err_console

    # markup=False: descriptions hold paths, and a path like "[/x]" is not rich markup.
    with RichBar(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                 TimeRemainingColumn(), console=err_console(), transient=True) as bar:
        yield _RichProgress(bar)
