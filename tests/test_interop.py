"""What regfp writes, checked by independent tools: umoci unpacks it, skopeo reads and copies it, runc
runs it; and what skopeo writes, regfp verifies and reads with the same digests."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import need, regfp, regfp_json

from regctl_fp.layers import (
    Entry,
    collect_tree,
    dir_entry,
    file_entry,
    symlink_entry,
    whiteout_entry,
    write_layer,
)
from regctl_fp.oci import mediatypes as mt
from regctl_fp.oci.config import History, ImageConfig
from regctl_fp.oci.descriptor import Descriptor, Platform
from regctl_fp.oci.image import Image, Layer
from regctl_fp.oci.manifest import Index
from regctl_fp.stores.base import write_image
from regctl_fp.stores.layout import LayoutStore

EPOCH = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"  # EPOCH in RFC 3339
LONG_NAME = "usr/share/regfp/" + "d" * 80 + "/" + "f" * 90 + ".txt"  # > 100 bytes: needs a pax header
CMD = ["/bin/sh", "-c", "env; cat /etc/motd; test -e /etc/os-release || echo whiteout-ok"]


def run(*cmd: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: int = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def layer(store: LayoutStore, entries: list[Entry], compression: str) -> Layer:
    written = write_layer(entries, store.blob_sink(), mtime=EPOCH, compression=compression)
    desc = written.descriptor
    return Layer(desc, written.diff_id, lambda: store.open_blob(desc))


def build_multilayer(store: LayoutStore, rootfs: Path) -> Image:
    """Three layers (gzip, uncompressed, gzip) exercising what a real unpacker must get right:
    a pax long name, a hardlink, a symlink, owners, modes, a whiteout."""
    base = layer(store, collect_tree(rootfs), "gzip")
    payload = b"hello from layer two\n"
    extra = layer(store, [
        dir_entry("etc"),
        file_entry("etc/motd", payload),
        file_entry("etc/secret", b"s3cret\n", mode=0o600, uid=1000, gid=1000),
        Entry(b"etc/motd-link", "hardlink", 0o644, target=b"etc/motd"),
        symlink_entry("etc/motd-sym", "motd"),
        dir_entry("usr"), dir_entry("usr/share"), dir_entry("usr/share/regfp"),
        dir_entry(LONG_NAME.rsplit("/", 1)[0]),
        file_entry(LONG_NAME, b"long\n"),
    ], "none")
    gone = layer(store, [dir_entry("etc"), whiteout_entry("etc/os-release")], "gzip")
    image = Image(config=ImageConfig.new(created=CREATED).with_container(
        Env=["PATH=/bin", "GREETING=from-regfp"], Cmd=CMD))
    for lay, what in ((base, "busybox rootfs"), (extra, "motd and friends"), (gone, "drop os-release")):
        image = image.appended(lay, History(created=CREATED, created_by=f"test: {what}"))
    return image


@pytest.fixture
def dir_image(busybox_rootfs: Path, tmp_path: Path) -> tuple[Path, str, str]:
    """The busybox rootfs as a gzip dir: image written by the CLI: (layout, name, digest)."""
    out = tmp_path / "out"
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH))
    copied = regfp_json("copy", f"dir:{busybox_rootfs}", f"oci:{out}:base/busybox:1", env=env)
    return out, "base/busybox:1", copied["digest"]  # type: ignore[index]


@pytest.fixture
def multi_image(busybox_rootfs: Path, tmp_path: Path) -> tuple[Path, str, Image]:
    out = tmp_path / "multi"
    with LayoutStore.open_or_create(out) as store:
        image = build_multilayer(store, busybox_rootfs)
        store.set_names({"app/multi:1": write_image(store, image)})
    return out, "app/multi:1", image


def umoci_unpack(layout: Path, name: str, bundle: Path, env: dict[str, str]) -> Path:
    run(need("umoci"), "unpack", "--image", f"{layout}:{name}", str(bundle), env=env)
    return bundle / "rootfs"


def tree(root: Path) -> dict[str, tuple[str, int, str]]:
    """path -> (kind, permission bits, content hash or link target), for comparing two trees."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def umoci_history(layout: Path, name: str, env: dict[str, str]) -> list[dict]:
    return json.loads(run(need("umoci"), "stat", "--image", f"{layout}:{name}", "--json", env=env).stdout)["history"]


