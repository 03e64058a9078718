"""What differs between two images: layers (by digest), config fields, annotations, and files.

Files are compared on the merged filesystem each image presents (layers applied in order, OCI
whiteouts and opaque directories honoured), so a path a later layer deletes is a removal and a path
rewritten with the same bytes is no change. Layers are streamed (decompressed on the fly), each
distinct blob once; file contents are hashed only where the layer they come from is not shared, and
a second pass hashes the few files whose sameness still depends on a shared layer. Times are not
compared: regfp normalises them, and a rebuild that only touched mtimes changed nothing.

Two image indexes are compared platform by platform: each platform both hold is an image diff, a
platform only one holds is added or removed (platforms matched as the image-spec compares them).
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import field, replace
from typing import Any, Literal

from .layertar import open_tar
from .oci import mediatypes as mt
from .oci.descriptor import Platform
from .oci.digest import Digest
from .oci.image import Image, Layer
from .values import valueclass

CHUNK = 1 << 20
_WH = ".wh."
_OPAQUE = ".wh..wh..opq"
TITLE = "org.opencontainers.image.title"


FileKind = Literal["file", "dir", "symlink", "hardlink", "other"]
Change = Literal["added", "removed", "modified"]


@valueclass
class FileInfo:
    kind: FileKind
    mode: int
    uid: int
    gid: int
    size: int
    link: str = ""
    content: str | None = field(default=None, compare=False)  # sha256 hex; None where not hashed
    layer: Digest | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "mode": f"{self.mode:04o}", "uid": self.uid, "gid": self.gid,
                               "size": self.size}
        if self.link:
            out["link"] = self.link
        if self.content:
            out["sha256"] = self.content
        return out


@valueclass
class FileChange:
    path: str
    change: Change
    before: FileInfo | None
    after: FileInfo | None
    whiteout: bool = False  # B deletes it with a whiteout (rather than by losing a layer)

    @property
    def details(self) -> list[str]:
        a, b = self.before, self.after
        if a is None or b is None:
            return ["whiteout"] if self.whiteout else []
        out = []
        if a.kind != b.kind:
            out.append(f"{a.kind} -> {b.kind}")
        if a.size != b.size:
            out.append(f"size {a.size} -> {b.size}")
        elif a.kind == b.kind == "file" and a.content != b.content:
            out.append("content")
        if a.mode != b.mode:
            out.append(f"mode {a.mode:04o} -> {b.mode:04o}")
        if (a.uid, a.gid) != (b.uid, b.gid):
            out.append(f"owner {a.uid}:{a.gid} -> {b.uid}:{b.gid}")
        if a.link != b.link:
            out.append(f"link {a.link} -> {b.link}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "change": self.change,
                "before": self.before.to_json() if self.before else None,
                "after": self.after.to_json() if self.after else None,
                "whiteout": self.whiteout, "details": self.details}


@valueclass
class LayerRef:
    index: int
    layer: Layer

    def to_json(self) -> dict[str, Any]:
        d = self.layer.descriptor
        out: dict[str, Any] = {"index": self.index, "digest": d.digest.text, "size": d.size,
                               "mediaType": d.media_type}
        if TITLE in d.annotations:
            out["title"] = d.annotations[TITLE]
        return out


@valueclass
class ValueChange:
    field: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "a": self.before, "b": self.after}


@valueclass
class ImageDiff:
    a: Image
    b: Image
    shared: tuple[LayerRef, ...]  # B's layers that A has too (B's index)
    removed: tuple[LayerRef, ...]  # A's layers that B lacks (A's index)
    added: tuple[LayerRef, ...]  # B's layers that A lacks (B's index)
    common_prefix: int
    config: tuple[ValueChange, ...]
    annotations: tuple[ValueChange, ...]
    files: tuple[FileChange, ...] | None  # None: not computed (artifacts, or layers that are not tars)

    @property
    def identical(self) -> bool:
        return self.a.digest == self.b.digest

    def to_json(self) -> dict[str, Any]:
        files = None if self.files is None else [f.to_json() for f in self.files]
        return {
            "identical": self.identical,
            "layers": {"shared": [x.to_json() for x in self.shared], "removed": [x.to_json() for x in self.removed],
                       "added": [x.to_json() for x in self.added], "commonPrefix": self.common_prefix},
            "config": [c.to_json() for c in self.config],
            "annotations": [c.to_json() for c in self.annotations],
            "files": files,
            "summary": self.summary(),
        }

    def summary(self) -> dict[str, int]:
        out = {"layersShared": len(self.shared), "layersRemoved": len(self.removed), "layersAdded": len(self.added),
               "configChanges": len(self.config), "annotationChanges": len(self.annotations)}
        for kind in ("added", "removed", "modified"):
            out[f"files{kind.capitalize()}"] = sum(1 for f in self.files or () if f.change == kind)
        return out


def diff_images(a: Image, b: Image, *, files: bool = True) -> ImageDiff:
    a_digests = [la.digest for la in a.layers]
    b_digests = [la.digest for la in b.layers]
    in_a, in_b = set(a_digests), set(b_digests)
    prefix = 0
    while prefix < min(len(a_digests), len(b_digests)) and a_digests[prefix] == b_digests[prefix]:
        prefix += 1
    changes: tuple[FileChange, ...] | None = None
    tars = all(_is_tar(la) for la in (*a.layers, *b.layers))
    if files and a.is_container_image and b.is_container_image and tars:
        changes = () if a_digests == b_digests else tuple(_file_changes(a, b, in_a & in_b))
    return ImageDiff(
        a=a, b=b,
        shared=tuple(LayerRef(i, la) for i, la in enumerate(b.layers) if la.digest in in_a),
        removed=tuple(LayerRef(i, la) for i, la in enumerate(a.layers) if la.digest not in in_b),
        added=tuple(LayerRef(i, la) for i, la in enumerate(b.layers) if la.digest not in in_a),
        common_prefix=prefix,
        config=tuple(config_changes(a, b)),
        annotations=tuple(_map_changes("annotation", a.annotations, b.annotations)),
        files=changes,
    )


PlatformChange = Literal["same", "modified", "added", "removed"]


@valueclass
class PlatformDiff:
    platform: Platform
    a: Image | None  # None: only B has this platform
    b: Image | None
    diff: ImageDiff | None  # when both have it

    @property
    def change(self) -> PlatformChange:
        if self.diff is None:
            return "added" if self.a is None else "removed"
        return "same" if self.diff.identical else "modified"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"platform": str(self.platform), "change": self.change,
                               "a": self.a.digest.text if self.a else None, "b": self.b.digest.text if self.b else None}
        if self.diff is not None:
            doc.update({k: v for k, v in self.diff.to_json().items() if k != "identical"})
        return doc


@valueclass
class IndexDiff:
    a: Digest  # the two indexes
    b: Digest
    platforms: tuple[PlatformDiff, ...]  # A's platforms in A's order, then those only B has
    annotations: tuple[ValueChange, ...]  # of the indexes themselves

    @property
    def identical(self) -> bool:
        return self.a == self.b

    def summary(self) -> dict[str, int]:
        return {f"platforms{c.capitalize()}": sum(1 for p in self.platforms if p.change == c)
                for c in ("same", "modified", "added", "removed")}

    def to_json(self) -> dict[str, Any]:
        return {"identical": self.identical, "platforms": [p.to_json() for p in self.platforms],
                "annotations": [c.to_json() for c in self.annotations], "summary": self.summary()}


def diff_indexes(a: tuple[Digest, Mapping[str, str], Mapping[Platform, Image]],
                 b: tuple[Digest, Mapping[str, str], Mapping[Platform, Image]], *, files: bool = True) -> IndexDiff:
    """Each side: the index's digest, its annotations, and its image for each platform."""
    (a_digest, a_ann, a_images), (b_digest, b_ann, b_images) = a, b

    def find(p: Platform, images: Mapping[Platform, Image]) -> Image | None:
        return next((im for q, im in images.items() if q.matches(p) and p.matches(q)), None)

    out = []
    for p, image in a_images.items():
        other = find(p, b_images)
        out.append(PlatformDiff(p, image, other, None if other is None else diff_images(image, other, files=files)))
    out += [PlatformDiff(p, None, image, None) for p, image in b_images.items() if find(p, a_images) is None]
    return IndexDiff(a_digest, b_digest, tuple(out), tuple(_map_changes("annotation", a_ann, b_ann)))


