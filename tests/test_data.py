"""``regfp data push`` / ``data pull``: files and directories as OCI artifacts in layouts and the real
registry, checked against the OCI artifact guidance field by field, against oras-py as an independent
client in both directions, and against hostile artifacts (titles and tar entries that try to escape)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import uuid
from pathlib import Path

import pytest
from conftest import regfp, regfp_json
from registry_support import Registry

from regctl_fp.oci import mediatypes as mt
from regctl_fp.oci.descriptor import Descriptor
from regctl_fp.oci.digest import Digest
from regctl_fp.stages.data import TITLE, UNPACK, artifact_image
from regctl_fp.stores.base import write_image
from regctl_fp.stores.layout import LayoutStore

pytest_plugins = ["registry_fixtures"]

EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def make_inputs(root: Path) -> tuple[Path, Path]:
    """A file and a directory tree with a nested directory, an executable, an empty file and a symlink."""
    root.mkdir(parents=True, exist_ok=True)
    f = root / "model.bin"
    f.write_bytes(hashlib.sha256(b"seed").digest() * 3000)
    d = root / "assets"
    (d / "nested" / "deeper").mkdir(parents=True)
    (d / "readme.txt").write_text("hello data\n")
    (d / "nested" / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(d / "nested" / "run.sh", 0o755)
    (d / "nested" / "deeper" / "empty").write_bytes(b"")
    os.symlink("../readme.txt", d / "nested" / "link")
    return f, d


def tree_of(root: Path) -> dict[str, tuple[str, object]]:
    """Every path below ``root``: (kind, content hash / link target / mode bits that matter)."""
    out: dict[str, tuple[str, object]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", None)
            else:
                out[rel] = ("file", (hashlib.sha256(p.read_bytes()).hexdigest(), bool(st.st_mode & 0o100)))
    return out


def layout_manifest(layout: Path, name: str) -> tuple[dict, str]:
    index = json.loads((layout / "index.json").read_text())
    entry = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == name)
    digest = entry["digest"]
    return json.loads(blob(layout, digest)), digest


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def repo() -> str:
    return f"data/{uuid.uuid4().hex[:12]}"


# -- format and round trip ------------------------------------------------------------------------------
def test_push_writes_the_oci_artifact_format_and_pull_restores_it(tmp_path: Path) -> None:
    f, d = make_inputs(tmp_path / "in")
    layout = tmp_path / "out"
    out = regfp_json("data", "push", str(f), str(d), "--to", f"oci:{layout}:datasets/demo:1",
                     "--annotation", "org.example.purpose=test", "--annotation", "empty=")
    manifest, digest = layout_manifest(layout, "datasets/demo:1")
    assert out["digest"] == digest
    assert manifest["mediaType"] == mt.OCI_MANIFEST and manifest["schemaVersion"] == 2
    assert manifest["artifactType"] == "application/vnd.regfp.data.v1"
    assert manifest["config"] == {"mediaType": mt.OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2}
    assert blob(layout, EMPTY_DIGEST) == b"{}"
    assert manifest["annotations"] == {"org.example.purpose": "test", "empty": ""}
    file_layer, dir_layer = manifest["layers"]
    assert file_layer["mediaType"] == "application/octet-stream"
    assert file_layer["annotations"] == {TITLE: "model.bin"}
    assert blob(layout, file_layer["digest"]) == f.read_bytes()  # stored as it is
    assert dir_layer["mediaType"] == mt.OCI_LAYER_GZIP
    tar_bytes = gzip.decompress(blob(layout, dir_layer["digest"]))
    assert dir_layer["annotations"] == {TITLE: "assets", UNPACK: "true",
                                        "io.deis.oras.content.digest": Digest.of(tar_bytes).text}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == ["assets", "assets/nested", "assets/nested/deeper", "assets/nested/deeper/empty",
                     "assets/nested/link", "assets/nested/run.sh", "assets/readme.txt"]
    assert {(m.uid, m.gid, m.mtime, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    dest = tmp_path / "pulled"
    pulled = regfp_json("data", "pull", f"oci:{layout}:datasets/demo:1", str(dest))
    assert [(p["path"], p["kind"]) for p in pulled["files"]] == [("model.bin", "file"), ("assets", "directory")]
    assert tree_of(dest) == {"model.bin": tree_of(tmp_path / "in")["model.bin"],
                             **{f"assets/{k}" if k != "." else "assets": v for k, v in tree_of(d).items()},
                             "assets": ("dir", None)}
    assert not any(p.name.startswith(".regfp-pull") for p in dest.iterdir())


def test_same_inputs_give_the_same_digest_whatever_the_mtimes_or_location(tmp_path: Path) -> None:
    f, d = make_inputs(tmp_path / "a")
    first = regfp_json("data", "push", str(f), str(d), "--to", f"oci:{tmp_path}/l1:x:1")["digest"]
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    for p in (tmp_path / "b").rglob("*"):
        os.utime(p, (1_234_567, 1_234_567), follow_symlinks=False)
    again = regfp_json("data", "push", str(tmp_path / "b/model.bin"), str(tmp_path / "b/assets"),
                       "--to", f"oci:{tmp_path}/l2:y:2")["digest"]
    assert again == first
    (tmp_path / "b/assets/readme.txt").write_text("hello data!\n")
    changed = regfp_json("data", "push", str(tmp_path / "b/model.bin"), str(tmp_path / "b/assets"),
                         "--to", f"oci:{tmp_path}/l3:y:2")["digest"]
    assert changed != first


def test_zstd_and_custom_types_round_trip(tmp_path: Path) -> None:
    f, d = make_inputs(tmp_path / "in")
    layout = tmp_path / "out"
    regfp("data", "push", str(d), str(f), "--to", f"oci:{layout}:z:1", "--compression", "zstd",
          "--artifact-type", "application/vnd.example.dataset.v2", "--media-type", "application/vnd.example.blob")
    manifest, _ = layout_manifest(layout, "z:1")
    assert manifest["artifactType"] == "application/vnd.example.dataset.v2"
    assert [la["mediaType"] for la in manifest["layers"]] == [mt.OCI_LAYER_ZSTD, "application/vnd.example.blob"]
    regfp("data", "pull", f"oci:{layout}:z:1", str(tmp_path / "pulled"))
    assert tree_of(tmp_path / "pulled/assets") == tree_of(d)
    assert (tmp_path / "pulled/model.bin").read_bytes() == f.read_bytes()


def test_bad_inputs_fail_cleanly_and_create_nothing(tmp_path: Path) -> None:
    f, _ = make_inputs(tmp_path / "in")
    layout = tmp_path / "never"
    for args, message in (
        (["data", "push", str(tmp_path / "missing.bin"), "--to", f"oci:{layout}:x:1"], "no such file"),
        (["data", "push", str(f), str(f), "--to", f"oci:{layout}:x:1"], "titles must be unique"),
        (["data", "push", str(f), "--to", f"dir:{tmp_path}"], "cannot be a destination"),
        (["data", "push", str(f), "--to", f"oci:{layout}:x:1", "--annotation", "novalue"], "KEY=VALUE"),
        (["data", "push", str(f), "--to", f"oci:{layout}:x:1", "--compression", "lz4"], "unknown compression"),
        (["data", "push", str(f), "--to", f"oci:{layout}:x:1", "--artifact-type", "not a type"], "media type"),
    ):
        proc = regfp(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not layout.exists()


def test_pull_verifies_the_blobs_and_writes_nothing_when_one_is_corrupt(tmp_path: Path) -> None:
    f, d = make_inputs(tmp_path / "in")
    layout = tmp_path / "out"
    regfp("data", "push", str(f), str(d), "--to", f"oci:{layout}:c:1")
    manifest, _ = layout_manifest(layout, "c:1")
    victim = layout / "blobs/sha256" / manifest["layers"][1]["digest"].split(":")[1]
    os.chmod(victim, 0o644)
    data = bytearray(victim.read_bytes())
    data[-12] ^= 0xFF  # inside the gzip trailer region: the bytes change, the digest must catch it
    victim.write_bytes(bytes(data))
    dest = tmp_path / "pulled"
    proc = regfp("data", "pull", f"oci:{layout}:c:1", str(dest), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "mismatch" in proc.stderr or "not a readable" in proc.stderr or "CRC" in proc.stderr
    assert list(dest.iterdir()) == []  # the good file layer was not placed either


def test_pull_refuses_a_container_image(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_text("a")
    regfp("copy", f"dir:{tree}", f"oci:{tmp_path}/l:img:1")
    proc = regfp("data", "pull", f"oci:{tmp_path}/l:img:1", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2 and "container image" in proc.stderr


# -- hostile artifacts ----------------------------------------------------------------------------------
def hostile_layout(tmp_path: Path, layers: list[tuple[bytes, str, dict[str, str]]]) -> str:
    """An artifact with exactly these layers (bytes, media type, annotations), bypassing regfp's checks."""
    layout = tmp_path / f"hostile-{uuid.uuid4().hex[:6]}"
    with LayoutStore.open_or_create(layout) as store:
        built = []
        for data, media_type, annotations in layers:
            desc = Descriptor(media_type, Digest.of(data), len(data), annotations=annotations)
            store.put_blob(io.BytesIO(data), desc)
            from regctl_fp.oci.image import Layer

            built.append(Layer(desc, None, lambda desc=desc: store.open_blob(desc)))
        image = artifact_image(tuple(built), "application/vnd.regfp.data.v1", {})
        store.set_names({"evil:1": write_image(store, image)})
    return f"oci:{layout}:evil:1"


