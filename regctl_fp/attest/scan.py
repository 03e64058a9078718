"""Finding packages in layers: a scanner fed one layer's entries in order, by a layer writer or by one
streaming read of a stored layer, and the overlay of every layer's findings into the image's inventory.

Only the content of the few files whose path says they are package databases is looked at (``pkgdb``),
each up to ``member`` bytes and up to ``total`` bytes per layer; names deeper than ``depth`` components
are not looked at. What was passed over for a limit is recorded, so the SBOM can say so. Nothing under
``var/run/secrets`` or ``run/secrets`` (where identity keys live) is ever read, even if a recipe names it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..layers import Entry
from ..layertar import open_tar
from ..oci.image import Layer
from ..values import valueclass
from . import pkgdb
from .pkgdb import DbKind, Package

SECRET_DIRS = ("var/run/secrets/", "run/secrets/")
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


@valueclass
class ScanLimits:
    member: int = 32 << 20  # one database file (a large Debian status file is a few MiB)
    total: int = 128 << 20  # all database files of one layer
    depth: int = 48  # path components
    files: int = 20_000  # database files read per layer
    packages: int = 50_000  # records listed from one database file


LIMITS = ScanLimits()


@valueclass
class FileRecord:
    """A lockfile the recipe names, as the SBOM lists it: checksums and size (never its content)."""

    sha1: str
    sha256: str
    size: int


@dataclass
class LayerFindings:
    """What one layer holds of interest: parsed databases by path, lockfiles, its whiteouts."""

    dbs: dict[str, tuple[Package, ...]] = field(default_factory=dict)
    lockfiles: dict[str, FileRecord] = field(default_factory=dict)
    os_release: dict[str, str] = field(default_factory=dict)  # path -> ID
    removed: list[str] = field(default_factory=list)  # whiteouts: these paths and all below them
    opaque: list[str] = field(default_factory=list)  # opaque directories: everything below from lower layers
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


def _norm(name: str) -> str:
    while name.startswith(("./", "/")):
        name = name[2:] if name.startswith("./") else name[1:]
    return name.rstrip("/")


class LayerScanner:
    """Fed a layer's entries in order: ``wants(name, size)`` says how many bytes of the entry's content
    to read (0: none; then pass them to ``add``); whiteouts are noted by their names alone. The result
    is ``findings``."""

    def __init__(self, lockfiles: Sequence[str] = (), limits: ScanLimits = LIMITS) -> None:
        self._lockfiles = tuple(_norm(p) for p in lockfiles)
        self._limits = limits
        self._taken = 0
        self.findings = LayerFindings()

    def wants(self, name: str, size: int) -> int:
        path = _norm(name)
        if path.startswith(SECRET_DIRS):
            return 0
        f = self.findings
        if path.count("/") >= self._limits.depth:
            if self._kind(path) is not None:
                f.skipped.append((path if len(path) <= 200 else path[:200] + "...",
                                  f"deeper than {self._limits.depth} components"))
            return 0
        parent, _, base = path.rpartition("/")
        if base.startswith(_WHITEOUT):
            if base == _OPAQUE:
                f.opaque.append(parent)
            else:
                f.removed.append(f"{parent}/{base[len(_WHITEOUT):]}" if parent else base[len(_WHITEOUT):])
            return 0
        kind = self._kind(path)
        if kind is None:
            return 0
        cap = pkgdb.METADATA_HEAD if kind == "os-release" else pkgdb.read_limit(kind, path)
        prefix = kind in ("dist-info", "os-release")  # only the head of these is needed
        need = min(size, cap) if prefix and cap is not None else size
        most = self._limits.member if prefix or cap is None else min(cap, self._limits.member)
        why = (f"larger than the {most}-byte limit for such a file" if need > most
               else "over the per-layer total" if self._taken + need > self._limits.total
               else "over the per-layer file count" if len(f.dbs) + len(f.lockfiles) >= self._limits.files
               else "")
        if why:
            f.skipped.append((path, why))
            return 0
        self._taken += need
        return max(need, 1)  # an empty database is still a database (it replaces the one below)

    def _kind(self, path: str) -> DbKind | Literal["os-release"] | None:
        if path in pkgdb.OS_RELEASE:
            return "os-release"
        return pkgdb.which(path, self._lockfiles)

    def add(self, name: str, data: bytes) -> None:
        """The content of an entry ``wants`` asked for (its first ``wants`` bytes)."""
        path = _norm(name)
        kind = self._kind(path)
        if kind == "os-release":
            self.findings.os_release[path] = pkgdb.os_release_id(data)
            return
        if kind is None:
            return
        if kind == "lockfile":  # SPDX 2.3 requires a SHA1 checksum for every file
            self.findings.lockfiles[path] = FileRecord(hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest(),
                                                       len(data))
        found, more = pkgdb.parse(kind, path, data, self._limits.packages)
        if more:
            self.findings.skipped.append((path, f"more than {self._limits.packages} packages; the rest not listed"))
        self.findings.dbs[path] = tuple(sorted(set(found)))


def scan_entries(entries: Iterable[Entry], lockfiles: Sequence[str] = (), limits: ScanLimits = LIMITS) -> LayerFindings:
    """Findings of a layer about to be written from ``entries``, reading only the matching files (whiteouts
    are files too)."""
    scanner = LayerScanner(lockfiles, limits)
    for e in entries:
        name = e.path.decode("utf-8", "surrogateescape")
        n = scanner.wants(name, e.size) if e.kind == "file" else 0
        if n and e.data is not None:
            scanner.add(name, e.data[:n])
        elif n and e.opener is not None:
            with e.opener() as f:
                scanner.add(name, f.read(n))
    return scanner.findings


def scan_layer(layer: Layer, lockfiles: Sequence[str] = (), limits: ScanLimits = LIMITS) -> LayerFindings:
    """Findings of a stored layer, in one streaming read of its blob (verified against its digest)."""
    scanner = LayerScanner(lockfiles, limits)
    with open_tar(layer) as tar:
        for member in tar:
            n = scanner.wants(member.name, member.size) if member.isreg() else 0
            if n:
                data = tar.extractfile(member)
                assert data is not None
                scanner.add(member.name, data.read(n))
    return scanner.findings


@dataclass(frozen=True, order=True)
class Found:
    package: Package
    layer: int  # index of the layer that brought it (the lowest of the layers it is unchanged since)
    where: str  # the database or lockfile it is recorded in


@valueclass
class Inventory:
    """The image's packages and lockfiles after the layers are stacked (whiteouts applied)."""

    packages: tuple[Found, ...]
    lockfiles: tuple[tuple[str, FileRecord, int], ...]  # (path, record, layer index)
    os_id: str
    skipped: tuple[tuple[int, str, str], ...]  # (layer index, path, why)


