"""Blobs from another layout (or a skopeo dir:) on the same filesystem are hard-linked, verified through
the link before they are named; a corrupt source is never linked; a linked inode is never chmod-ed, so
private (0600) and public (0644) blobs never trade places; across filesystems the blob is copied."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import pytest
from conftest import regfp
from registry_support import make_image

from regctl_fp.errors import DigestMismatch
from regctl_fp.oci.descriptor import Descriptor
from regctl_fp.stores.base import read_image, write_image
from regctl_fp.stores.layout import LayoutStore
from regctl_fp.stores.transfer import copy_descriptor
from regctl_fp.verify import verify_layout


def blob_files(layout: Path, name: str) -> list[Path]:
    """The files of ``name``'s config and layers."""
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == name)
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / desc["digest"].split(":")[1]).read_bytes())
    return [blobs / d["digest"].split(":")[1] for d in (manifest["config"], *manifest["layers"])]


def same_inode(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def source(tmp_path: Path, *, layers: int = 2) -> tuple[Path, Descriptor]:
    layout = tmp_path / "bases"
    with LayoutStore.open_or_create(layout) as store:
        return layout, make_image(store, "os:1", layers=layers, size=256 << 10)


def test_a_copy_between_layouts_on_one_filesystem_links_every_blob(tmp_path: Path) -> None:
    src, _ = source(tmp_path)
    regfp("copy", f"oci:{src}:os:1", f"oci:{tmp_path / 'out'}:base")
    for theirs, ours in zip(blob_files(src, "os:1"), blob_files(tmp_path / "out", "base"), strict=True):
        assert theirs.name == ours.name and same_inode(theirs, ours)
        assert mode(ours) == 0o644
    assert verify_layout(LayoutStore.open(tmp_path / "out")).ok
    assert list((tmp_path / "out" / ".regfp" / "tmp").iterdir()) == []


def test_a_corrupt_source_blob_is_never_linked(tmp_path: Path) -> None:
    src, _ = source(tmp_path)
    layer = blob_files(src, "os:1")[-1]
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content: only hashing can tell
    layer.write_bytes(bytes(data))
    out = tmp_path / "out"
    proc = regfp("copy", f"oci:{src}:os:1", f"oci:{out}:base", check=False)
    assert proc.returncode == 1 and "digest" in proc.stderr.lower(), proc.stderr
    assert not (out / "blobs" / "sha256" / layer.name).exists()
    assert list((out / ".regfp" / "tmp").iterdir()) == []  # the temporary link is gone too
    assert layer.stat().st_nlink == 1
    with LayoutStore.open(out) as store:
        assert "base" not in store.names()


def test_a_private_destination_never_links_a_public_inode_and_the_reverse(tmp_path: Path) -> None:
    src, desc = source(tmp_path)
    theirs = blob_files(src, "os:1")
    with LayoutStore.open(src) as s, LayoutStore.open_or_create(tmp_path / "private") as dst:
        image = read_image(s, desc)
        secret = image.with_annotations({**image.annotations, "dev.regfp.contains-secret": "true"})
        dst.set_names({"x": write_image(dst, secret)})
    for a, b in zip(theirs, blob_files(tmp_path / "private", "x"), strict=True):
        assert a.name == b.name and not same_inode(a, b)
        assert (mode(a), mode(b)) == (0o644, 0o600)  # the source's inode kept its mode
    # The private blobs, now linked from the private layout into a third one that is private too...
    with LayoutStore.open(tmp_path / "private") as s, LayoutStore.open_or_create(tmp_path / "also") as dst:
        d = s.resolve("x")
        dst.set_names({"x": copy_descriptor(s, dst, d)})
    private, also = blob_files(tmp_path / "private", "x"), blob_files(tmp_path / "also", "x")
    assert all(same_inode(a, b) and mode(b) == 0o600 for a, b in zip(private, also, strict=True))
    # ...but into a public image's layout a 0600 inode is copied as 0644, never chmod-ed in place.
    with LayoutStore.open(tmp_path / "private") as s, LayoutStore.open_or_create(tmp_path / "public") as dst:
        public = read_image(s, s.resolve("x"))
        dst.set_names({"p": write_image(dst, public.without_annotations("dev.regfp.contains-secret"))})
    for a, b in zip(private, blob_files(tmp_path / "public", "p"), strict=True):
        assert a.name == b.name and not same_inode(a, b)
        assert (mode(a), mode(b)) == (0o600, 0o644)


def test_the_library_raises_the_digest_mismatch_of_a_corrupt_source(tmp_path: Path) -> None:
    src, desc = source(tmp_path, layers=1)
    layer = blob_files(src, "os:1")[-1]
    layer.write_bytes(b"\0" * layer.stat().st_size)
    with LayoutStore.open(src) as s, LayoutStore.open_or_create(tmp_path / "out") as dst:
        with pytest.raises(DigestMismatch):
            copy_descriptor(s, dst, desc)
        assert not dst.has_blob(read_image(s, desc).layers[0].digest)


def test_across_filesystems_the_blob_is_copied(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) here")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        src, _ = source(Path(other))
        regfp("copy", f"oci:{src}:os:1", f"oci:{tmp_path / 'out'}:base")
        for theirs, ours in zip(blob_files(src, "os:1"), blob_files(tmp_path / "out", "base"), strict=True):
            assert theirs.name == ours.name and not same_inode(theirs, ours) and ours.stat().st_nlink == 1
    assert verify_layout(LayoutStore.open(tmp_path / "out")).ok