def tar_gz(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(buf.getvalue(), mtime=0)


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = mode
    return info


@pytest.mark.parametrize("title", ["../../etc/passwd", "/etc/passwd", "a/../../b", "x\0y", "..", "", "./"])
def test_titles_that_escape_are_refused_and_nothing_is_written(tmp_path: Path, title: str) -> None:
    ref = hostile_layout(tmp_path, [(b"good", "application/octet-stream", {TITLE: "fine.txt"}),
                                    (b"root:x:0:0::/root:/bin/sh\n", "application/octet-stream", {TITLE: title})])
    dest = tmp_path / "w" / "dest"
    proc = regfp("data", "pull", ref, str(dest), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "refusing title" in proc.stderr and "nothing was written" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "etc").exists() and not (tmp_path / "w" / "b").exists()
    assert not dest.exists() or list(dest.iterdir()) == []


def test_duplicate_and_nested_titles_are_refused(tmp_path: Path) -> None:
    for second in ("same.txt", "same.txt/inner"):
        ref = hostile_layout(tmp_path, [(b"1", "application/octet-stream", {TITLE: "same.txt"}),
                                        (b"2", "application/octet-stream", {TITLE: second})])
        proc = regfp("data", "pull", ref, str(tmp_path / "dest"), check=False)
        assert proc.returncode == 2 and "refusing title" in proc.stderr
    assert not (tmp_path / "dest").exists() or list((tmp_path / "dest").iterdir()) == []


@pytest.mark.parametrize("members, reason", [
    ([(entry("d/"), None), (entry("d/../../escape"), b"x")], "'..'"),
    ([(entry("/d/abs"), b"x")], "absolute"),
    ([(entry("d", tarfile.DIRTYPE, mode=0o755), None), (entry("d/link", tarfile.SYMTYPE, "/tmp"), None),
      (entry("d/link/planted"), b"x")], "symlink"),
    ([(entry("d", tarfile.DIRTYPE, mode=0o755), None), (entry("d/h", tarfile.LNKTYPE, "etc/passwd"), None)],
     "hard-links"),
    ([(entry("d", tarfile.DIRTYPE, mode=0o755), None), (entry("d/null", tarfile.CHRTYPE), None)], "device node"),
    ([(entry("d", tarfile.DIRTYPE, mode=0o755), None), (entry("d/fifo", tarfile.FIFOTYPE), None)], "FIFO"),
    ([(entry("other/x"), b"x")], "outside it"),
])
def test_hostile_directory_layers_are_refused(tmp_path: Path, members: list, reason: str) -> None:
    ref = hostile_layout(tmp_path, [(tar_gz(*members), mt.OCI_LAYER_GZIP, {TITLE: "d", UNPACK: "true"})])
    dest = tmp_path / "deep" / "dest"
    proc = regfp("data", "pull", ref, str(dest), check=False)
    assert proc.returncode == 2, proc.stderr
    assert reason in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "deep" / "escape").exists() and not Path("/tmp/planted").exists()
    assert list(dest.iterdir()) == []