def _is_tar(layer: Layer) -> bool:
    return layer.media_type in mt.LAYER_COMPRESSION


# -- config ---------------------------------------------------------------------------------------------
def config_changes(a: Image, b: Image) -> list[ValueChange]:
    out: list[ValueChange] = []
    if a.config_media_type != b.config_media_type:
        out.append(ValueChange("mediaType", a.config_media_type, b.config_media_type))
    if a.artifact_type != b.artifact_type:
        out.append(ValueChange("artifactType", a.artifact_type, b.artifact_type))
    if not (a.is_container_image and b.is_container_image):
        if a.config_descriptor.digest != b.config_descriptor.digest:
            out.append(ValueChange("config", a.config_descriptor.digest.text, b.config_descriptor.digest.text))
        return out
    ca, cb = a.config, b.config
    for name, va, vb in (("platform", str(ca.platform), str(cb.platform)), ("created", ca.created, cb.created),
                         ("Entrypoint", _list(ca.entrypoint), _list(cb.entrypoint)),
                         ("Cmd", _list(ca.cmd), _list(cb.cmd)), ("User", ca.user, cb.user),
                         ("WorkingDir", ca.workdir, cb.workdir),
                         ("StopSignal", ca.container.get("StopSignal"), cb.container.get("StopSignal"))):
        if va != vb:
            out.append(ValueChange(name, va, vb))
    out.extend(_map_changes("Env", _env(ca.env), _env(cb.env)))
    out.extend(_map_changes("Labels", ca.labels, cb.labels))
    for key in ("ExposedPorts", "Volumes"):
        sa, sb = set(ca.container.get(key) or ()), set(cb.container.get(key) or ())
        out.extend(ValueChange(f"{key}[{k}]", None, k) for k in sorted(sb - sa))
        out.extend(ValueChange(f"{key}[{k}]", k, None) for k in sorted(sa - sb))
    return out


