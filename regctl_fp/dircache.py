"""A cache of ``dir:`` images: a tree's fingerprint (paths, types, modes, owners, sizes, mtimes and
ctimes, inodes) -> the image it became, so unchanged directories are not tarred and compressed again.

The fingerprint is taken with ``lstat`` only, which is much cheaper than reading the files. Any write to
a file changes its ctime, so an edit is always seen. The cache is a plain JSON file replaced atomically;
losing it, or a racing writer's update, only costs recomputation.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_ENTRIES = 512


def fingerprint(root: Path, on_found: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
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
            if child.is_symlink():
                h.update(os.readlink(child.path) + b"\0")
            elif child.is_dir(follow_symlinks=False):
                stack.append(crel)
        if on_found is not None:
            on_found(sum(1 for c in children if not c.is_dir(follow_symlinks=False)))
    return h.hexdigest()


class DirCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            try:
                data = json.loads(self.path.read_text())
                self._data = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._data = {}
        return self._data

    def get(self, key: str, print_: str) -> dict[str, Any] | None:
        record = self._load().get(key)
        if isinstance(record, dict) and record.get("fingerprint") == print_:
            return record
        return None

    def put(self, key: str, record: dict[str, Any]) -> None:
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