def config_of(layout: Path, name: str) -> dict:
    return regfp_json("inspect", f"oci:{layout}:{name}")["config"]["content"]  # type: ignore[index]


def runc_run(bundle: Path, args: list[str] | None) -> str:
    """Run the bundle under runc without a terminal; the container is deleted whatever happens."""
    runc = need("runc")
    config_path = bundle / "config.json"
    spec = json.loads(config_path.read_text())
    spec["process"]["terminal"] = False  # umoci writes true; there is no TTY here
    if args is not None:
        spec["process"]["args"] = args
    config_path.write_text(json.dumps(spec))
    container = f"regfp-test-{uuid.uuid4().hex[:12]}"
    try:
        return run(runc, "run", container, cwd=bundle, timeout=60).stdout
    finally:
        subprocess.run([runc, "delete", "-f", container], capture_output=True, timeout=60)


# ---- images regfp writes, read by umoci, skopeo and runc ------------------------------------------

@pytest.mark.root
def test_dir_image_unpacks_with_umoci_to_the_same_tree(dir_image: tuple[Path, str, str], busybox_rootfs: Path,
                                                       tmp_path: Path, tool_env: dict[str, str]) -> None:
    layout, name, _ = dir_image
    rootfs = umoci_unpack(layout, name, tmp_path / "bundle", tool_env)
    assert tree(rootfs) == tree(busybox_rootfs)
    # SOURCE_DATE_EPOCH reached the tar headers, and umoci applied them.
    assert (rootfs / "bin" / "busybox").stat().st_mtime == EPOCH
    assert (rootfs / "bin" / "busybox").stat().st_uid == 0


def test_dir_image_reads_the_same_in_skopeo(dir_image: tuple[Path, str, str], tool_env: dict[str, str]) -> None:
    layout, name, digest = dir_image
    skopeo = need("skopeo")
    shown = json.loads(run(skopeo, "inspect", f"oci:{layout}:{name}", env=tool_env).stdout)
    ours = regfp_json("inspect", f"oci:{layout}:{name}")
    assert shown["Digest"] == digest == ours["digest"]  # type: ignore[index]
    assert shown["Layers"] == [la["digest"] for la in ours["layers"]]  # type: ignore[index]
    assert ours["layers"][0]["mediaType"] == mt.OCI_LAYER_GZIP  # type: ignore[index]
    assert shown["Created"] == CREATED
    assert shown["Env"] == config_of(layout, name)["config"]["Env"]
    raw = run(skopeo, "inspect", "--raw", f"oci:{layout}:{name}", env=tool_env).stdout.encode()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest


def test_dir_image_history_is_valid_for_umoci(dir_image: tuple[Path, str, str], tool_env: dict[str, str]) -> None:
    layout, name, _ = dir_image
    history = umoci_history(layout, name, tool_env)
    ours = regfp_json("inspect", f"oci:{layout}:{name}")
    assert [h["layer"]["digest"] for h in history] == [la["digest"] for la in ours["layers"]]  # type: ignore[index]
    assert [h["diff_id"] for h in history] == [la["diffID"] for la in ours["layers"]]  # type: ignore[index]
    assert all(h["created"] == CREATED and h["created_by"] for h in history)


@pytest.mark.root
def test_dir_image_runs_under_runc(dir_image: tuple[Path, str, str], tmp_path: Path,
                                   tool_env: dict[str, str]) -> None:
    layout, name, _ = dir_image
    bundle = tmp_path / "bundle"
    umoci_unpack(layout, name, bundle, tool_env)
    printed = runc_run(bundle, ["/bin/env"]).splitlines()
    path = [e for e in config_of(layout, name)["config"]["Env"] if e.startswith("PATH=")]
    assert path and path[0] in printed


