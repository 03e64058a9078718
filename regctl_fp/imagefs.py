"""Reading single files out of an image's layered filesystem, honouring whiteouts and symlinks.

Layers are scanned from the top down and each is streamed (decompressed on the fly, never held in
memory); the scan stops at the first layer that decides the path: a file, a whiteout, or an opaque
directory above it.
"""

from __future__ import annotations

import posixpath
import tarfile
from typing import Literal

from .errors import RegfpError
from .layertar import open_tar
from .oci.image import Image, Layer
from .values import valueclass

MAX_FILE = 64 << 20  # bytes; these lookups are for configuration files (CA bundles, passwd)
_WH = ".wh."
_OPAQUE = ".wh..wh..opq"


@valueclass
class FoundFile:
    path: str  # where the content was found (after following symlinks)
    data: bytes
    mode: int
    uid: int
    gid: int


def _norm(path: str) -> str:
    return posixpath.normpath("/" + path).lstrip("/")


def read_file(image: Image, path: str, *, follow: int = 8) -> FoundFile | None:
    """The content of ``path`` in ``image`` (None if it does not exist), following symlinks."""
    want = _norm(path)
    for _ in range(follow + 1):
        found = _lookup(image.layers, want)
        if found is None:
            return None
        if isinstance(found, _File):
            return FoundFile(want, found.data, found.member.mode, found.member.uid, found.member.gid)
        # A symlink: resolve it against its directory, inside the image root.
        target = found.target
        base = posixpath.dirname(want)
        want = _norm(target if target.startswith("/") else posixpath.join(base, target))
    raise RegfpError(f"{path}: too many levels of symbolic links in the image")


@valueclass
class _File:
    data: bytes
    member: tarfile.TarInfo


@valueclass
class _Link:
    target: str  # as written in the layer: absolute, or relative to the link's directory


_Deleted = Literal["deleted"]  # a whiteout, or something that is not a regular file: the path is absent


def _lookup(layers: tuple[Layer, ...], want: str) -> _File | _Link | None:
    parents = []
    p = want
    while "/" in p:
        p = p.rpartition("/")[0]
        parents.append(p)
    whiteout = posixpath.join(posixpath.dirname(want), _WH + posixpath.basename(want))
    for layer in reversed(layers):
        decided = _scan(layer, want, whiteout, parents)
        if decided == "deleted":
            return None
        if decided is not None:
            return decided
    return None


def _scan(layer: Layer, want: str, whiteout: str, parents: list[str]) -> _File | _Link | _Deleted | None:
    """What this layer says about ``want``; None when it says nothing (look in the layer below)."""
    result: _File | _Link | _Deleted | None = None
    hidden = False
    with open_tar(layer) as tar:  # a cut-short tar is CorruptLayer naming the layer; the blob is read to its end
        for member in tar:
            name = _norm(member.name)
            if name == want:
                if member.isreg():
                    if member.size > MAX_FILE:
                        raise RegfpError(f"/{want} in layer {layer.digest} is larger than {MAX_FILE} bytes")
                    f = tar.extractfile(member)
                    assert f is not None
                    result = _File(f.read(), member)
                elif member.issym():
                    result = _Link(member.linkname)
                elif member.islnk():
                    result = _Link("/" + _norm(member.linkname))
                else:
                    result = "deleted"  # a directory or special file: not a regular file
            elif name == whiteout:
                result = "deleted"
            elif name.endswith("/" + _OPAQUE) and name[: -len(_OPAQUE) - 1] in parents:
                hidden = True
            elif name in parents and member.issym():
                # A directory above is a symlink here: continue the lookup through it.
                rest = want[len(name) + 1:]
                target = member.linkname
                base = target if target.startswith("/") else posixpath.join(posixpath.dirname(name), target)
                result = _Link("/" + _norm(posixpath.join(base, rest)))
            elif name in parents and not member.isdir():
                result = "deleted"  # a parent replaced by a file in this layer
    if result is None and hidden:
        return "deleted"
    return result


def list_files(image: Image) -> dict[str, str]:
    """Every non-directory path of the image's merged filesystem -> its kind ("file", "symlink", ...).

    Layers are applied bottom-up with their whiteouts; each is streamed once.
    """
    files: dict[str, str] = {}
    for layer in image.layers:
        with open_tar(layer) as tar:
            for member in tar:
                name = _norm(member.name)
                base = posixpath.basename(name)
                parent = posixpath.dirname(name)
                if base == _OPAQUE:
                    prefix = parent + "/" if parent else ""
                    for path in [p for p in files if p.startswith(prefix)]:
                        del files[path]
                elif base.startswith(_WH):
                    gone = posixpath.join(parent, base[len(_WH):])
                    files.pop(gone, None)
                    for path in [p for p in files if p.startswith(gone + "/")]:
                        del files[path]
                elif not member.isdir():
                    files[name] = "symlink" if member.issym() else "hardlink" if member.islnk() else "file"
    return files
