"""Stage kinds ``matrix`` and ``work``: independent units (the ones CI can shard).

A matrix cell merges one image per axis (model x runtime x base); a work chunk lays a share of the
work items onto an optional base. Neither needs a Git source.
"""

from __future__ import annotations

import glob
import itertools
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..oci import annotation_keys as A
from ..oci.descriptor import Descriptor
from ..recipe.load import LoadedRecipe
from ..recipe.model import Matrix, Work, fragment
from ..stages.matrix import cell_tag
from ..stages.work import WorkItem, assign
from ..stores.base import write_image
from .build import image_input
from .graph import Node, NodeId, Outcome
from .keys import stage_key
from .reuse import reuse_or_make
from .run import Run

if TYPE_CHECKING:
    from ..filedigests import FileDigests


@dataclass(frozen=True)
class Cell:
    matrix: Matrix
    values: tuple[tuple[str, str, str], ...]  # (axis, value, image reference as written)

    @property
    def name(self) -> str:
        return f"matrix/{self.matrix.name}:{cell_tag([v for _, v, _ in self.values])}"

    def key(self, digests: dict[str, str]) -> str:
        frag = {"matrix": self.matrix.name, "cell": {a: v for a, v, _ in self.values},
                "entrypoint": self.matrix.entrypoint, "overwrite": self.matrix.overwrite}
        return stage_key("matrix", frag, {a: digests[ref] for a, _, ref in self.values}, None)


def cells(lr: LoadedRecipe) -> Iterator[Cell]:
    for m in lr.recipe.matrix:
        axes = [[(axis, value, ref) for value, ref in values.items()] for axis, values in m.axes.items()]
        for combo in itertools.product(*axes):
            yield Cell(m, tuple(combo))


@dataclass(frozen=True)
class Chunk:
    work: Work
    index: int  # 0-based
    items: tuple[WorkItem, ...]
    fragment: Any  # the work section's recipe fragment, less root and items (computed once per section)

    @property
    def name(self) -> str:
        return f"work/{self.work.name}:{self.index + 1}-of-{self.work.chunks}"

    def key(self, base_digest: str | None, digests: dict[str, str]) -> str:
        items = {it.name: digests[it.name] for it in self.items}
        return stage_key("work", self.fragment, {"base": base_digest, "chunk": self.index, "items": items}, None)


def chunks(lr: LoadedRecipe) -> Iterator[Chunk]:
    for i, w in enumerate(lr.recipe.work):
        root = lr.resolve(w.root)
        if not root.is_dir():
            raise lr.error(("work", i, "root"), f"{root} is not a directory")
        base = str(root)
        found: dict[str, WorkItem] = {}
        for pattern in w.items:  # plain strings, not Paths: this loop runs over every item on every run
            for name in sorted(glob.glob(pattern, root_dir=base, recursive=True, include_hidden=True)):
                path = os.path.join(base, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):  # symlinks and the like are not items
                    posix = name.replace(os.sep, "/")
                    found[posix] = WorkItem(posix, path, st)
        if not found:
            raise lr.error(("work", i, "items"), f"no files under {root} match {', '.join(w.items)}")
        frag = {k: v for k, v in fragment(w).items() if k not in ("root", "items")}
        for index, names in enumerate(assign(list(found), w.chunks)):
            yield Chunk(w, index, tuple(found[n] for n in names), frag)


def matrix_nodes(run: Run) -> list[Node]:
    found = {c.name: c for c in cells(run.lr)}
    run.memo["cells"] = found
    refs = dict.fromkeys(ref for c in found.values() for _, _, ref in c.values)
    return [*(Node(image_input(ref), label=ref) for ref in refs),
            *(Node(NodeId("matrix", name), (name,), tuple(image_input(ref) for _, _, ref in c.values), unit=True)
              for name, c in found.items())]


def work_nodes(run: Run) -> list[Node]:
    found = {c.name: c for c in chunks(run.lr)}
    run.memo["chunks"] = found
    nodes = []
    for name, c in found.items():
        items = NodeId("input", f"items:{c.work.name}")  # the files the chunks hold are inputs too
        nodes.append(Node(items, label=f"{c.work.root}: {', '.join(c.work.items)}"))
        base = run.lr.channel_ref(c.work.base) if c.work.base is not None else None
        if base is not None:
            nodes.append(Node(image_input(base), label=base))
        nodes.append(Node(NodeId("work", name), (name,), (items, image_input(base)) if base else (items,), unit=True))
    return nodes


def evaluate_cell(run: Run, node: Node) -> Outcome:
    cell: Cell = run.memo["cells"][node.id.part]
    key = cell.key({ref: run.image(ref).digest.text for _, _, ref in cell.values})
    return reuse_or_make(run, node, key, node.names, lambda: _make_cell(run, cell, key),
                         cached_reason="up to date", make_reason=_why(run, node))


def evaluate_chunk(run: Run, node: Node) -> Outcome:
    chunk: Chunk = run.memo["chunks"][node.id.part]
    base = run.lr.channel_ref(chunk.work.base) if chunk.work.base is not None else None
    digests = {it.name: _digest(run, chunk.work, it) for it in chunk.items}
    key = chunk.key(run.image(base).digest.text if base else None, digests)
    detail = f"; {len(chunk.items)} items"
    return reuse_or_make(run, node, key, node.names, lambda: _make_chunk(run, chunk, key, base, digests),
                         cached_reason="up to date" + detail, make_reason=_why(run, node) + detail)


def _digest(run: Run, work: Work, item: WorkItem) -> str:
    """The item's sha256, from the run's digest cache of its work root when the CLI gave one."""
    if run.options.file_digests is None or item.listed is None:
        return item.digest()
    caches: dict[str, FileDigests] = run.memo.setdefault("file_digests", {})
    cache = caches.get(work.name)
    if cache is None:
        cache = caches[work.name] = run.options.file_digests(str(run.lr.resolve(work.root)))
        run.at_end(cache.save)
    return cache.digest(item.name, item.path, item.listed)


def _why(run: Run, node: Node) -> str:
    return "not built yet" if node.names[0] not in run.snapshot.names else "inputs changed"


def _make_cell(run: Run, cell: Cell, key: str) -> Descriptor:
    from ..imagefs import list_files
    from ..stages.matrix import merge_cell

    axes = [(a, v, run.image(ref)) for a, v, ref in cell.values]
    files = None
    if not cell.matrix.overwrite:
        listings: dict[tuple[str, str], dict[str, str]] = run.memo.setdefault("listings", {})
        for a, v, img in axes:
            if (a, v) not in listings:
                listings[(a, v)] = list_files(img)
        files = listings
    merged = merge_cell(axes, entrypoint_axis=cell.matrix.entrypoint, files=files, overwrite=cell.matrix.overwrite)
    image = merged.with_annotations({A.STAGE: "matrix", A.KEY: key,
                                     **{f"{A.AXIS_PREFIX}{a}": v for a, v, _ in cell.values}})
    return write_image(run.store, image)


def _make_chunk(run: Run, chunk: Chunk, key: str, base: str | None, digests: dict[str, str]) -> Descriptor:
    from ..stages.work import chunk_image

    img = chunk_image(run.image(base) if base else None, chunk.items, index=chunk.index, chunks=chunk.work.chunks,
                      name=chunk.work.name, user=chunk.work.user, mtime=run.options.epoch, store=run.store,
                      digests=digests)
    return write_image(run.store, img.with_annotations({A.STAGE: "work", A.KEY: key}))
