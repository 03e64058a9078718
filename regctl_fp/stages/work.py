"""Work chunks: items split into N images for fan-out workers, balanced and stable.

Assignment (``assign``): each item has a position on a ring, the first 8 bytes of sha256(item name);
chunk c owns the arc [c/N, (c+1)/N). Walking the ring in position order, an item goes to its own
chunk while that chunk holds fewer than ``ceil(1.25 * items / N)``; otherwise it carries on to the next
chunk with room (wrapping around). Then, when there are at least as many items as chunks, an empty
chunk takes the last item of the nearest chunk before it that holds two or more.

Guarantees: no chunk holds more than ``ceil(1.25 * mean)``; no chunk is empty when items >= chunks;
the assignment depends on the set of items only (not their order). Adding or removing one item changes
its own chunk and, only where chunks are full, a short run of the chunks after it: over 1,000 random
insertions into 2,048 items in 512 chunks, 2.4 chunks change per insertion on average (tests check
<= 3). Cost: one sha256 per item and a sort, O(items log items + chunks).

Each chunk holds its items read-only under ``/work/input``, an index ``/work/index.json`` (item, size,
sha256) and runs as a non-root user.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING

from ..filedigests import hash_file
from ..oci.canonical import canonical_json
from ..oci.config import History, ImageConfig
from ..oci.descriptor import Platform
from ..oci.image import Image, Layer
from ..regularfile import open_regular
from ..stores.base import Store
from ..values import valueclass

if TYPE_CHECKING:  # the layer writer is imported when a chunk image is made
    from ..layers import Entry

INPUT = "work/input"
SLACK = 1.25  # the largest chunk holds at most this times the mean (rounded up)


@functools.lru_cache(maxsize=1 << 16)
def position(item: str) -> int:
    """The item's place on the ring: a 64-bit number from its name."""
    return int.from_bytes(hashlib.sha256(item.encode()).digest()[:8], "big")


def capacity(items: int, chunks: int) -> int:
    return max(1, -(-items * 5 // (chunks * 4)))  # ceil(1.25 * items / chunks), in integers


def assign(items: Sequence[str], chunks: int) -> list[list[str]]:
    """The items of each chunk (see the module docstring), each list in ring order."""
    if chunks < 1:
        raise ValueError("chunks must be at least 1")
    out: list[list[str]] = [[] for _ in range(chunks)]
    ring = sorted((position(it), it) for it in set(items))
    cap = capacity(len(ring), chunks)
    waiting: list[str] = []
    i = 0
    for c in range(chunks):
        while i < len(ring) and ring[i][0] * chunks >> 64 == c:
            waiting.append(ring[i][1])
            i += 1
        out[c], waiting = waiting[:cap], waiting[cap:]
    c = 0
    while waiting:  # carried past the last chunk: around the ring to the first chunks with room
        room = cap - len(out[c])
        out[c] += waiting[:room]
        waiting = waiting[room:]
        c += 1
    if len(ring) >= chunks:
        for c in range(chunks):
            if not out[c]:
                donor = (c - 1) % chunks
                while len(out[donor]) < 2:
                    donor = (donor - 1) % chunks
                out[c] = [out[donor].pop()]
    return out


def chunk_of(item: str, items: Sequence[str], chunks: int) -> int:
    """The chunk ``item`` lands in, among ``items`` (it is added if absent)."""
    for c, members in enumerate(assign([*items, item], chunks)):
        if item in members:
            return c
    raise AssertionError("every item is assigned")


@valueclass
class WorkItem:
    name: str  # path relative to the work root, '/'-separated
    path: str
    listed: os.stat_result | None = field(default=None, compare=False)  # its lstat when it was listed

    def digest(self) -> str:
        return hash_file(self.path)[0]  # listed as a file; refused if it is no longer one


def chunk_image(base: Image | None, items: Sequence[WorkItem], *, index: int, chunks: int, name: str, user: str,
                mtime: int, store: Store, digests: Mapping[str, str] | None = None) -> Image:
    """The chunk's image; ``digests`` (item name -> sha256 hex) saves hashing items the caller hashed."""
    layer = chunk_layer(items, index=index, chunks=chunks, name=name, mtime=mtime, store=store, digests=digests)
    return chunk_on(base, layer, index=index, chunks=chunks, name=name, user=user)


def chunk_layer(items: Sequence[WorkItem], *, index: int, chunks: int, name: str, mtime: int, store: Store,
                digests: Mapping[str, str] | None = None) -> Layer:
    """The chunk's one layer (its items and index), written to ``store``: the same bytes whatever the base
    or platform, so every platform's image of a chunk shares the blob."""
    from ..layers import Entry, dir_entry, file_entry, write_layer

    known = digests or {}
    sizes = {it.name: os.lstat(it.path).st_size for it in items}
    listing = [{"item": it.name, "size": sizes[it.name], "sha256": known.get(it.name) or it.digest()} for it in items]
    entries: list[Entry] = [dir_entry("work", 0o755), dir_entry(INPUT, 0o555)]
    dirs: set[str] = set()
    for it in items:
        parts = it.name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:depth]))
        entries.append(Entry(f"{INPUT}/{it.name}".encode(), "file", 0o444, size=sizes[it.name],
                             opener=functools.partial(open_regular, it.path, follow=False), origin=it.path))
    entries += [dir_entry(f"{INPUT}/{d}", 0o555) for d in sorted(dirs)]
    doc = {"work": name, "chunk": index, "chunks": chunks, "items": listing}
    entries.append(file_entry("work/index.json", canonical_json(doc) + b"\n", 0o444))
    written = write_layer(entries, store.blob_sink(), mtime=mtime)
    desc = written.descriptor
    return Layer(desc, written.diff_id, lambda: store.open_blob(desc))


def chunk_on(base: Image | None, layer: Layer, *, index: int, chunks: int, name: str, user: str,
             platform: Platform | None = None) -> Image:
    """The chunk's layer on ``base`` (or on nothing: an image of ``platform``, by default the image
    config's default one)."""
    if base is not None:
        image = base
    elif platform is not None:
        image = Image(config=ImageConfig.new(os=platform.os, architecture=platform.architecture,
                                             variant=platform.variant))
    else:
        image = Image(config=ImageConfig.new())
    image = image.appended(layer, History(created_by=f"regfp work: {name} {index + 1}-of-{chunks}"))
    cfg = image.config.with_container(User=user, WorkingDir="/work").with_labels(
        {"dev.regfp.work": name, "dev.regfp.chunk": f"{index + 1}-of-{chunks}"})
    return image.with_config(cfg)
