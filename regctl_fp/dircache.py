"""A cache of ``dir:`` images: a tree's fingerprint (paths, types, modes, owners, sizes, mtimes and
ctimes, inodes) -> the image it became, so unchanged directories are not tarred and compressed again.

The fingerprint is taken with ``lstat`` only, which is much cheaper than reading the files. Any write to
a file changes its ctime, so an edit is seen, except one that lands in the same timestamp tick as an
earlier write the fingerprint already saw: the two stats are then identical. As git does for "racily
clean" index entries, a fingerprint in which some entry changed shortly before the scan started is
*racy* and its result is never stored (the next build, once the tree is older, stores it). The cache is
a plain JSON file replaced atomically; losing it, or a racing writer's update, only costs recomputation.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any

from .values import valueclass

MAX_ENTRIES = 512
# How close to the scan's start a change must be to make a fingerprint racy. File timestamps come from
# the kernel's coarse clock, which ticks every 1-4 ms, and filesystems may store coarser ones still
# (1 s on ext3 and many network filesystems, 2 s for FAT's mtime): two writes within one such step get
# the same timestamps. Two seconds covers every one of them; the price is only that a tree edited in
# the last two seconds is tarred again on its next build.
RACY_MARGIN_NS = 2_000_000_000


@valueclass
class Fingerprint:
    """A tree's fingerprint; ``racy`` when an entry changed within ``RACY_MARGIN_NS`` of the scan's
    start, so a later write in the same timestamp tick would not change it."""

    digest: str
    racy: bool = field(default=False, compare=False)


def fingerprint(root: Path, start_ns: int | None = None,
                on_found: Callable[[int], None] | None = None) -> Fingerprint:
    """The fingerprint of the tree below ``root``; ``start_ns`` is the time the scan started (on the
    clock file timestamps use), and without it every fingerprint counts as racy. ``on_found`` hears
    how many files each directory held (a terminal's spinner counts them)."""
    h = hashlib.sha256()
    newest = 0
    base = os.fsencode(root)
    stack = [b""]
    while stack:
        rel = stack.pop()
        directory = os.path.join(base, rel) if rel else base
        with os.scandir(directory) as it:
            children = sorted(it, key=lambda d: d.name)
        for child in children:
            st = child.stat(follow_symlinks=False)
            crel = rel + b"/" + child.name if rel else child.name
            meta = (f"{st.st_mode:o} {st.st_uid} {st.st_gid} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} "
                    f"{st.st_ino} {st.st_dev}")
            h.update(crel + b"\0" + meta.encode() + b"\0")
            newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
            if child.is_symlink():
                h.update(os.readlink(child.path) + b"\0")
            elif child.is_dir(follow_symlinks=False):
                stack.append(crel)
        if on_found is not None:
            on_found(sum(1 for c in children if not c.is_dir(follow_symlinks=False)))
    racy = start_ns is None or newest >= start_ns - RACY_MARGIN_NS
    return Fingerprint(h.hexdigest(), racy)


class DirCache:
    """The cache file at ``path``. ``clock`` (nanoseconds since the epoch, e.g. ``time.time_ns``) dates
    each fingerprint's start; the caller supplies it, as library code reads no clock of its own."""

    def __init__(self, path: Path, clock: Callable[[], int] | None = None) -> None:
        self.path = path
        self._clock = clock
        self._data: dict[str, Any] | None = None

    def fingerprint(self, root: Path, on_found: Callable[[int], None] | None = None) -> Fingerprint:
        return fingerprint(root, self._clock() if self._clock is not None else None, on_found)

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            try:
                data = json.loads(self.path.read_text())
                self._data = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._data = {}
        return self._data

    def get(self, key: str, print_: Fingerprint) -> dict[str, Any] | None:
        record = self._load().get(key)
        if isinstance(record, dict) and record.get("fingerprint") == print_.digest:
            return record
        return None

    def put(self, key: str, print_: Fingerprint, record: dict[str, Any]) -> None:
        """Store ``record`` for a tree whose fingerprint is ``print_``; a racy one is not stored."""
        if print_.racy:
            return
        record = {**record, "fingerprint": print_.digest}
        data = self._load()
        data.pop(key, None)
        data[key] = record
        while len(data) > MAX_ENTRIES:
            data.pop(next(iter(data)))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".dircache.", dir=self.path.parent)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(data, separators=(",", ":")))  # dumps is the C encoder; dump is not
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written is just a cache that misses