@pytest.mark.root
def test_multilayer_image_unpacks_with_umoci(multi_image: tuple[Path, str, Image], tmp_path: Path,
                                             tool_env: dict[str, str]) -> None:
    layout, name, _ = multi_image
    rootfs = umoci_unpack(layout, name, tmp_path / "bundle", tool_env)
    etc = rootfs / "etc"
    assert (etc / "motd").read_bytes() == b"hello from layer two\n"
    assert not (etc / "os-release").exists()  # the third layer's whiteout applied
    assert os.path.samefile(etc / "motd", etc / "motd-link")  # a hardlink, not a copy
    assert os.readlink(etc / "motd-sym") == "motd"
    secret = (etc / "secret").stat()
    assert (secret.st_uid, secret.st_gid, stat.S_IMODE(secret.st_mode)) == (1000, 1000, 0o600)
    assert (rootfs / LONG_NAME).read_bytes() == b"long\n"
    assert (rootfs / "bin" / "busybox").stat().st_mtime == EPOCH


def test_multilayer_image_reads_the_same_in_skopeo_and_umoci(multi_image: tuple[Path, str, Image],
                                                             tool_env: dict[str, str]) -> None:
    layout, name, image = multi_image
    shown = json.loads(run(need("skopeo"), "inspect", f"oci:{layout}:{name}", env=tool_env).stdout)
    assert shown["Digest"] == image.digest.text
    assert shown["Layers"] == [la.digest.text for la in image.layers]
    raw = json.loads(run(need("skopeo"), "inspect", "--raw", f"oci:{layout}:{name}", env=tool_env).stdout)
    assert [la["mediaType"] for la in raw["layers"]] == [mt.OCI_LAYER_GZIP, mt.OCI_LAYER, mt.OCI_LAYER_GZIP]
    history = umoci_history(layout, name, tool_env)
    assert [h["diff_id"] for h in history] == [la.diff_id.text for la in image.layers if la.diff_id]
    assert [h["created_by"] for h in history] == [h.created_by for h in image.config.history]
    assert regfp_json("verify", f"oci:{layout}:{name}")["ok"] is True  # type: ignore[index]


@pytest.mark.root
def test_multilayer_image_runs_its_own_cmd_under_runc(multi_image: tuple[Path, str, Image], tmp_path: Path,
                                                      tool_env: dict[str, str]) -> None:
    layout, name, _ = multi_image
    bundle = tmp_path / "bundle"
    umoci_unpack(layout, name, bundle, tool_env)
    assert json.loads((bundle / "config.json").read_text())["process"]["args"] == CMD
    printed = runc_run(bundle, None).splitlines()
    assert "GREETING=from-regfp" in printed and "PATH=/bin" in printed
    assert "hello from layer two" in printed
    assert "whiteout-ok" in printed


# ---- skopeo's copies, read by regfp ------------------------------------------------------------------

def test_skopeo_copy_of_a_regfp_image_verifies_with_the_same_digest(
        dir_image: tuple[Path, str, str], tmp_path: Path, tool_env: dict[str, str]) -> None:
    layout, name, digest = dir_image
    other = tmp_path / "skopeo-copy"
    run(need("skopeo"), "copy", "-q", f"oci:{layout}:{name}", f"oci:{other}:{name}", env=tool_env)
    verified = regfp_json("verify", f"oci:{other}:{name}")
    assert verified == {"ok": True, "verified": [name], "problems": []}
    assert regfp("verify", str(other)).returncode == 0  # the whole layout skopeo wrote
    assert regfp_json("inspect", f"oci:{other}:{name}")["digest"] == digest  # type: ignore[index]
    # And back through regfp: the chain keeps every byte.
    copied = regfp_json("copy", f"oci:{other}:{name}", f"oci:{tmp_path / 'third'}:again")
    assert copied["digest"] == digest  # type: ignore[index]


