"""The build stage: a Git tree at a commit, laid onto a base image as dependency, app and run layers.

Layering follows jib/ko: the recipe's dependency paths go into their own layer first, so a change to
application code produces a new application layer and reuses the dependency layer's blob.
"""

from __future__ import annotations

import os
import posixpath
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property, partial
from pathlib import Path
from typing import Protocol

from ..errors import LayerInputError, RegfpError
from ..gitsource import BlobReader, Commit, GitError, Repository, TreeEntry
from ..imagepath import WHITEOUT_REASON, whiteout_component
from ..layers import Entry, collect_tree, total_size, write_layer
from ..oci.config import History, ImageConfig
from ..oci.descriptor import Descriptor, Platform
from ..oci.image import Image, Layer
from ..oci.mediatypes import Compression
from ..oci.streams import Opener
from ..progress import SILENT, Progress
from ..regularfile import open_regular
from ..stores.base import Store
from ..timeutil import parse_duration, rfc3339
from ..values import valueclass

STAGE = "build"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class CopyRule(Protocol):
    """What the build needs of a copy rule (the recipe's ``build.copy`` entries satisfy it)."""

    @property
    def from_(self) -> str: ...
    @property
    def to(self) -> str: ...
    @property
    def chown(self) -> str | None: ...


class RunStep(Protocol):
    """What the build needs of the host-side step (``build.run``)."""

    @property
    def command(self) -> tuple[str, ...] | str: ...
    @property
    def outputs(self) -> Sequence[CopyRule]: ...
    @property
    def env(self) -> Mapping[str, str]: ...
    @property
    def timeout(self) -> str: ...


class Build(Protocol):
    """What the build needs of the recipe's ``build`` section: the stage never imports the recipe
    language, the engine hands it the section."""

    @property
    def copy(self) -> Sequence[CopyRule]: ...
    @property
    def dependencies(self) -> Sequence[str]: ...
    @property
    def run(self) -> RunStep | None: ...
    @property
    def workdir(self) -> str | None: ...
    @property
    def entrypoint(self) -> Sequence[str] | None: ...
    @property
    def cmd(self) -> Sequence[str] | None: ...
    @property
    def env(self) -> Mapping[str, str]: ...
    @property
    def user(self) -> str | None: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def ports(self) -> Sequence[str]: ...
    @property
    def compression(self) -> Compression: ...


class RunStepFailed(RegfpError):
    def __init__(self, command: str, code: int | None, output: str) -> None:
        status = "timed out" if code is None else f"exited {code}"
        tail = "\n".join(output.rstrip().splitlines()[-40:])
        super().__init__(f"run step {command!r} {status}" + (f"; its output:\n{tail}" if tail else ""))
        self.command = command
        self.code = code
        self.output = output


@valueclass
class SourceInputs:
    spec: Build
    repo: Repository
    commit: Commit
    subdir: str

    @cached_property
    def tree(self) -> list[TreeEntry]:
        """The commit's tree below ``subdir``, listed once for the checks and the build."""
        return self.repo.tree(self.commit.sha, self.subdir)

    @property
    def where(self) -> str:
        return f"{self.repo.shown} at {self.commit.sha[:12]}" + (f" in {self.subdir}" if self.subdir else "")

    def layer_time(self, tree_paths: list[str]) -> int:
        """A layer's mtime: the last commit that changed its paths, so a layer whose files did not change
        is byte-identical across commits (and its blob is reused)."""
        prefix = self.subdir.strip("/")
        full = [posixpath.normpath(f"{prefix}/{p}") if prefix else p for p in tree_paths]
        return self.repo.last_change(self.commit.sha, full) or self.commit.time


@contextmanager
def run_outputs(src: SourceInputs, target: Platform | None = None) -> Iterator[list[Entry]]:
    """Check the tree against the copy rules and run the recipe's host-side step (if any), before
    anything is written; the entries it yields can be read until the context ends. ``target``: the
    platform a per-platform step builds for (it sees TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT)."""
    check_tree(src)
    with tempfile.TemporaryDirectory(prefix="regfp-run-") as tmp:
        yield _run_step(src.spec.run, src, Path(tmp), target) if src.spec.run is not None else []


def build(src: SourceInputs, base: Image, annotations: dict[str, str], store: Store,
          run_entries: list[Entry], progress: Progress = SILENT) -> Image:
    """The built image; its layer blobs are written to ``store`` (no names are moved here)."""
    spec = src.spec
    created = rfc3339(src.commit.time)
    tree = src.tree
    image = base
    with src.repo.blobs() as reader:
        deps, app = _map_tree(tree, spec, reader, src)
        layers = [("dependencies", deps, src.layer_time(list(spec.dependencies)) if deps else 0),
                  ("application", app, src.layer_time(["."])),
                  ("run", run_entries, src.commit.time)]
        for label, entries, mtime in layers:
            if not entries:
                continue
            on_bytes = progress.task(f"{label} layer", total_size(entries))
            written = write_layer(entries, store.blob_sink(), mtime=mtime, compression=spec.compression,
                                  on_bytes=on_bytes)
            desc = written.descriptor
            layer = Layer(desc, written.diff_id, _opener(store, desc))
            image = image.appended(layer, History(created=created, created_by=f"regfp build: {label}"))
    return image.with_config(_config(image, spec, created)).with_annotations(annotations)