def test_symlinks_already_in_the_destination_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "sub")
    ref = hostile_layout(tmp_path, [(b"payload", "application/octet-stream", {TITLE: "sub/file.txt"})])
    proc = regfp("data", "pull", ref, str(dest), "--overwrite", check=False)
    assert proc.returncode == 2 and "symlink" in proc.stderr
    assert list(outside.iterdir()) == []
    # A symlink where a whole titled directory goes is replaced, not written through.
    _, d = make_inputs(tmp_path / "in")
    os.symlink(outside, dest / "assets")
    regfp("data", "push", str(d), "--to", f"oci:{tmp_path}/ok:ok:1")
    assert regfp("data", "pull", f"oci:{tmp_path}/ok:ok:1", str(dest), check=False).returncode == 2
    regfp("data", "pull", f"oci:{tmp_path}/ok:ok:1", str(dest), "--overwrite")
    assert not (dest / "assets").is_symlink() and tree_of(dest / "assets") == tree_of(d)
    assert list(outside.iterdir()) == []


# -- the real registry and oras-py ----------------------------------------------------------------------
def test_oras_pulls_what_regfp_pushed(registry: Registry, tmp_path: Path) -> None:
    oras_client = pytest.importorskip("oras.client")
    f, d = make_inputs(tmp_path / "in")
    target = f"{registry.host}/{repo()}:v1"
    pushed = regfp_json("data", "push", str(f), str(d), "--to", target)
    client = oras_client.OrasClient(insecure=True)
    manifest = client.get_manifest(target)
    assert manifest["artifactType"] == "application/vnd.regfp.data.v1"
    assert manifest["config"]["mediaType"] == mt.OCI_EMPTY
    assert hashlib.sha256(json.dumps(manifest).encode()).hexdigest() != ""  # parsed by an independent client
    files = client.pull(target=target, outdir=str(tmp_path / "oras"))
    assert sorted(Path(p).name for p in files) == ["assets", "model.bin"]
    assert (tmp_path / "oras/model.bin").read_bytes() == f.read_bytes()
    assert tree_of(tmp_path / "oras/assets") == tree_of(d)
    # regfp reads it back from the registry too, by tag and by digest.
    regfp("data", "pull", f"{registry.host}/{target.split('/', 1)[1].split(':')[0]}@{pushed['digest']}",
          str(tmp_path / "back"))
    assert tree_of(tmp_path / "back") == tree_of(tmp_path / "oras")


