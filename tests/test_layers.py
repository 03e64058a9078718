"""Deterministic layers: same tree, same bytes; the tar says exactly what the tree holds (checked with
Python's tarfile and GNU tar); hostile trees are stored safely or refused naming the path."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import socket
import stat
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from conftest import need, regfp
from hypothesis import given, settings
from hypothesis import strategies as st

from regctl_fp.errors import LayerInputError
from regctl_fp.layers import (
    Entry,
    collect_tree,
    dir_entry,
    file_entry,
    opaque_entry,
    prepare,
    symlink_entry,
    whiteout_entry,
    write_layer,
)
from regctl_fp.oci import mediatypes as mt
from regctl_fp.oci.compression import GZIP_BLOCK, ZSTD_JOB, compressor
from regctl_fp.oci.descriptor import Descriptor
from regctl_fp.oci.digest import Digest
from regctl_fp.oci.validate import validate
from regctl_fp.sources import BuildOptions, image_from_directory
from regctl_fp.stores.base import read_image, write_image
from regctl_fp.stores.layout import LayoutStore

EPOCH = 1_700_000_000
COMPRESSIONS = ("gzip", "zstd", "none")


# ---- helpers -------------------------------------------------------------------------------------

class MemorySink:
    """A BlobSink that keeps the blob in memory and records how it ended."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.state = "open"

    def write(self, data: bytes) -> None:
        assert self.state == "open"
        self.data += data

    def commit(self, media_type: str) -> Descriptor:
        assert self.state == "open"
        self.state = "committed"
        return Descriptor(media_type, Digest.of(bytes(self.data)), len(self.data))

    def abort(self) -> None:
        self.state = "aborted"


def decompress(blob: bytes, compression: str) -> bytes:
    """Independent decoders (stdlib gzip, plain zstandard), not regfp's own."""
    if compression == "gzip":
        return gzip.decompress(blob)
    if compression == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    return blob


def layer_tar(entries: list[Entry], compression: str = "none", mtime: int = EPOCH) -> tuple[bytes, MemorySink]:
    sink = MemorySink()
    written = write_layer(entries, sink, mtime=mtime, compression=compression)
    blob = bytes(sink.data)
    tar = decompress(blob, compression)
    assert sink.state == "committed"
    assert written.descriptor == Descriptor(mt.OCI_LAYER_FOR[compression], Digest.of(blob), len(blob))
    assert written.diff_id == Digest.of(tar)
    assert written.uncompressed_size == len(tar)
    # The writer's threaded block compression must give what the plain streaming compressor gives.
    plain = compressor(compression)
    assert plain.compress(tar) + plain.flush() == blob
    return tar, sink