def _opener(store: Store, desc: Descriptor) -> Opener:
    return lambda: store.open_blob(desc)


def _config(image: Image, spec: Build, created: str) -> ImageConfig:
    cfg = image.config.with_fields(created=created)
    if spec.env:
        cfg = cfg.with_env(spec.env)
    updates: dict[str, object] = {}
    if spec.entrypoint is not None:
        updates["Entrypoint"] = list(spec.entrypoint)
        if spec.cmd is None:
            updates["Cmd"] = None  # as in a Dockerfile: a new entrypoint drops the base's command
    if spec.cmd is not None:
        updates["Cmd"] = list(spec.cmd)
    if spec.workdir is not None:
        updates["WorkingDir"] = spec.workdir
    if spec.user is not None:
        updates["User"] = spec.user
    if spec.ports:
        ports = dict(cfg.container.get("ExposedPorts") or {})
        for p in spec.ports:
            ports[p if "/" in p else f"{p}/tcp"] = {}
        updates["ExposedPorts"] = dict(sorted(ports.items()))
    if updates:
        cfg = cfg.with_container(**updates)
    if spec.labels:
        cfg = cfg.with_labels(spec.labels)
    return cfg


# ---- tree -> entries ------------------------------------------------------------------------------

def _owner(rule: CopyRule) -> tuple[int, int]:
    if rule.chown is None:
        return 0, 0
    uid, _, gid = rule.chown.partition(":")
    return int(uid), int(gid or uid)


def _norm(path: str) -> bytes:
    p = posixpath.normpath(path) if path else "."
    return b"" if p == "." else os.fsencode(p)


@valueclass
class _Placed:
    """Something a copy rule puts at a path in the image: a tree entry, or a directory it implies."""

    rule: CopyRule
    source: TreeEntry | None  # None: a directory


def check_tree(src: SourceInputs) -> None:
    """Every problem the copy rules have with this commit's tree (missing paths, submodules, whiteout
    names, two rules writing one path), found without reading a file, so it can run before anything
    is written."""
    _placements(src.tree, src.spec, src.where)


def _placements(tree: list[TreeEntry], spec: Build,
                where: str) -> tuple[dict[bytes, _Placed], dict[bytes, _Placed]]:
    """What goes where in the dependency layer and in the application layer, from the copy rules."""
    by_path = {e.path: e for e in tree}
    deps = [_norm(d) for d in spec.dependencies]
    for d, text in zip(deps, spec.dependencies, strict=True):
        if d not in by_path and not any(p.startswith(d + b"/") for p in by_path):
            raise GitError(f"dependency path {text!r}: no such file or directory in {where}")
    dep_layer: dict[bytes, _Placed] = {}
    app_layer: dict[bytes, _Placed] = {}
    for rule in spec.copy:
        src = _norm(rule.from_)
        to = rule.to.strip("/").encode()
        picked: list[tuple[bytes, TreeEntry]]  # (path in image, tree entry)
        if src in by_path:
            dest = to + b"/" + src.rpartition(b"/")[2] if rule.to.endswith("/") else to
            picked = [(dest, by_path[src])]
            dest_root = None
        else:
            under = [e for e in tree if not src or e.path.startswith(src + b"/")]
            if not under:
                raise GitError(f"copy from {rule.from_!r}: no such file or directory in {where}")
            cut = len(src) + 1 if src else 0
            picked = [((to + b"/" if to else b"") + e.path[cut:], e) for e in under]
            dest_root = to
        filled: list[dict[bytes, _Placed]] = []  # the layers this rule put something in
        for dest, te in picked:
            shown = f"{where}: {te.path.decode('utf-8', 'replace')}"
            if te.is_submodule:
                raise GitError(f"{te.path.decode('utf-8', 'replace')} is a submodule; regfp does not copy "
                               "submodules")
            if whiteout_component(dest) is not None:
                raise LayerInputError(shown, f"{WHITEOUT_REASON}; rename it in the repository (copy rule "
                                             f"from {rule.from_!r} to {rule.to!r})")
            is_dep = any(te.path == d or te.path.startswith(d + b"/") for d in deps)
            target = dep_layer if is_dep else app_layer
            _put(target, dest, _Placed(rule, te))
            if not any(t is target for t in filled):
                filled.append(target)
            for d in _dirs_between(dest_root, dest):
                _put(target, d, _Placed(rule, None))
        if dest_root:
            # The rule's target directory goes with its files: a rule that copies only dependencies
            # leaves nothing (not even an empty directory entry) in the application layer.
            for target in filled:
                _put(target, dest_root, _Placed(rule, None))
    return dep_layer, app_layer