def _drop(state: dict[str, object], removed: Sequence[str], opaque: Sequence[str]) -> None:
    for path in list(state):
        if any(path == r or path.startswith(r + "/") for r in removed) or \
                any(path.startswith(d + "/") or not d for d in opaque):
            del state[path]


def inventory(findings: Sequence[LayerFindings]) -> Inventory:
    """The overlay of per-layer findings (lowest layer first): a database file in a higher layer replaces
    the lower one, a whiteout removes it; a package keeps the layer it first appeared in unchanged."""
    dbs: dict[str, dict[Package, int]] = {}
    locks: dict[str, tuple[FileRecord, int]] = {}
    osr: dict[str, str] = {}
    skipped = []
    for i, f in enumerate(findings):
        for state in (dbs, locks, osr):
            _drop(state, f.removed, f.opaque)  # type: ignore[arg-type]
        for path, _ in f.skipped:  # replaced by a file not read: what the lower one said no longer holds
            if path not in f.dbs:
                dbs.pop(path, None)
                locks.pop(path, None)
        for path, pkgs in f.dbs.items():
            before = dbs.get(path, {})
            dbs[path] = {p: before.get(p, i) for p in pkgs}
        for path, rec in f.lockfiles.items():
            locks[path] = (rec, i)
        osr.update(f.os_release)
        skipped += [(i, path, why) for path, why in f.skipped]
    found = sorted(Found(p, layer, path) for path, pkgs in dbs.items() for p, layer in pkgs.items())
    os_id = next((osr[p] for p in pkgdb.OS_RELEASE if osr.get(p)), "")
    return Inventory(tuple(found), tuple(sorted((p, r, i) for p, (r, i) in locks.items())), os_id, tuple(skipped))


def scan_image_layers(layers: Sequence[Layer], lockfiles: Sequence[str] = (),
                      limits: ScanLimits = LIMITS) -> list[LayerFindings]:
    """Findings of each layer, each read once."""
    return [scan_layer(la, lockfiles, limits) for la in layers]