def members(tar: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:", encoding="utf-8", errors="surrogateescape") as t:
        return t.getmembers()


def by_name(tar: bytes) -> dict[bytes, tarfile.TarInfo]:
    return {os.fsencode(m.name): m for m in members(tar)}


LONG_DIR = b"d" * 150 + b"/" + b"e" * 150  # a 301-byte directory path: never fits ustar
NAME_200 = b"n" * 200
LONG_TARGET = b"../" * 100 + b"target"
BIG = random.Random(7).randbytes(3 * (1 << 20) + 12345)  # spans several write chunks and gzip blocks

# (kind, path, mode, content-or-target). Modes are set explicitly, so umask never matters.
TREE: list[tuple[str, bytes, int, bytes]] = [
    ("dir", b"bin", 0o755, b""),
    ("file", b"bin/tool", 0o755, b"#!/bin/sh\necho hi\n"),
    ("hardlink", b"bin/tool-again", 0o755, b"bin/tool"),
    ("hardlink", b"usr/tool-third", 0o755, b"bin/tool"),
    ("dir", b"usr", 0o755, b""),
    ("dir", b"etc", 0o750, b""),
    ("file", b"etc/config", 0o640, b"key=value\n"),
    ("file", b"etc/empty", 0o600, b""),
    ("symlink", b"etc/link", 0o777, b"../bin/tool"),
    ("symlink", b"passwd", 0o777, b"/etc/passwd"),
    ("symlink", b"dangling", 0o777, b"no/such/file"),
    ("symlink", b"long-target", 0o777, LONG_TARGET),
    ("dir", b"empty", 0o700, b""),
    ("dir", b"tmp", 0o1777, b""),
    ("file", b"suid", 0o4755, b"setuid program\n"),
    ("dir", b"sgid", 0o2775, b""),
    ("file", b"sgid/file", 0o2755, b"setgid program\n"),
    ("dir", b"a", 0o755, b""),
    ("file", b"a/x", 0o644, b"x"),
    ("file", b"a-b", 0o644, b"dash"),  # '-' and '.' are below '/' in ASCII, yet a/x must follow a
    ("file", b"a.txt", 0o644, b"dot"),
    ("dir", b"d" * 150, 0o755, b""),
    ("dir", LONG_DIR, 0o755, b""),
    ("file", LONG_DIR + b"/" + NAME_200, 0o644, b"long path"),
    ("file", b"caf\xe9-latin1", 0o644, b"not utf-8"),
    ("file", "été-utf8".encode(), 0o644, b"utf-8"),
    ("file", b"big.bin", 0o644, BIG),
]


def build_tree(root: Path, *, reverse: bool = False, owner: int = 0, mtime: int = 0,
               edit: Callable[[list[tuple[str, bytes, int, bytes]]], None] | None = None) -> Path:
    """Make TREE under ``root``: creation order, owners and timestamps as given, content the same."""
    spec = list(TREE)
    if edit is not None:
        edit(spec)
    base = os.fsencode(root)
    os.makedirs(base, exist_ok=True)
    items = list(reversed(spec)) if reverse else spec
    made: set[bytes] = set()
    for kind, rel, _mode, data in items:
        path = os.path.join(base, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if kind == "dir":
            os.makedirs(path, exist_ok=True)
        elif kind == "file":
            with open(path, "wb") as f:
                f.write(data)
        elif kind == "symlink":
            os.symlink(data, path)
        made.add(rel)
    for kind, rel, _mode, data in items:
        if kind == "hardlink":
            target, link = os.path.join(base, data), os.path.join(base, rel)
            if reverse and os.lstat(target).st_nlink == 1:
                # The other name first: which name an inode was created under must not matter.
                os.rename(target, link)
                os.link(link, target)
            else:
                os.link(target, link)
    for kind, rel, mode, _data in sorted(items, key=lambda it: -len(it[1])):  # children before parents
        path = os.path.join(base, rel)
        os.lchown(path, owner, owner + 1)
        if kind != "symlink":
            os.chmod(path, mode)  # after chown, which clears setuid/setgid
        os.utime(path, (mtime + 3, mtime + len(rel)), follow_symlinks=False)
    return root


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same content twice: other paths, creation order, owners and timestamps."""
    a = build_tree(tmp_path_factory.mktemp("first") / "tree", owner=0, mtime=1_000_000)
    b = build_tree(tmp_path_factory.mktemp("second-place") / "elsewhere" / "t", reverse=True, owner=4242,
                   mtime=1_600_000_000)
    return a, b


def expected_mode(kind: str, mode: int, keep: bool = False) -> int:
    if kind == "symlink":
        return 0o777
    return mode if keep else mode & ~0o6000


# ---- 1. determinism ------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_same_tree_gives_same_layer(trees: tuple[Path, Path], compression: str) -> None:
    a, b = trees
    assert os.lstat(a / "etc/config").st_uid != os.lstat(b / "etc/config").st_uid
    assert os.lstat(a / "etc/config").st_mtime != os.lstat(b / "etc/config").st_mtime
    first = write_layer(collect_tree(a), MemorySink(), mtime=EPOCH, compression=compression)
    second = write_layer(collect_tree(b), MemorySink(), mtime=EPOCH, compression=compression)
    assert (first.descriptor, first.diff_id) == (second.descriptor, second.diff_id)
    assert first.descriptor.media_type == mt.OCI_LAYER_FOR[compression]
    # ... and it is the content that decides: another epoch or one byte changed gives another digest.
    later = write_layer(collect_tree(a), MemorySink(), mtime=EPOCH + 1, compression=compression)
    assert later.diff_id != first.diff_id


def test_one_changed_byte_or_mode_changes_the_digest(trees: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = trees
    base = write_layer(collect_tree(a), MemorySink(), mtime=EPOCH, compression="gzip").descriptor.digest

    def flip_byte(spec: list[tuple[str, bytes, int, bytes]]) -> None:
        i = next(i for i, it in enumerate(spec) if it[1] == b"etc/config")
        spec[i] = ("file", b"etc/config", 0o640, b"key=valuf\n")

    def exec_bit(spec: list[tuple[str, bytes, int, bytes]]) -> None:
        i = next(i for i, it in enumerate(spec) if it[1] == b"etc/config")
        spec[i] = ("file", b"etc/config", 0o740, b"key=value\n")

    for n, edit in enumerate((flip_byte, exec_bit)):
        other = build_tree(tmp_path / str(n), edit=edit)
        assert write_layer(collect_tree(other), MemorySink(), mtime=EPOCH,
                           compression="gzip").descriptor.digest != base


def test_same_directory_gives_same_image_digest(trees: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = trees
    options = BuildOptions(epoch=EPOCH)
    digests = []
    for n, tree in enumerate((a, b)):
        with LayoutStore.open_or_create(tmp_path / f"layout{n}") as store:
            image = image_from_directory(tree, store, options)
            validate(image)
            desc = write_image(store, image)
            back = read_image(store, desc)
            assert back.digest == desc.digest == image.digest
            assert back.config.diff_ids == (image.layers[0].diff_id,)
            digests.append(desc.digest)
    assert digests[0] == digests[1]
    with LayoutStore.open_or_create(tmp_path / "layout-other-epoch") as store:
        other = image_from_directory(a, store, BuildOptions(epoch=EPOCH + 60))
    assert other.digest != digests[0]


@pytest.mark.parametrize(("compression", "setting", "values"), [
    ("gzip", "workers", [1, 3]),
    ("zstd", "ZSTD_THREADS", [1, 3]),
])
def test_layer_bytes_do_not_depend_on_thread_counts(trees: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                                    compression: str, setting: str, values: list[int]) -> None:
    # A machine with other core counts must produce the same digest.
    from regctl_fp.oci import compression as comp

    a, _ = trees
    entries = collect_tree(a)
    base = write_layer(entries, MemorySink(), mtime=EPOCH, compression=compression).descriptor
    target = comp._GzipBlocks if setting == "workers" else comp
    for value in values:
        monkeypatch.setattr(target, setting, value)
        assert write_layer(entries, MemorySink(), mtime=EPOCH, compression=compression).descriptor == base, value


def _payload(seed: int, size: int) -> bytes:
    """Part random, part repetitive: both literal and match paths of the compressors run."""
    r = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += r.randbytes(r.randint(1, 4000)) if r.random() < 0.4 else bytes([r.randint(0, 255)]) * r.randint(1, 9000)
    return bytes(out[:size])


PAYLOADS = {"gzip": _payload(1, 3 * GZIP_BLOCK + 1234), "zstd": _payload(2, 2 * ZSTD_JOB + 98765)}
WHOLE = {}
for _name, _data in PAYLOADS.items():
    _c = compressor(_name)
    WHOLE[_name] = _c.compress(_data) + _c.flush()


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.floats(0, 1), max_size=40))
def test_compressed_bytes_do_not_depend_on_write_sizes(compression: str, cuts: list[float]) -> None:
    data = PAYLOADS[compression]
    points = sorted({int(c * len(data)) for c in cuts})
    comp = compressor(compression)
    out = []
    prev = 0
    for p in [*points, len(data)]:
        out.append(comp.compress(data[prev:p]))  # empty pieces included: they must change nothing
        prev = p
    out.append(comp.flush())
    blob = b"".join(out)
    assert blob == WHOLE[compression]
    assert decompress(blob, compression) == data


# ---- 2. the tar says what the tree holds ----------------------------------------------------------

def test_tar_entries_are_faithful(trees: tuple[Path, Path]) -> None:
    a, _ = trees
    tar, _ = layer_tar(collect_tree(a), "gzip")
    got = members(tar)
    paths = [os.fsencode(m.name) for m in got]
    assert paths == sorted(paths, key=lambda p: p.split(b"/"))  # by name within each directory, depth first
    assert [p for p in paths if p in (b"a", b"a/x", b"a-b", b"a.txt")] == [b"a", b"a/x", b"a-b", b"a.txt"]
    spec = {rel: (kind, mode, data) for kind, rel, mode, data in TREE}
    assert set(paths) == set(spec)
    for i, m in enumerate(got):
        path = paths[i]
        parent = path.rpartition(b"/")[0]
        if parent:
            assert parent in paths[:i], f"{path!r} comes before its parent"
        kind, mode, data = spec[path]
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", EPOCH), path
        assert m.mode == expected_mode(kind, mode), (path, oct(m.mode))
        if kind == "dir":
            assert m.isdir(), path
        elif kind == "file":
            assert m.isreg(), path
            assert m.size == len(data)
        elif kind == "symlink":
            assert m.issym(), path
            assert os.fsencode(m.linkname) == data
        elif kind == "hardlink":
            assert m.islnk(), path
            assert os.fsencode(m.linkname) == b"bin/tool"  # the first of the inode's names, sorted
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:", errors="surrogateescape") as t:
        for path, (kind, _mode, data) in spec.items():
            if kind == "file":
                extracted = t.extractfile(os.fsdecode(path))
                assert extracted is not None
                assert extracted.read() == data, path
    assert tar.endswith(b"\0" * 1024)
    assert len(tar) % 512 == 0


def test_special_bits_and_owner_on_request(trees: tuple[Path, Path]) -> None:
    a, _ = trees
    tar, _ = layer_tar(collect_tree(a, keep_special_bits=True, uid=1000, gid=2000))
    got = by_name(tar)
    assert got[b"suid"].mode == 0o4755
    assert got[b"sgid"].mode == 0o2775
    assert got[b"sgid/file"].mode == 0o2755
    assert got[b"tmp"].mode == 0o1777  # sticky is no special privilege: kept either way
    assert {(m.uid, m.gid) for m in got.values()} == {(1000, 2000)}


def test_prefix_places_the_tree(trees: tuple[Path, Path]) -> None:
    a, _ = trees
    entries = collect_tree(a, prefix="/srv/app/")
    assert {e.path.split(b"/")[:2] == [b"srv", b"app"] for e in entries} == {True}
    hard = next(e for e in entries if e.path == b"srv/app/bin/tool-again")
    assert (hard.kind, hard.target) == ("hardlink", b"srv/app/bin/tool")
    assert [e.path for e in collect_tree(a, prefix="./")] == [e.path for e in collect_tree(a)]


def test_gnu_tar_extracts_the_source_tree(trees: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = trees
    tar, _ = layer_tar(collect_tree(a), "none")
    (tmp_path / "layer.tar").write_bytes(tar)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([need("tar"), "-xf", str(tmp_path / "layer.tar"), "-C", str(out), "--numeric-owner"],
                   check=True, capture_output=True)
    src_b, out_b = os.fsencode(a), os.fsencode(out)

    def listing(root: bytes) -> set[bytes]:
        found = set()
        for d, dirs, files in os.walk(root):
            for n in dirs + files:
                found.add(os.path.relpath(os.path.join(d, n), root))
        return found

    assert listing(out_b) == listing(src_b)
    for rel in listing(src_b):
        s, o = os.lstat(os.path.join(src_b, rel)), os.lstat(os.path.join(out_b, rel))
        assert stat.S_IFMT(s.st_mode) == stat.S_IFMT(o.st_mode), rel
        assert (o.st_uid, o.st_gid) == (0, 0), rel
        assert int(o.st_mtime) == EPOCH, rel
        if stat.S_ISLNK(s.st_mode):
            assert os.readlink(os.path.join(out_b, rel)) == os.readlink(os.path.join(src_b, rel))
            continue
        assert stat.S_IMODE(o.st_mode) == stat.S_IMODE(s.st_mode) & ~0o6000, (rel, oct(o.st_mode))
        if stat.S_ISREG(s.st_mode):
            with open(os.path.join(src_b, rel), "rb") as f1, open(os.path.join(out_b, rel), "rb") as f2:
                assert f1.read() == f2.read(), rel
    tool = os.lstat(out / "bin/tool")
    assert tool.st_nlink == 3
    assert os.lstat(out / "bin/tool-again").st_ino == tool.st_ino == os.lstat(out / "usr/tool-third").st_ino


def test_unprivileged_gnu_tar_extracts_read_only_directories(tmp_path: Path) -> None:
    # A directory's subtree must follow it directly: GNU tar applies a directory's mode once it sees an
    # entry outside it, and an unprivileged user cannot then create ``ro/x`` in the read-only ``ro``.
    tar, _ = layer_tar([dir_entry("ro", 0o555), file_entry("ro/x", b"1"), file_entry("ro-sibling", b"2"),
                        file_entry("ro.txt", b"3"), dir_entry("ro/sub", 0o500), file_entry("ro/sub/y", b"4")])
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, 65534, 65534)
    # The child enters ``out`` while still root (pytest's temp dirs are private), then drops privileges.
    proc = subprocess.run([need("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups",
                           need("tar"), "-xf", "-"], cwd=out, input=tar, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    assert (out / "ro/x").read_bytes() == b"1"
    assert (out / "ro/sub/y").read_bytes() == b"4"
    assert stat.S_IMODE(os.lstat(out / "ro").st_mode) == 0o555
    assert [int(os.lstat(out / p).st_mtime) for p in ("ro", "ro/sub")] == [EPOCH, EPOCH]


def test_explicit_entries(tmp_path: Path) -> None:
    entries = [
        file_entry("/etc/motd", b"hello\n", 0o644),  # a leading '/' or './' is the same path
        dir_entry("./etc", 0o755),
        symlink_entry("etc/alias", "motd"),
        Entry(b"etc/zz-hard", "hardlink", 0o644, target=b"/etc/motd"),
        whiteout_entry("/usr/lib/old"),
        opaque_entry("var/cache/"),
        Entry(b"grows", "file", 0o600, size=4, opener=lambda: io.BytesIO(b"1234567")),  # reads what size says
    ]
    tar, _ = layer_tar(entries)
    got = by_name(tar)
    assert list(got) == [b"etc", b"etc/alias", b"etc/motd", b"etc/zz-hard", b"grows", b"usr/lib/.wh.old",
                         b"var/cache/.wh..wh..opq"]
    assert got[b"etc/zz-hard"].linkname == "etc/motd"  # normalised like every path, so it resolves
    assert got[b"grows"].size == 4
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        assert t.extractfile("grows").read() == b"1234"  # type: ignore[union-attr]


# ---- 3. hostile trees ----------------------------------------------------------------------------

def test_links_out_of_the_tree_are_stored_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "key").write_bytes(b"SECRET-KEY-MATERIAL")
    tree = tmp_path / "tree"
    tree.mkdir()
    os.symlink("/etc/passwd", tree / "passwd")
    os.symlink(secret / "key", tree / "key")
    os.symlink(secret, tree / "dir-outside")
    os.symlink("../../" * 20, tree / "up")
    os.symlink("loop-b", tree / "loop-a")
    os.symlink("loop-a", tree / "loop-b")
    os.symlink(".", tree / "self")
    (tree / "sub").mkdir()
    os.symlink("..", tree / "sub" / "parent")
    tar, _ = layer_tar(collect_tree(tree), "none")
    got = by_name(tar)
    assert {p: (m.type, m.linkname) for p, m in got.items()} == {
        b"dir-outside": (tarfile.SYMTYPE, str(secret)), b"key": (tarfile.SYMTYPE, str(secret / "key")),
        b"loop-a": (tarfile.SYMTYPE, "loop-b"), b"loop-b": (tarfile.SYMTYPE, "loop-a"),
        b"passwd": (tarfile.SYMTYPE, "/etc/passwd"), b"self": (tarfile.SYMTYPE, "."),
        b"sub": (tarfile.DIRTYPE, ""), b"sub/parent": (tarfile.SYMTYPE, ".."),
        b"up": (tarfile.SYMTYPE, "../../" * 20),
    }
    assert b"SECRET-KEY-MATERIAL" not in tar
    assert b"root:x:0:0" not in tar


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _socket(p: Path) -> None:
    # AF_UNIX paths are limited to 108 bytes: bind by a short relative name from inside the directory.
    cwd = os.getcwd()
    os.chdir(p.parent)
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind(p.name)
        s.close()
    finally:
        os.chdir(cwd)


def _device(p: Path) -> None:
    os.mknod(p, 0o600 | stat.S_IFCHR, os.makedev(1, 3))


def _whiteout(p: Path) -> None:
    p.write_bytes(b"")


HOSTILE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "fifo": (_fifo, "pipe", "FIFO"),
    "socket": (_socket, "sock", "socket"),
    "device": (_device, "null", "device node"),
    "whiteout": (_whiteout, ".wh.passwd", "reserved for OCI whiteouts"),
    "opaque": (_whiteout, ".wh..wh..opq", "reserved for OCI whiteouts"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_special_files_are_refused_naming_the_path(tmp_path: Path, kind: str) -> None:
    make, name, reason = HOSTILE[kind]
    tree = tmp_path / "tree"
    (tree / "deep" / "er").mkdir(parents=True)
    (tree / "deep" / "ok").write_text("fine")
    make(tree / "deep" / "er" / name)
    with pytest.raises(LayerInputError) as err:
        collect_tree(tree)
    assert err.value.path == str(tree / "deep" / "er" / name)
    assert reason in str(err.value)
    assert str(tree / "deep" / "er" / name) in str(err.value)


def test_whiteout_names_allowed_on_request(tmp_path: Path) -> None:
    (tmp_path / ".wh.gone").write_bytes(b"")
    assert [e.path for e in collect_tree(tmp_path, allow_whiteouts=True)] == [b".wh.gone"]


def test_undecodable_names_are_stored_and_reported_readably(tmp_path: Path) -> None:
    base = os.fsencode(tmp_path)
    os.mkdir(os.path.join(base, b"t"))
    for name in (b"\xff\xfe", b"caf\xe9", b"\xc3\x28" * 90):  # the last is 180 bytes and invalid UTF-8
        with open(os.path.join(base, b"t", name), "wb") as f:
            f.write(name)
    tar, _ = layer_tar(collect_tree(tmp_path / "t"))
    with tarfile.open(fileobj=io.BytesIO(tar), errors="surrogateescape") as t:
        assert sorted(os.fsencode(m.name) for m in t.getmembers()) == [b"caf\xe9", b"\xc3\x28" * 90, b"\xff\xfe"]
        for m in t.getmembers():
            assert t.extractfile(m).read() == os.fsencode(m.name)  # type: ignore[union-attr]
    os.mkfifo(os.path.join(base, b"t", b"bad\xff"))
    with pytest.raises(LayerInputError) as err:
        collect_tree(tmp_path / "t")
    assert "bad\\xff" in str(err.value)
    str(err.value).encode("utf-8")  # no lone surrogates: any terminal can print the message


def test_two_hundred_byte_names_and_deep_nesting(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    deep = os.fsencode(tree)
    for _ in range(1201):  # deeper than Python's recursion limit (os.makedirs itself would recurse)
        os.mkdir(deep)
        deep += b"/d"
    deep = deep[:-2]
    with open(os.path.join(deep, b"f" * 200), "wb") as f:
        f.write(b"bottom")
    try:
        entries = collect_tree(tree)
        assert len(entries) == 1201
        tar, _ = layer_tar(entries)
        last = members(tar)[-1]
        assert os.fsencode(last.name) == b"d/" * 1200 + b"f" * 200
        assert last.size == 6
    finally:  # shutil.rmtree (pytest's cleanup) recurses and would fail on this tree
        os.unlink(os.path.join(deep, b"f" * 200))
        while deep != os.fsencode(tree):
            os.rmdir(deep)
            deep = os.path.dirname(deep)


@pytest.mark.parametrize(("entries", "culprit", "reason"), [
    ([file_entry("../etc/passwd", b"x")], "../etc/passwd", "'..'"),
    ([file_entry("a/../../b", b"x")], "a/../../b", "'..'"),
    ([file_entry("ok\0bad", b"x")], "ok\0bad", "NUL"),
    ([file_entry("/", b"x")], "/", "empty"),
    ([symlink_entry("s", "a\0b")], "s", "NUL"),
    ([symlink_entry("s", "")], "s", "empty"),
    ([symlink_entry("etc", "/etc"), file_entry("etc/passwd", b"x")], "etc/passwd", "symlink"),
    ([symlink_entry("a", "/"), dir_entry("a/b"), file_entry("a/b/c", b"x")], "a/b", "symlink"),
    ([file_entry("f", b"x"), file_entry("f/g", b"x")], "f/g", "file"),
    ([Entry(b"h", "hardlink", 0o644, target=b"missing")], "h", "hardlink target"),
    ([Entry(b"a", "hardlink", 0o644, target=b"z"), file_entry("z", b"x")], "a", "hardlink target"),
    ([Entry(b"h", "hardlink", 0o644, target=b"h")], "h", "hardlink target"),
    ([file_entry("f", b"x"), Entry(b"h", "hardlink", 0o644, target=b"../f")], "h", "'..'"),
    ([dir_entry("d"), Entry(b"h", "hardlink", 0o644, target=b"d")], "h", "hardlink target"),
    ([file_entry("dup", b"1"), file_entry("./dup/", b"2")], "./dup/", "twice"),
    ([dir_entry("dup"), file_entry("/dup", b"2")], "/dup", "twice"),
    ([Entry(b"f", "file", 0o644, size=10, data=b"short")], "f", "size"),
    ([Entry(b"f", "file", 0o644, size=-1, opener=lambda: io.BytesIO())], "f", "size"),
    ([Entry(b"f", "file", 0o644)], "f", "no content"),
    ([Entry(b"f", "fifo", 0o644)], "f", "unknown entry kind"),  # type: ignore[arg-type]
    ([Entry(b"f", "file", 0o644, data=b"", uid=-1)], "f", "negative"),
])
def test_explicit_entries_refused(entries: list[Entry], culprit: str, reason: str) -> None:
    with pytest.raises(LayerInputError) as err:
        prepare(entries)
    assert err.value.path == culprit
    assert reason in err.value.reason
    sink = MemorySink()
    with pytest.raises(LayerInputError):
        write_layer(entries, sink, mtime=0)
    assert sink.state == "aborted"  # a refused layer leaves nothing behind in the store


def test_unknown_compression_aborts_the_sink() -> None:
    sink = MemorySink()
    with pytest.raises(LayerInputError, match="compression"):
        write_layer([file_entry("f", b"x")], sink, mtime=0, compression="lz4")
    assert sink.state == "aborted"


def test_file_that_shrinks_is_refused() -> None:
    sink = MemorySink()
    entry = Entry(b"shrinks", "file", 0o644, size=10, opener=lambda: io.BytesIO(b"abc"), origin="/src/shrinks")
    with pytest.raises(LayerInputError, match="shrank") as err:
        write_layer([file_entry("a", b"x"), entry], sink, mtime=0)
    assert err.value.path == "/src/shrinks"
    assert sink.state == "aborted"


def test_file_swapped_for_a_symlink_after_listing_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"SECRET" * 10)
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "f").write_bytes(b"innocent" * 7 + b"ab")  # same size as the secret
    entries = collect_tree(tree)
    (tree / "f").unlink()
    os.symlink(tmp_path / "secret", tree / "f")
    sink = MemorySink()
    with pytest.raises(LayerInputError) as err:
        write_layer(entries, sink, mtime=0, compression="none")
    assert err.value.path == str(tree / "f")
    assert b"SECRET" not in sink.data
    assert sink.state == "aborted"


def test_file_swapped_for_a_fifo_after_listing_does_not_hang(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    entries = collect_tree(tmp_path)
    (tmp_path / "f").unlink()
    os.mkfifo(tmp_path / "f")
    caught: list[BaseException] = []

    def run() -> None:
        try:
            write_layer(entries, MemorySink(), mtime=0)
        except BaseException as e:
            caught.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # unblock the reader so the test run can go on, then fail
        with open(tmp_path / "f", "wb"):
            pass
        pytest.fail("write_layer blocked on a FIFO")
    assert len(caught) == 1 and isinstance(caught[0], LayerInputError)
    assert "FIFO" in str(caught[0])


# ---- 3b. the same through the CLI -----------------------------------------------------------------

def snapshot(layout: Path) -> dict[str, bytes]:
    """Every file of a layout except lock files (which a writer may create and leave empty)."""
    return {str(p.relative_to(layout)): p.read_bytes() for p in sorted(layout.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


@pytest.mark.parametrize("kind", ["fifo", "socket", "device", "whiteout", "fifo-undecodable"])
def test_cli_refuses_hostile_tree_and_leaves_layout_alone(tmp_path: Path, kind: str) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "hello").write_text("hi\n")
    out = tmp_path / "out"
    with LayoutStore.open_or_create(out) as store:
        store.set_names({"x": write_image(store, image_from_directory(good, store, BuildOptions()))})
    before = snapshot(out)
    hostile = tmp_path / "hostile"
    (hostile / "sub").mkdir(parents=True)
    (hostile / "a-file").write_bytes(b"y" * 100_000)  # sorted first: its blob would be half-written
    if kind == "fifo-undecodable":
        os.mkfifo(os.path.join(os.fsencode(hostile / "sub"), b"pipe\xff"))
        name = "pipe\\xff"
    else:
        make, base, _ = HOSTILE[kind]
        make(hostile / "sub" / base)
        name = base
    proc = regfp("copy", f"dir:{hostile}", f"oci:{out}:x", check=False)
    assert proc.returncode == 2, proc.stderr
    assert name in proc.stderr
    assert "sub" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout == ""
    assert snapshot(out) == before
    assert not any((out / ".regfp" / "tmp").iterdir())


def test_cli_refusal_names_nothing_in_a_new_layout(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    os.mkfifo(hostile / "pipe")
    out = tmp_path / "new" / "out"
    proc = regfp("copy", f"dir:{hostile}", f"oci:{out}:x", check=False)
    assert proc.returncode == 2
    assert str(hostile / "pipe") in proc.stderr
    if out.exists():
        with LayoutStore.open(out) as store:
            assert store.names() == {}
        assert not list((out / "blobs" / "sha256").iterdir())


# ---- 4. files over 8 GiB --------------------------------------------------------------------------

class HashingSink:
    """Discards bytes; keeps their sha256, size, and the first and last few KiB."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0
        self.head = bytearray()
        self.tail = b""

    def write(self, data: bytes) -> None:
        if len(self.head) < 4096:
            self.head += data[:4096 - len(self.head)]
        self.hash.update(data)
        self.size += len(data)
        self.tail = (self.tail + bytes(data[-2048:]))[-2048:]

    def commit(self, media_type: str) -> Descriptor:
        return Descriptor(media_type, Digest("sha256", self.hash.hexdigest()), self.size)

    def abort(self) -> None:
        pass


class Zeros(io.RawIOBase):
    _block = bytes(1 << 20)

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return self._block if n == len(self._block) else bytes(n)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        self.left -= n
        buffer[:n] = self._block if n == len(self._block) else bytes(n)
        return n


@pytest.mark.slow
def test_entry_over_8_gib_streams_with_a_pax_size(tmp_path: Path) -> None:
    size = (8 << 30) + (1 << 20) + 3  # above the 11-octal-digit limit, and not a multiple of 512
    sink = HashingSink()
    entries = [Entry(b"huge.img", "file", 0o644, size=size, opener=lambda: Zeros(size)), file_entry("z", b"tail")]
    written = write_layer(entries, sink, mtime=EPOCH, compression="none")
    with tarfile.open(fileobj=io.BytesIO(bytes(sink.head)), mode="r|") as t:
        first = t.next()
        assert first is not None
        assert (first.name, first.size, first.mtime) == ("huge.img", size, EPOCH)
        header_len = first.offset_data
    assert header_len == 3 * 512  # pax header, its records, the ustar header
    tail_entry = 512 + 512  # "z": header + one data block
    assert sink.size == header_len + size + (-size % 512) + tail_entry + 1024
    assert sink.tail[-1024:] == bytes(1024)
    assert sink.tail[-1024 - 512:-1024].startswith(b"tail\0")
    assert written.uncompressed_size == sink.size
    assert written.descriptor.size == sink.size
    assert written.descriptor.digest == written.diff_id  # uncompressed: one stream, one hash


def test_file_sizes_around_chunk_and_block_boundaries(tmp_path: Path) -> None:
    # Files of sizes around the write chunk (1 MiB) and tar block (512) boundaries.
    sizes = [0, 1, 511, 512, 513, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 2 << 20]
    r = random.Random(3)
    for s in sizes:
        (tmp_path / f"f{s:08d}").write_bytes(r.randbytes(s))
    tar, _ = layer_tar(collect_tree(tmp_path), "zstd")
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        for s in sizes:
            assert t.extractfile(f"f{s:08d}").read() == (tmp_path / f"f{s:08d}").read_bytes()  # type: ignore[union-attr]


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
@pytest.mark.parametrize("size", [0, 1000, (1 << 20) - 3000, (1 << 20) + 5, 3 << 20])
def test_small_layers_written_on_one_thread_are_the_same_bytes(compression: str, size: int) -> None:
    """A layer smaller than one block skips the worker threads; forcing either way gives one digest."""
    from regctl_fp.layers import file_entry, write_layer
    from regctl_fp.stores.null import DigestSink

    data = random.Random(size).randbytes(size)
    entries = [dir_entry("d", 0o755), file_entry("d/f", data, 0o644), file_entry("d/g", b"g" * 700, 0o600)]
    inline = write_layer(entries, DigestSink(), mtime=7, compression=compression, inline=True)
    threaded = write_layer(entries, DigestSink(), mtime=7, compression=compression, inline=False)
    chosen = write_layer(entries, DigestSink(), mtime=7, compression=compression)
    assert inline == threaded == chosen
