"""One run of the engine: the recipe, the layout, the clock and options, and what it has found so far.

Everything a stage kind needs from outside comes through here: images by reference (each loaded once
per run), the layout store (opened for writing on first need, never in a plan), secrets (only when
executing), and the outcomes of the nodes evaluated before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..oci.descriptor import Descriptor, Platform
from ..oci.frozen import frozen_str_map
from ..oci.image import Image
from ..progress import SILENT, Progress
from ..recipe.load import LoadedRecipe
from ..refs import DirRef
from ..sources import BuildOptions, load_image
from ..stores.base import Store
from ..stores.layout import LayoutStore
from ..stores.null import NullStore
from ..values import valueclass
from .graph import NodeId, Outcome
from .snapshot import Snapshot

if TYPE_CHECKING:
    from ..stages.rollout import Ledger
    from .debug import DebugRequest
    from .source import Source

T = TypeVar("T")


@valueclass
class LedgerChange:
    """An operator's change to the release stream, applied before the stream converges (yank/unyank)."""

    release: int
    yanked: bool

    def apply(self, ledger: Ledger) -> Ledger:
        return ledger.set_yanked(self.release, self.yanked)


@dataclass
class Run:
    lr: LoadedRecipe
    layout: Path
    now: int
    options: BuildOptions
    progress: Progress = SILENT
    secrets: Mapping[str, str] | None = None  # env var -> value; None in a plan: keys are never touched
    dry: bool = False  # a plan: compute what is known, make and write nothing
    git_cache: Path | None = None
    cut: bool = True  # whether the rollout may cut a new release (False for a yank alone)
    channels: tuple[str, ...] | None = None  # patch only these channels (default: all)
    debug: DebugRequest | None = None  # a debug image to make (regfp debug-image)
    ledger_change: LedgerChange | None = None
    outcomes: dict[NodeId, Outcome] = field(default_factory=dict)
    source: Source | None = None
    _snapshot: Snapshot | None = None
    _store: LayoutStore | None = None
    _images: dict[tuple[str, str], Image] = field(default_factory=dict)
    _held: ExitStack = field(default_factory=ExitStack)
    memo: dict[str, Any] = field(default_factory=dict)  # per-run values a kind computes once
    _before_write: list[Callable[[], None]] = field(default_factory=list)

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            self._snapshot = Snapshot.of(self.layout)
        return self._snapshot

    @property
    def store(self) -> LayoutStore:
        """The output layout, opened (or created) for writing; never in a plan. The checks registered
        with ``before_write`` run first, so bad input fails with nothing written, not even the layout."""
        assert not self.dry, "a plan writes nothing"
        if self._store is None:
            while self._before_write:
                self._before_write.pop(0)()
            existing = self.snapshot.store
            self._store = existing.enter_session() if existing is not None else \
                self._held.enter_context(LayoutStore.open_or_create(self.layout))
            self._held.callback(self._store.close)
        return self._store

    @property
    def readable(self) -> LayoutStore | None:
        """The layout to read from: the one this run writes, else the one it found (None: none yet)."""
        return self._store or self.snapshot.store

    @property
    def work(self) -> Store:
        """Where images a reference needs are made (``dir:`` trees): the existing layout (writing a blob
        there moves no name), else the new one; in a plan nowhere (only their digests are needed)."""
        if self.dry:
            return NullStore()
        return self.snapshot.store or self.store

    def before_write(self, check: Callable[[], None]) -> None:
        """Run ``check`` before the layout is first opened for writing (at once if it is open already)."""
        if self._store is not None:
            check()
        else:
            self._before_write.append(check)

    def image(self, ref: str, *, platform: Platform | None = None) -> Image:
        """The image a recipe reference stands for (paths relative to the recipe), loaded once."""
        want = platform or self.options.platform
        cache_key = (ref, str(want))
        if cache_key not in self._images:
            # A dir: tree becomes an image of the platform asked for (the host's unless a recipe says).
            options = self.options if want == self.options.platform else replace(self.options, platform=want)
            parsed = self.lr.image_ref(ref)
            made = next((im for (r, _), im in self._images.items() if r == ref), None)
            if made is not None and isinstance(parsed, DirRef) and plain_tree(parsed):
                # The tree's layer is platform-neutral: made (compressed) once, for every platform.
                self._images[cache_key] = on_platform(made, want)
                return self._images[cache_key]
            # Only a dir: tree is made into an image (and needs the layout): reading an oci: or registry
            # image must not create the layout before the run's checks have passed.
            work = self.work if isinstance(parsed, DirRef) else None
            self._images[cache_key] = load_image(parsed, work=work, platform=want, options=options,
                                                 progress=self.progress)
        return self._images[cache_key]

    def hold(self, lock: str) -> None:
        """Take a layout lock until the run ends (after its names moved): e.g. ``rollout``, so two
        processes never cut the same release number. Taking it writes nothing."""
        if self.dry:
            return
        store = self.readable
        if store is None:
            store = self.store
        else:
            self._held.callback(store.close)
        self._held.enter_context(store.exclusive(lock))

    def hold_context(self, context: AbstractContextManager[T]) -> T:
        """Enter ``context`` until the run ends."""
        return self._held.enter_context(context)

    def at_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the run ends (e.g. to save a cache once, not per node)."""
        self._held.callback(callback)

    def outcome(self, node: NodeId) -> Outcome:
        return self.outcomes[node]

    def close(self) -> None:
        self._held.close()
        self._store = None

    def entry(self, desc: Descriptor, **annotations: str) -> Descriptor:
        """A descriptor as an index entry: plain, plus the given entry annotations (the stage key...)."""
        return Descriptor(desc.media_type, desc.digest, desc.size, annotations=frozen_str_map(annotations),
                          platform=desc.platform)


def plain_tree(ref: DirRef) -> bool:
    """Whether a ``dir:`` reference is a plain directory tree (not a directory skopeo wrote an image to)."""
    from ..stores.skopeodir import transport_version

    return transport_version(Path(ref.path)) is None


def on_platform(image: Image, platform: Platform) -> Image:
    """A ``dir:`` tree's image made for another platform: the same layer blob, only the config's
    platform fields changed. Byte for byte the image the tree gives when made for ``platform``: that
    config is the same canonical document but for those fields."""
    return image.with_config(image.config.with_fields(os=platform.os, architecture=platform.architecture,
                                                      variant=platform.variant))