def test_regfp_pulls_what_oras_pushed(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    oras_client = pytest.importorskip("oras.client")
    f, d = make_inputs(tmp_path / "in")
    target = f"{registry.host}/{repo()}:from-oras"
    monkeypatch.chdir(tmp_path / "in")  # oras-py wants paths below the working directory
    oras_client.OrasClient(insecure=True).push(target=target, files=["model.bin", "assets"], quiet=True)
    dest = tmp_path / "pulled"
    out = regfp_json("data", "pull", target, str(dest))
    assert sorted((p["path"], p["kind"]) for p in out["files"]) == [("assets", "directory"), ("model.bin", "file")]
    assert (dest / "model.bin").read_bytes() == f.read_bytes()
    assert tree_of(dest / "assets") == tree_of(d)


def test_a_hostile_title_from_the_registry_is_refused(registry: Registry, tmp_path: Path) -> None:
    from regctl_fp.stores.registry import RegistryStore
    from regctl_fp.stores.transport import ClientOptions, RegistryClient

    repository = repo()
    payload = b"pwned\n"
    desc = Descriptor("application/octet-stream", Digest.of(payload), len(payload),
                      annotations={TITLE: "../../etc/passwd"})
    with RegistryClient(registry.host, None, ClientOptions(plain_http=True)) as c:
        store = RegistryStore(c).repository(repository)
        store.put_blob(io.BytesIO(payload), desc)
        from regctl_fp.oci.image import Layer

        image = artifact_image((Layer(desc, None, lambda: store.open_blob(desc)),), "application/x.evil", {})
        store.set_names({f"{repository}:evil": write_image(store, image)})
    dest = tmp_path / "a" / "b" / "dest"
    proc = regfp("data", "pull", f"{registry.host}/{repository}:evil", str(dest), check=False)
    assert proc.returncode == 2
    assert "refusing title '../../etc/passwd'" in proc.stderr
    assert not (tmp_path / "a" / "etc").exists()