def _map_tree(tree: list[TreeEntry], spec: Build, reader: BlobReader,
              src: SourceInputs) -> tuple[list[Entry], list[Entry]]:
    """Entries of the dependency layer and of the application layer, from the copy rules."""
    where = src.where
    dep_layer, app_layer = _placements(tree, spec, where)
    return _entries(dep_layer, reader, where), _entries(app_layer, reader, where)


def _entries(layer: dict[bytes, _Placed], reader: BlobReader, where: str) -> list[Entry]:
    out = []
    for dest, placed in layer.items():
        uid, gid = _owner(placed.rule)
        if placed.source is None:
            out.append(Entry(dest, "dir", 0o755, uid=uid, gid=gid))
        else:
            out.append(_entry(dest, placed.source, reader, uid, gid, where))
    return out


def _dirs_between(root: bytes | None, dest: bytes) -> list[bytes]:
    """Directories from ``root`` (inclusive) down to ``dest``'s parent; none for a single-file copy."""
    if root is None:
        return []
    out = []
    parent = dest.rpartition(b"/")[0]
    while parent and (parent == root or parent.startswith(root + b"/") or not root):
        out.append(parent)
        if parent == root:
            break
        parent = parent.rpartition(b"/")[0]
    return out


def _entry(dest: bytes, te: TreeEntry, reader: BlobReader, uid: int, gid: int, where: str) -> Entry:
    origin = f"{where}: {te.path.decode('utf-8', 'replace')}"
    if te.is_symlink:
        return Entry(dest, "symlink", 0o777, target=reader.read(te.oid), uid=uid, gid=gid, origin=origin)
    mode = 0o755 if te.mode & 0o111 else 0o644
    return Entry(dest, "file", mode, size=te.size, opener=_blob_opener(reader, te.oid), uid=uid, gid=gid,
                 origin=origin)


def _blob_opener(reader: BlobReader, oid: str) -> Opener:
    return lambda: reader.open(oid)


def _put(layer: dict[bytes, _Placed], dest: bytes, placed: _Placed) -> None:
    old = layer.get(dest)
    if old is None:
        layer[dest] = placed
    elif old.source is None and placed.source is None:
        return  # a directory two rules both imply: the first rule's owner stays
    else:
        shown = "/" + dest.decode("utf-8", "replace")
        rule = placed.rule
        raise LayerInputError(shown, f"two copy rules put something at this path (the second: from "
                                     f"{rule.from_!r} to {rule.to!r})")


# ---- run step ----------------------------------------------------------------------------------------

def _run_step(run: RunStep, src: SourceInputs, tmp: Path, target: Platform | None) -> list[Entry]:
    export = tmp / "tree"
    export.mkdir()
    src.repo.export(src.commit.sha, export)
    cwd = export / src.subdir if src.subdir else export
    home = tmp / "home"
    home.mkdir()
    env = {"PATH": CLEAN_PATH, "HOME": str(home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
           "SOURCE_DATE_EPOCH": str(src.commit.time), **_target_env(target), **run.env}
    argv = ["/bin/sh", "-c", run.command] if isinstance(run.command, str) else list(run.command)
    shown = run.command if isinstance(run.command, str) else " ".join(run.command)
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=parse_duration(run.timeout))
    except subprocess.TimeoutExpired as e:
        raise RunStepFailed(shown, None, (e.output or b"").decode("utf-8", "replace")) from None
    except OSError as e:
        raise RunStepFailed(shown, 127, str(e)) from None
    if proc.returncode != 0:
        raise RunStepFailed(shown, proc.returncode, proc.stdout.decode("utf-8", "replace"))
    entries: list[Entry] = []
    for rule in run.outputs:
        produced = (cwd / rule.from_).resolve()
        if not produced.is_relative_to(export.resolve()):
            raise LayerInputError(rule.from_, "run output escapes the exported tree")
        uid, gid = _owner(rule)
        to = rule.to.strip("/")
        if produced.is_dir():
            entries.append(Entry(to.encode(), "dir", 0o755, uid=uid, gid=gid))
            entries.extend(collect_tree(produced, prefix=to, uid=uid, gid=gid))
        elif produced.is_file():
            dest = f"{to}/{produced.name}" if rule.to.endswith("/") else to
            if whiteout_component(os.fsencode(dest)) is not None:
                raise LayerInputError(str(produced), WHITEOUT_REASON)
            mode = 0o755 if os.stat(produced).st_mode & 0o111 else 0o644
            entries.append(Entry(dest.encode(), "file", mode, size=produced.stat().st_size,
                                 opener=partial(open_regular, produced), uid=uid, gid=gid, origin=str(produced)))
        else:
            raise RunStepFailed(shown, 0, f"declared output {rule.from_!r} was not produced")
    return entries


def _target_env(target: Platform | None) -> dict[str, str]:
    """The variables a per-platform step builds for, named as Docker's build arguments are."""
    if target is None:
        return {}
    return {"TARGETPLATFORM": str(target), "TARGETOS": target.os, "TARGETARCH": target.architecture,
            "TARGETVARIANT": target.variant or ""}
