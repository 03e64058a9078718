"""Matrix cells and work chunks: independent units of a recipe (the ones CI can shard)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..stages.matrix import cell_tag
from ..stages.work import WorkItem, assign
from .load import LoadedRecipe
from .model import Matrix, Work, fragment
from .plan import A_KEY, A_STAGE, Node, digest_of, lookup, stage_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..oci.image import Image
    from ..progress import Progress
    from ..sources import BuildOptions
    from ..stores.base import Store
    from ..stores.layout import LayoutStore
    from .execute import Report
    from .plan import Plan


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

    @property
    def name(self) -> str:
        return f"work/{self.work.name}:{self.index + 1}-of-{self.work.chunks}"

    def key(self, base_digest: str | None) -> str:
        frag = {k: v for k, v in fragment(self.work).items() if k not in ("root", "items")}
        items = {it.name: it.digest() for it in self.items}
        return stage_key("work", frag, {"base": base_digest, "chunk": self.index, "items": items}, None)


def chunks(lr: LoadedRecipe) -> Iterator[Chunk]:
    for i, w in enumerate(lr.recipe.work):
        root = lr.resolve(w.root)
        if not root.is_dir():
            raise lr.error(("work", i, "root"), f"{root} is not a directory")
        found: dict[str, WorkItem] = {}
        for pattern in w.items:
            for path in sorted(root.glob(pattern)):
                if path.is_file() and not path.is_symlink():
                    name = path.relative_to(root).as_posix()
                    found[name] = WorkItem(name, path)
        if not found:
            raise lr.error(("work", i, "items"), f"no files under {root} match {', '.join(w.items)}")
        for index, names in enumerate(assign(list(found), w.chunks)):
            yield Chunk(w, index, tuple(found[n] for n in names))


def _base_ref(lr: LoadedRecipe, w: Work) -> str | None:
    if w.base is None:
        return None
    return lr.channel_ref(w.base)


def plan_nodes(plan: Plan, store: LayoutStore | None, options: BuildOptions, work: Store | None = None) -> list[Node]:
    lr = plan.recipe
    nodes = []
    digests: dict[str, str] = {}

    def digest(ref: str) -> str:
        if ref not in digests:
            digests[ref] = digest_of(lr.image_ref(ref), options, work)
        return digests[ref]

    for cell in cells(lr):
        key = cell.key({ref: digest(ref) for _, _, ref in cell.values})
        nodes.append(_node(f"matrix:{cell.name}", "matrix", cell.name, key, store))
    for chunk in chunks(lr):
        base = _base_ref(lr, chunk.work)
        key = chunk.key(digest(base) if base else None)
        nodes.append(_node(f"work:{chunk.name}", "work", chunk.name, key, store,
                           f"{len(chunk.items)} items"))
    return nodes


def _node(nid: str, stage: str, name: str, key: str, store: LayoutStore | None, detail: str = "") -> Node:
    existing = lookup(store, name) if store is not None else None
    suffix = f"; {detail}" if detail else ""
    if existing is not None and existing.annotations.get(A_KEY) == key:
        return Node(nid, stage, (name,), "cached", "up to date" + suffix, (), key=key,
                    digest=existing.descriptor.digest.text)
    why = "not built yet" if existing is None else "inputs changed"
    return Node(nid, stage, (name,), "build", why + suffix, (), key=key)


def run(plan: Plan, *, options: BuildOptions, progress: Progress, report: Report) -> None:
    from ..imagefs import list_files
    from ..sources import load_image
    from ..stages.matrix import merge_cell
    from ..stages.work import chunk_image
    from ..stores.base import write_image
    from ..stores.layout import LayoutStore
    from .execute import REMOTE_HIT, from_remote, to_remote

    lr = plan.recipe
    todo = {n.names[0]: n for n in plan.nodes if n.stage in ("matrix", "work")}
    if not todo:
        return
    with LayoutStore.open_or_create(plan.layout) as store:
        images: dict[str, Image] = {}
        listings: dict[tuple[str, str], dict[str, str]] = {}

        def image(ref: str) -> Image:
            if ref not in images:
                images[ref] = load_image(lr.image_ref(ref), work=store, platform=options.platform,
                                         options=options, progress=progress)
            return images[ref]

        def make_cell(cell: Cell, key: str) -> Image:
            axes = [(a, v, image(ref)) for a, v, ref in cell.values]
            files = None
            if not cell.matrix.overwrite:
                for a, v, img in axes:
                    if (a, v) not in listings:
                        listings[(a, v)] = list_files(img)
                files = listings
            merged = merge_cell(axes, entrypoint_axis=cell.matrix.entrypoint, files=files,
                                overwrite=cell.matrix.overwrite)
            return merged.with_annotations({A_STAGE: "matrix", A_KEY: key,
                                            **{f"dev.regfp.axis.{a}": v for a, v, _ in cell.values}})

        def make_chunk(chunk: Chunk, key: str) -> Image:
            base_ref = _base_ref(lr, chunk.work)
            img = chunk_image(image(base_ref) if base_ref else None, chunk.items, index=chunk.index,
                              chunks=chunk.work.chunks, name=chunk.work.name, user=chunk.work.user,
                              mtime=options.epoch, store=store)
            return img.with_annotations({A_STAGE: "work", A_KEY: key})

        units: list[tuple[str, Callable[[str], Image]]] = [
            *((c.name, lambda key, c=c: make_cell(c, key)) for c in cells(lr)),
            *((c.name, lambda key, c=c: make_chunk(c, key)) for c in chunks(lr))]
        for name, make in units:
            node = todo.get(name)
            if node is None:
                continue
            if node.state == "cached":
                report.add(node, node.digest or "", True)
                continue
            hit = from_remote(options, node.key, store)
            desc = hit or write_image(store, make(node.key or ""))
            store.set_names({name: desc})
            if hit is None:
                to_remote(options, node.key, store, desc)
            report.add(node, desc.digest.text, hit is not None, REMOTE_HIT if hit else None)


def check_units(lr: LoadedRecipe) -> None:
    """Load-time checks for matrix and work sections that types alone cannot express."""
    names = [m.name for m in lr.recipe.matrix]
    if len(set(names)) != len(names):
        raise lr.error(("matrix",), "two matrices share a name")
    works = [w.name for w in lr.recipe.work]
    if len(set(works)) != len(works):
        raise lr.error(("work",), "two work sections share a name")
    for i, m in enumerate(lr.recipe.matrix):
        for axis, values in m.axes.items():
            for value, ref in values.items():
                _valid_ref(lr, ("matrix", i, "axes", axis, value), ref)
    for i, w in enumerate(lr.recipe.work):
        if w.base is not None:
            _valid_ref(lr, ("work", i, "base"), lr.channel_ref(w.base))


def _valid_ref(lr: LoadedRecipe, kp: tuple[str | int, ...], ref: str) -> None:
    from ..errors import RefError
    from ..refs import parse_ref

    if not ref.startswith(("oci:", "dir:", "docker://")) and "/" not in ref:
        raise lr.error(kp, f"{ref!r} is not an image reference (oci:PATH:NAME, dir:PATH or registry/repo:tag) "
                           "or a channel name")
    try:
        parse_ref(ref)
    except RefError as e:
        raise lr.error(kp, e.reason) from None