def _list(value: Iterable[str] | None) -> list[str] | None:
    return None if value is None else list(value)


def _env(env: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _map_changes(what: str, a: Mapping[str, str], b: Mapping[str, str]) -> list[ValueChange]:
    return [ValueChange(f"{what}[{k}]", a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


# -- files ----------------------------------------------------------------------------------------------
_Event = tuple[Literal["entry", "whiteout", "opaque"], str, FileInfo | None]  # (kind, path, info)


def _file_changes(a: Image, b: Image, shared: set[Digest]) -> list[FileChange]:
    scans: dict[Digest, list[_Event]] = {}
    for layer in (*a.layers, *b.layers):
        if layer.digest not in scans:
            scans[layer.digest] = _scan(layer, hash_all=layer.digest not in shared)
    fs_a, _ = _merge(a.layers, scans)
    fs_b, whiteouts_b = _merge(b.layers, scans)
    # Same metadata, different layers, and a content hash missing on one side: hash those files.
    need: dict[Digest, set[str]] = {}
    for path in fs_a.keys() & fs_b.keys():
        x, y = fs_a[path], fs_b[path]
        if x == y and x.kind == "file" and x.layer != y.layer and (x.content is None or y.content is None):
            for info in (x, y):
                if info.content is None and info.layer is not None:
                    need.setdefault(info.layer, set()).add(path)
    if need:
        by_digest = {la.digest: la for la in (*a.layers, *b.layers)}
        hashes = {d: _hash_paths(by_digest[d], paths) for d, paths in need.items()}
        for fs in (fs_a, fs_b):
            for path, info in fs.items():
                if info.content is None and info.layer in hashes and path in hashes[info.layer]:
                    fs[path] = replace(info, content=hashes[info.layer][path])
    out: list[FileChange] = []
    for path in sorted(fs_a.keys() | fs_b.keys()):
        before, after = fs_a.get(path), fs_b.get(path)
        if before is None:
            out.append(FileChange(path, "added", None, after))
        elif after is None:
            out.append(FileChange(path, "removed", before, None, whiteout=path in whiteouts_b))
        elif before != after or (before.kind == "file" and before.layer != after.layer
                                 and before.content != after.content):
            out.append(FileChange(path, "modified", before, after))
    return out


def _norm(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _scan(layer: Layer, *, hash_all: bool) -> list[_Event]:
    """Every entry of the layer in order, whiteouts as their own events; file contents hashed if asked."""
    events: list[_Event] = []
    with open_tar(layer) as tar:  # a broken tar is CorruptLayer naming the layer
        for member in tar:
            path = _norm(member.name)
            if not path:
                continue
            base = posixpath.basename(path)
            parent = posixpath.dirname(path)
            if base == _OPAQUE:
                events.append(("opaque", parent, None))
                continue
            if base.startswith(_WH):
                events.append(("whiteout", posixpath.join(parent, base[len(_WH):]), None))
                continue
            content = _hash_member(tar, member) if hash_all and member.isreg() else None
            events.append(("entry", path, _info(member, content, layer.digest)))
    return events


def _hash_paths(layer: Layer, paths: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    with open_tar(layer) as tar:
        for member in tar:
            path = _norm(member.name)
            if path in paths and member.isreg():
                found[path] = _hash_member(tar, member)  # the last entry for a path wins
    return found


def _hash_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    h = hashlib.sha256()
    f = tar.extractfile(member)
    assert f is not None
    while chunk := f.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _info(member: tarfile.TarInfo, content: str | None, layer: Digest) -> FileInfo:
    kind: FileKind
    if member.isreg():
        kind, link = "file", ""
    elif member.isdir():
        kind, link = "dir", ""
    elif member.issym():
        kind, link = "symlink", member.linkname
    elif member.islnk():
        kind, link = "hardlink", _norm(member.linkname)
    else:
        kind, link = "other", ""
    size = member.size if kind == "file" else 0
    return FileInfo(kind, member.mode & 0o7777, member.uid, member.gid, size, link, content, layer)


def _merge(layers: Iterable[Layer], scans: Mapping[Digest, list[_Event]]) -> tuple[dict[str, FileInfo], set[str]]:
    """The filesystem after applying ``layers`` in order; also the paths the last layers whited out."""
    fs: dict[str, FileInfo] = {}
    whited: set[str] = set()
    for layer in layers:
        events = scans[layer.digest]
        # A layer's whiteouts hide what is below it, never its own entries: apply them first.
        for kind, path, _ in events:
            if kind == "opaque":
                gone = _drop_below(fs, path, keep_self=True)
                whited |= gone
            elif kind == "whiteout":
                gone = _drop_below(fs, path, keep_self=False)
                whited |= gone
        for kind, path, info in events:
            if kind != "entry" or info is None:
                continue
            old = fs.get(path)
            if old is not None and old.kind == "dir" and info.kind != "dir":
                _drop_below(fs, path, keep_self=True)
            fs[path] = info
            whited.discard(path)
    return fs, whited


def _drop_below(fs: dict[str, FileInfo], path: str, *, keep_self: bool) -> set[str]:
    prefix = path + "/" if path else ""
    gone = {p for p in fs if p.startswith(prefix) or (not keep_self and p == path)}
    for p in gone:
        del fs[p]
    return gone
