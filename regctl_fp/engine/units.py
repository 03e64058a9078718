"""Stage kinds ``matrix`` and ``work``: independent units (the ones CI can shard).

A matrix cell merges one image per axis (model x runtime x base); a work chunk lays a share of the
work items onto an optional base. Neither needs a Git source.

A unit is made for several platforms (an image index, one image per platform) when the recipe lists
``platforms``, else when one of its images is a per-platform mapping or an index of several platforms
(the first such, in axis order); otherwise it is one image of the host's platform, keyed as before.
``dir:`` trees are platform-neutral: their layer is one blob on every platform, and so is a chunk's.
"""

from __future__ import annotations

import glob
import itertools
import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..oci import annotation_keys as A
from ..oci.descriptor import Descriptor, Platform
from ..oci.image import Image
from ..recipe.load import LoadedRecipe
from ..recipe.model import Matrix, Work, fragment
from ..recipe.platforms import Refs, parse_platform
from ..recipe.yamlsrc import KeyPath
from ..stages.matrix import cell_tag
from ..stages.work import WorkItem, assign
from ..stores.base import write_image, write_index
from ..values import valueclass
from .build import image_input
from .graph import Node, NodeId, Outcome
from .keys import stage_key
from .platforms import check_serves, index_platforms, platform_image, where_refs
from .reuse import reuse_or_make
from .run import Run

if TYPE_CHECKING:
    from ..filedigests import FileDigests


@valueclass
class Cell:
    matrix: Matrix
    position: int  # the matrix's place in the recipe (for errors)
    values: tuple[tuple[str, str, Refs], ...]  # (axis, value, image reference(s) as written)

    @property
    def name(self) -> str:
        return f"matrix/{self.matrix.name}:{cell_tag([v for _, v, _ in self.values])}"

    def where(self, axis: str, value: str) -> KeyPath:
        return ("matrix", self.position, "axes", axis, value)

    def key(self, digests: dict[str, Any], platforms: tuple[Platform, ...] | None) -> str:
        """``digests``: axis -> its value's image digest, or (several platforms) -> {platform: digest}."""
        frag: dict[str, Any] = {"matrix": self.matrix.name, "cell": {a: v for a, v, _ in self.values},
                                "entrypoint": self.matrix.entrypoint, "overwrite": self.matrix.overwrite}
        if platforms is not None:  # a single-platform cell's key is what it was before platforms existed
            frag["platforms"] = [str(p) for p in platforms]
        return stage_key("matrix", frag, {a: digests[a] for a, _, _ in self.values}, None)


def cells(lr: LoadedRecipe) -> Iterator[Cell]:
    for i, m in enumerate(lr.recipe.matrix):
        axes = [[(axis, value, Refs.of(ref)) for value, ref in values.items()] for axis, values in m.axes.items()]
        for combo in itertools.product(*axes):
            yield Cell(m, i, tuple(combo))


@valueclass
class Chunk:
    work: Work
    index: int  # 0-based
    items: tuple[WorkItem, ...]
    fragment: Any  # the work section's recipe fragment, less root and items (computed once per section)

    @property
    def name(self) -> str:
        return f"work/{self.work.name}:{self.index + 1}-of-{self.work.chunks}"

    def key(self, base: Any, digests: dict[str, str], platforms: tuple[Platform, ...] | None) -> str:
        """``base``: the base's digest (or None), or (several platforms) {platform: digest} or None."""
        items = {it.name: digests[it.name] for it in self.items}
        inputs: dict[str, Any] = {"base": base, "chunk": self.index, "items": items}
        if platforms is not None:  # a single-platform chunk's key is what it was before platforms existed
            inputs["platforms"] = [str(p) for p in platforms]
        return stage_key("work", self.fragment, inputs, None)

    def base_refs(self, lr: LoadedRecipe) -> Refs | None:
        base = self.work.base
        if base is None:
            return None
        return lr.channel_refs(base) if isinstance(base, str) else Refs.of(base)

    def where(self, run: Run) -> KeyPath:
        base = self.work.base
        patch = run.lr.recipe.patch
        if isinstance(base, str) and patch is not None and base in patch.channels:
            return where_refs(run, base)
        return ("work", run.lr.recipe.work.index(self.work), "base")


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


