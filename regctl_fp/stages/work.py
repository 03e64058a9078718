"""Work chunks: items split into N images for fan-out workers, by rendezvous hashing.

Item i goes to the chunk c with the highest sha256("<item>\\0<c>"); adding or removing an item moves
only that item, so exactly one chunk image changes. Each chunk holds its items read-only under
``/work/input``, an index ``/work/index.json`` (item, size, sha256) and runs as a non-root user.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..layers import Entry, dir_entry, file_entry, write_layer
from ..oci.canonical import canonical_json
from ..oci.config import History, ImageConfig
from ..oci.image import Image, Layer
from ..regularfile import open_regular
from ..stores.base import Store

INPUT = "work/input"


def chunk_of(item: str, chunks: int) -> int:
    def score(c: int) -> bytes:
        return hashlib.sha256(f"{item}\0{c}".encode()).digest()

    return max(range(chunks), key=score)


def assign(items: Sequence[str], chunks: int) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in range(chunks)]
    for item in sorted(items):
        out[chunk_of(item, chunks)].append(item)
    return out


@dataclass(frozen=True)
class WorkItem:
    name: str  # path relative to the work root, '/'-separated
    path: Path

    def digest(self) -> str:
        h = hashlib.sha256()
        with open_regular(self.path, follow=False) as f:  # listed as a file; refuse if it changed since
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()


def chunk_image(base: Image | None, items: Sequence[WorkItem], *, index: int, chunks: int, name: str, user: str,
                mtime: int, store: Store) -> Image:
    listing = [{"item": it.name, "size": it.path.stat().st_size, "sha256": it.digest()} for it in items]
    entries: list[Entry] = [dir_entry("work", 0o755), dir_entry(INPUT, 0o555)]
    dirs: set[str] = set()
    for it in items:
        parts = it.name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:depth]))
        entries.append(Entry(f"{INPUT}/{it.name}".encode(), "file", 0o444, size=it.path.stat().st_size,
                             opener=lambda p=it.path: open_regular(p, follow=False), origin=str(it.path)))
    entries += [dir_entry(f"{INPUT}/{d}", 0o555) for d in sorted(dirs)]
    doc = {"work": name, "chunk": index, "chunks": chunks, "items": listing}
    entries.append(file_entry("work/index.json", canonical_json(doc) + b"\n", 0o444))
    written = write_layer(entries, store.blob_sink(), mtime=mtime)
    desc = written.descriptor
    layer = Layer(desc, written.diff_id, lambda: store.open_blob(desc))
    image = base if base is not None else Image(config=ImageConfig.new())
    image = image.appended(layer, History(created_by=f"regfp work: {name} {index + 1}-of-{chunks}"))
    cfg = image.config.with_container(User=user, WorkingDir="/work").with_labels(
        {"dev.regfp.work": name, "dev.regfp.chunk": f"{index + 1}-of-{chunks}"})
    return image.with_config(cfg)