def test_skopeo_copies_of_a_multilayer_image_verify(multi_image: tuple[Path, str, Image], tmp_path: Path,
                                                    tool_env: dict[str, str]) -> None:
    layout, name, image = multi_image
    diff_ids = [la.diff_id.text for la in image.layers if la.diff_id]
    skopeo = need("skopeo")
    kept = tmp_path / "kept"
    run(skopeo, "copy", "-q", "--preserve-digests", f"oci:{layout}:{name}", f"oci:{kept}:{name}", env=tool_env)
    assert regfp_json("verify", f"oci:{kept}:{name}")["ok"] is True  # type: ignore[index]
    assert regfp_json("inspect", f"oci:{kept}:{name}")["digest"] == image.digest.text  # type: ignore[index]
    # By default skopeo gzips the uncompressed layer with its own compressor: another manifest, but the
    # same tar streams, which regfp must verify (digests of skopeo's blobs, diff_ids of their content).
    recompressed = tmp_path / "recompressed"
    run(skopeo, "copy", "-q", f"oci:{layout}:{name}", f"oci:{recompressed}:{name}", env=tool_env)
    assert regfp_json("verify", str(recompressed))["ok"] is True  # type: ignore[index]
    shown = regfp_json("inspect", f"oci:{recompressed}:{name}")
    assert [la["mediaType"] for la in shown["layers"]] == [mt.OCI_LAYER_GZIP] * 3  # type: ignore[index]
    assert [la["diffID"] for la in shown["layers"]] == diff_ids  # type: ignore[index]
    assert shown["digest"] != image.digest.text  # type: ignore[index]


def test_multi_platform_index_reads_in_skopeo_and_survives_skopeo_copy(
        multi_image: tuple[Path, str, Image], tmp_path: Path, tool_env: dict[str, str]) -> None:
    layout, _, amd64 = multi_image
    with LayoutStore.open_or_create(layout) as store:
        arm = Image(config=ImageConfig.new(architecture="arm64", variant="v8", created=CREATED))
        arm = arm.appended(layer(store, [file_entry("hello.txt", b"arm64\n")], "gzip"),
                           History(created=CREATED, created_by="test: arm64"))
        entries = []
        for img, platform in ((amd64, Platform("linux", "amd64")), (arm, Platform("linux", "arm64", "v8"))):
            written = write_image(store, img)
            entries.append(Descriptor(written.media_type, written.digest, written.size, platform=platform))
        index_bytes = Index(manifests=tuple(entries)).to_bytes()
        store.set_names({"app/both:1": store.put_manifest(index_bytes, mt.OCI_INDEX)})
    skopeo = need("skopeo")
    ref = f"oci:{layout}:app/both:1"
    assert run(skopeo, "inspect", "--raw", ref, env=tool_env).stdout.encode() == index_bytes
    for arch, img in (("amd64", amd64), ("arm64", arm)):
        shown = json.loads(run(skopeo, "--override-arch", arch, "inspect", ref, env=tool_env).stdout)
        assert shown["Architecture"] == arch
        assert shown["Layers"] == [la.digest.text for la in img.layers]
    other = tmp_path / "skopeo-all"
    run(skopeo, "copy", "-q", "--all", "--preserve-digests", ref, f"oci:{other}:app/both:1", env=tool_env)
    verified = regfp_json("verify", f"oci:{other}:app/both:1")
    assert verified["ok"] is True and len(verified["verified"]) == 2  # type: ignore[index]
    shown = regfp_json("inspect", f"oci:{other}:app/both:1")
    assert shown["digest"] == "sha256:" + hashlib.sha256(index_bytes).hexdigest()  # type: ignore[index]
    picked = regfp_json("inspect", "--platform", "linux/arm64", f"oci:{other}:app/both:1")
    assert picked["digest"] == arm.digest.text  # type: ignore[index]