def unit_platforms(run: Run, values: Iterator[Refs]) -> tuple[Platform, ...] | None:
    """The platforms a unit is made for (see the module docstring); None: one image, the host's."""
    listed = run.lr.recipe.platforms
    if listed:
        return tuple(parse_platform(p) for p in listed)
    served: dict[str, tuple[Platform, ...] | None] = run.memo.setdefault("index-platforms", {})
    for refs in values:
        if refs.single is None:
            return refs.platforms
        if refs.single not in served:
            served[refs.single] = index_platforms(run, refs.single)
        found = served[refs.single]
        if found is not None and len(found) > 1:
            return found
    return None


def matrix_platforms(run: Run, m: Matrix) -> tuple[Platform, ...] | None:
    found: dict[str, tuple[Platform, ...] | None] = run.memo.setdefault("matrix-platforms", {})
    if m.name not in found:
        found[m.name] = unit_platforms(run, (Refs.of(ref) for values in m.axes.values() for ref in values.values()))
    return found[m.name]


def work_platforms(run: Run, chunk: Chunk) -> tuple[Platform, ...] | None:
    found: dict[str, tuple[Platform, ...] | None] = run.memo.setdefault("work-platforms", {})
    if chunk.work.name not in found:
        refs = chunk.base_refs(run.lr)
        found[chunk.work.name] = unit_platforms(run, iter([refs] if refs is not None else []))
    return found[chunk.work.name]


def platforms_input(refs: Refs) -> NodeId:
    """A reference of a multi-platform unit: one input for its image of every platform (each found, and
    checked to exist, by the units that use it)."""
    return NodeId("input", f"platforms:{refs.text}")


def matrix_nodes(run: Run) -> list[Node]:
    found = {c.name: c for c in cells(run.lr)}
    run.memo["cells"] = found
    nodes: list[Node] = []
    seen: set[NodeId] = set()
    for name, c in found.items():
        multi = matrix_platforms(run, c.matrix) is not None
        inputs = tuple(platforms_input(refs) if multi else image_input(refs.text) for _, _, refs in c.values)
        for (_, _, refs), node_id in zip(c.values, inputs, strict=True):
            if node_id not in seen:
                seen.add(node_id)
                nodes.append(Node(node_id, label=refs.text))
        nodes.append(Node(NodeId("matrix", name), (name,), inputs, unit=True))
    inputs_first = [n for n in nodes if n.id.kind == "input"]
    return [*inputs_first, *(n for n in nodes if n.id.kind != "input")]


def work_nodes(run: Run) -> list[Node]:
    found = {c.name: c for c in chunks(run.lr)}
    run.memo["chunks"] = found
    nodes = []
    for name, c in found.items():
        items = NodeId("input", f"items:{c.work.name}")  # the files the chunks hold are inputs too
        nodes.append(Node(items, label=f"{c.work.root}: {', '.join(c.work.items)}"))
        refs = c.base_refs(run.lr)
        base = None
        if refs is not None:
            base = platforms_input(refs) if work_platforms(run, c) is not None else image_input(refs.text)
            nodes.append(Node(base, label=refs.text))
        nodes.append(Node(NodeId("work", name), (name,), (items, base) if base else (items,), unit=True))
    return nodes


def check_matrix(run: Run) -> None:
    """Every axis image of a multi-platform matrix has an image for each platform (plan time, before
    anything is made)."""
    for c in run.memo.get("cells", {}).values():
        platforms = matrix_platforms(run, c.matrix)
        if platforms is not None:
            for axis, value, refs in c.values:
                check_serves(run, refs, platforms, c.where(axis, value), f"axis {axis}={value}")


def check_work(run: Run) -> None:
    """A multi-platform work section's base has an image for each platform (plan time)."""
    for c in run.memo.get("chunks", {}).values():
        platforms, refs = work_platforms(run, c), c.base_refs(run.lr)
        if platforms is not None and refs is not None:
            check_serves(run, refs, platforms, c.where(run), f"work {c.work.name}'s base")


