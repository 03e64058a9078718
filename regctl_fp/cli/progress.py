"""A rich progress bar on stderr when it is a terminal; silence otherwise (pipes, CI logs, ``--json``
consumers reading stderr get nothing but errors). Byte tasks get a bar; scans get a spinner and a count
of files found, so a long directory scan is not a silent pause before the bar."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

from ..progress import SILENT, OnBytes, OnFound, Progress

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.progress import Progress as RichBar
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

_SCAN = "scan"


class _RichProgress:
    def __init__(self, bar: RichBar) -> None:
        self._bar = bar

    def task(self, label: str, total: int | None) -> OnBytes:
        from .output import clean

        task_id = self._bar.add_task(clean(label, keep_newlines=False), total=total)
        return lambda n: self._bar.advance(task_id, n)

    def scanning(self, label: str) -> AbstractContextManager[OnFound]:
        return self._scan(label)

    @contextmanager
    def _scan(self, label: str) -> Iterator[OnFound]:
        from .output import clean

        task_id = self._bar.add_task(clean(label, keep_newlines=False), total=None, kind=_SCAN)
        try:
            yield lambda n: self._bar.advance(task_id, n)
        finally:
            # Finished: the spinner stops and the final count stays in view above the byte bars.
            found = next(t.completed for t in self._bar.tasks if t.id == task_id)
            self._bar.update(task_id, total=found, completed=found)
            self._bar.refresh()


def _by_kind(for_bytes: ProgressColumn | None, for_scan: ProgressColumn | None) -> ProgressColumn:
    """One column that renders byte tasks and scan tasks differently (rich has one column set per bar)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class ByKind(ProgressColumn):
        def render(self, task: Task) -> RenderableType:
            column = for_scan if task.fields.get("kind") == _SCAN else for_bytes
            return column.render(task) if column is not None else Text("")

    return ByKind()


def _file_count() -> ProgressColumn:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class FileCount(ProgressColumn):
        def render(self, task: Task) -> Text:
            n = int(task.completed)
            return Text(f"{n:,} file{'' if n == 1 else 's'}")

    return FileCount()


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Progress]:
    if not enabled or not sys.stderr.isatty():
        yield SILENT
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        SpinnerColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import (
        Progress as RichBar,
    )

    from .output import err_console

    # markup=False: descriptions hold paths, and a path like "[/x]" is not rich markup.
    with RichBar(_by_kind(None, SpinnerColumn(finished_text="")), TextColumn("{task.description}", markup=False),
                 _by_kind(BarColumn(), None), _by_kind(DownloadColumn(), _file_count()),
                 _by_kind(TransferSpeedColumn(), None), _by_kind(TimeRemainingColumn(), None),
                 console=err_console(), transient=True) as bar:
        yield _RichProgress(bar)
