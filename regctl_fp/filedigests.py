"""A cache of files' sha256 digests keyed by what ``lstat`` says of them, so unchanged work items are not
read and hashed on every run.

A file's identity here is (size, mtime, ctime, inode, device): any write changes its ctime. As in
``dircache`` (and git's "racily clean" rule), a digest is stored only for a file whose last change is
older than ``RACY_MARGIN_NS`` before the run started, so a second write within the same timestamp tick
cannot hide behind an unchanged stat; and it is stored only when the file's stat after reading equals
the stat it was listed with, so a file that changed while it was read is never recorded.

One cache file per directory of items (``<sha256 of its path>.json`` under the cache directory), written
once at the end of a run (temp + rename, mode 0600) and only if something was added. A lost or damaged
cache file, or a racing writer's update, only costs hashing again.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from .dircache import RACY_MARGIN_NS
from .regularfile import open_regular

MAX_ENTRIES = 200_000  # per directory; beyond it the oldest entries go (a cache, not a record)
MAX_FILE = 64 << 20  # a cache file larger than this is ignored (it is ours, but bounded all the same)

StatKey = tuple[int, int, int, int, int]


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def hash_file(path: str) -> tuple[str, os.stat_result]:
    """sha256 hex of the regular file at ``path`` (no symlink followed) and its stat after reading."""
    h = hashlib.sha256()
    with open_regular(path, follow=False) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
        return h.hexdigest(), os.fstat(f.fileno())


class FileDigests:
    """Digests of the files under ``root``, cached in ``directory``. ``clock`` (ns since the epoch, the
    clock file timestamps use) dates the run's start; without one nothing is ever stored."""

    def __init__(self, directory: Path, root: str, clock: Callable[[], int] | None = None) -> None:
        self._file = directory / (hashlib.sha256(os.fsencode(os.path.abspath(root))).hexdigest()[:32] + ".json")
        self._start = clock() if clock is not None else None
        self._data: dict[str, list[object]] | None = None
        self._added = False

    def _load(self) -> dict[str, list[object]]:
        if self._data is None:
            self._data = {}
            try:
                with open_regular(self._file, follow=False) as f:
                    if os.fstat(f.fileno()).st_size <= MAX_FILE:
                        data = json.loads(f.read(MAX_FILE + 1))
                        if isinstance(data, dict):
                            self._data = data
            except (OSError, ValueError):
                pass  # missing, unreadable or damaged: every file is hashed again
        return self._data

    def digest(self, name: str, path: str, st: os.stat_result) -> str:
        """sha256 hex of the file ``path`` (``name`` is its key, relative to the root), listed with ``st``."""
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        key = stat_key(st)
        record = self._load().get(name)
        if isinstance(record, list) and len(record) == 6 and tuple(record[:5]) == key and isinstance(record[5], str):
            return record[5]
        hexdigest, after = hash_file(path)
        if (self._start is not None and stat_key(after) == key
                and max(st.st_mtime_ns, st.st_ctime_ns) < self._start - RACY_MARGIN_NS):
            data = self._load()
            data.pop(name, None)
            data[name] = [*key, hexdigest]
            self._added = True
        return hexdigest

    def save(self) -> None:
        """Write the cache if digests were added (a write that fails is a cache that misses next time)."""
        if not self._added or self._data is None:
            return
        data = self._data
        while len(data) > MAX_ENTRIES:
            data.pop(next(iter(data)))
        try:
            self._file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".digests.", dir=self._file.parent)  # mode 0600
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(json.dumps(data, separators=(",", ":")))
                os.replace(tmp, self._file)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass
        self._added = False