def _value_digests(run: Run, cell: Cell, platforms: tuple[Platform, ...] | None) -> dict[str, Any]:
    if platforms is None:
        return {a: run.image(refs.text).digest.text for a, _, refs in cell.values}
    return {a: {str(p): platform_image(run, refs, p, cell.where(a, v)).digest.text for p in platforms}
            for a, v, refs in cell.values}


def evaluate_cell(run: Run, node: Node) -> Outcome:
    cell: Cell = run.memo["cells"][node.id.part]
    platforms = matrix_platforms(run, cell.matrix)
    key = cell.key(_value_digests(run, cell, platforms), platforms)
    return reuse_or_make(run, node, key, node.names, lambda: _make_cell(run, cell, key, platforms),
                         cached_reason="up to date", make_reason=_why(run, node))


def evaluate_chunk(run: Run, node: Node) -> Outcome:
    chunk: Chunk = run.memo["chunks"][node.id.part]
    platforms = work_platforms(run, chunk)
    refs = chunk.base_refs(run.lr)
    digests = {it.name: _digest(run, chunk.work, it) for it in chunk.items}
    base: Any = None
    if refs is not None:
        base = run.image(refs.text).digest.text if platforms is None else \
            {str(p): platform_image(run, refs, p, chunk.where(run)).digest.text for p in platforms}
    key = chunk.key(base, digests, platforms)
    detail = f"; {len(chunk.items)} items"
    return reuse_or_make(run, node, key, node.names, lambda: _make_chunk(run, chunk, key, platforms, digests),
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


def _make_cell(run: Run, cell: Cell, key: str, platforms: tuple[Platform, ...] | None) -> Descriptor:
    from ..stages.matrix import merge_cell

    axis_annotations = {f"{A.AXIS_PREFIX}{a}": v for a, v, _ in cell.values}
    listings: dict[tuple[str, ...], dict[str, str]] = run.memo.setdefault("listings", {})

    def merged(axes: list[tuple[str, str, Image]], platform: str) -> Image:
        files = None
        if not cell.matrix.overwrite and len(axes) > 1:  # one axis cannot overlap itself: nothing to list
            from ..imagefs import list_files

            files = {}
            for a, v, img in axes:
                # A dir: tree lists the same paths on every platform, but an index's images may not.
                seen = (a, v) if platforms is None else (a, v, platform)
                if seen not in listings:
                    listings[seen] = list_files(img)
                files[(a, v)] = listings[seen]
        image = merge_cell(axes, entrypoint_axis=cell.matrix.entrypoint, files=files,
                           overwrite=cell.matrix.overwrite)
        return image.with_annotations({A.STAGE: "matrix", A.KEY: key, **axis_annotations})

    if platforms is None:
        return write_image(run.store, merged([(a, v, run.image(refs.text)) for a, v, refs in cell.values], ""))
    images: dict[Platform, Image] = {}
    for p in platforms:
        image = merged([(a, v, platform_image(run, refs, p, cell.where(a, v))) for a, v, refs in cell.values], str(p))
        images[image.config.platform] = image
    return write_index(run.store, images, {A.STAGE: "matrix", A.KEY: key, **axis_annotations})


def _make_chunk(run: Run, chunk: Chunk, key: str, platforms: tuple[Platform, ...] | None,
                digests: dict[str, str]) -> Descriptor:
    from ..stages.work import chunk_layer, chunk_on

    w = chunk.work
    refs = chunk.base_refs(run.lr)
    # One layer of items, written once: every platform's image of the chunk holds the same blob.
    layer = chunk_layer(chunk.items, index=chunk.index, chunks=w.chunks, name=w.name, mtime=run.options.epoch,
                        store=run.store, digests=digests)
    annotations = {A.STAGE: "work", A.KEY: key}

    def on(base: Image | None, platform: Platform | None) -> Image:
        return chunk_on(base, layer, index=chunk.index, chunks=w.chunks, name=w.name, user=w.user,
                        platform=platform).with_annotations(annotations)

    if platforms is None:
        return write_image(run.store, on(run.image(refs.text) if refs is not None else None, None))
    images: dict[Platform, Image] = {}
    for p in platforms:
        image = on(platform_image(run, refs, p, chunk.where(run)) if refs is not None else None, p)
        images[image.config.platform] = image
    return write_index(run.store, images, annotations)
