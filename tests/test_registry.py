"""regfp against the real distribution registry over plain HTTP: the Store protocol, push and pull
through the CLI in every direction, blob reuse (HEAD, mount), chunked uploads, verification on pull,
and interop with skopeo and oras as independent clients."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import need, regfp, regfp_json
from registry_support import Registry, blobs_of, make_image, random_bytes

from regctl_fp.errors import DigestMismatch, InvalidInput, NotFound, RegfpError, RegistryError, SizeMismatch
from regctl_fp.layers import file_entry, write_layer
from regctl_fp.oci import mediatypes as mt
from regctl_fp.oci.descriptor import Descriptor, Platform
from regctl_fp.oci.digest import Digest
from regctl_fp.oci.manifest import Index, Manifest
from regctl_fp.stores.layout import LayoutStore
from regctl_fp.stores.registry import RegistryStore, push_names
from regctl_fp.stores.transfer import copy_descriptor
from regctl_fp.stores.transport import ClientOptions, RegistryClient, RetryPolicy
from regctl_fp.verify import verify_layout

pytest_plugins = ["registry_fixtures"]


def client(reg: Registry | str) -> RegistryClient:
    host = reg if isinstance(reg, str) else reg.host
    return RegistryClient(host, None, ClientOptions(plain_http=True, retry=RetryPolicy(base_delay=0.01)))


def repo() -> str:
    return f"t/{uuid.uuid4().hex[:12]}"


def layout_with_image(tmp_path: Path, name: str = "app:1", **kw: object) -> tuple[LayoutStore, Descriptor]:
    store = LayoutStore.open_or_create(tmp_path / f"src-{uuid.uuid4().hex[:6]}")
    return store, make_image(store, name, **kw)


# -- the Store protocol --------------------------------------------------------------------------------
def test_push_then_pull_keeps_every_digest(registry: Registry, tmp_path: Path) -> None:
    src, desc = layout_with_image(tmp_path, layers=3)
    name = f"{repo()}:v1"
    with client(registry) as c:
        store = RegistryStore(c).repository(name.split(":")[0])
        copied = copy_descriptor(src, store, desc, jobs=4)
        store.set_names({name: copied})
        blobs = blobs_of(src, desc)
        assert c.stats.uploaded == sum(b.size for b in blobs)
    with client(registry) as c:
        store = RegistryStore(c).repository(name.split(":")[0])
        assert store.resolve(name) == Descriptor(desc.media_type, desc.digest, desc.size)
        assert store.names() == {name: store.resolve(name)}
        with LayoutStore.open_or_create(tmp_path / "pulled") as dst:
            pulled = copy_descriptor(store, dst, store.resolve(name), jobs=4)
            dst.set_names({"pulled:1": pulled})
            report = verify_layout(dst)
        assert report.ok, report.problems
        for blob in blobs:
            assert (tmp_path / "pulled/blobs/sha256" / blob.digest.hex).read_bytes() == \
                (src.path / "blobs/sha256" / blob.digest.hex).read_bytes()
    for blob in blobs:
        assert registry.has_layer_link(name.split(":")[0], blob.digest.text)


def test_repush_is_only_head_requests(registry: Registry, tmp_path: Path) -> None:
    src, desc = layout_with_image(tmp_path, layers=4)
    repository = repo()
    with client(registry) as c:
        store = RegistryStore(c).repository(repository)
        store.set_names({f"{repository}:1": copy_descriptor(src, store, desc)})
    with client(registry) as c:
        store = RegistryStore(c).repository(repository)
        store.set_names({f"{repository}:1": copy_descriptor(src, store, desc, jobs=4)})
        # one GET: the /v2/ ping that discovers the scheme and auth; everything else is a HEAD
        assert c.stats.requests == {"GET": 1, "HEAD": 4 + 1 + 1 + 1}
        assert c.stats.uploaded == 0 and c.stats.skipped == 5


def test_prefix_store_maps_names_and_mounts_between_repositories(registry: Registry, tmp_path: Path) -> None:
    src, desc = layout_with_image(tmp_path, layers=2)
    prefix = repo()
    with client(registry) as c:
        store = RegistryStore(c, prefix)
        first = store.repository("build/hello")
        copy_descriptor(src, first, desc, jobs=2)
        uploaded = c.stats.uploaded
        # the second name lives in another repository: set_names mounts the blobs there, no upload
        store.set_names({"build/hello:abc": desc, "rollouts/hello:r1": desc})
        assert c.stats.uploaded == uploaded
        assert c.stats.mounted == 3  # two layers and the config
    assert registry.tag_target(f"{prefix}/build/hello", "abc") == desc.digest.text
    assert registry.tag_target(f"{prefix}/rollouts/hello", "r1") == desc.digest.text
    with client(registry) as c:
        names = RegistryStore(c, prefix).names()
    assert set(names) == {"build/hello:abc", "rollouts/hello:r1"}
    assert {d.digest for d in names.values()} == {desc.digest}


def test_push_names_uploads_shared_blobs_once(registry: Registry, tmp_path: Path) -> None:
    src = LayoutStore.open_or_create(tmp_path / "chain")
    base = make_image(src, "base:1", layers=2)
    other = make_image(src, "other:1", layers=1)
    prefix = repo()
    names = {"build/app:abc": base, "build/app:main": base, "rollouts/app:r1": base, "tools/x:1": other}
    with client(registry) as c:
        push_names(src, RegistryStore(c, prefix), names)
        assert c.stats.uploaded == sum(b.size for b in blobs_of(src, base) + blobs_of(src, other))
        assert c.stats.mounted == 3  # base's config and layers, into rollouts/app
    for name, desc in names.items():
        rep, tag = name.split(":")
        assert registry.tag_target(f"{prefix}/{rep}", tag) == desc.digest.text


def test_unbound_prefix_store_refuses_content_without_a_repository(registry: Registry, tmp_path: Path) -> None:
    src, desc = layout_with_image(tmp_path, layers=1)
    with client(registry) as c:
        store = RegistryStore(c, repo())
        with pytest.raises(RegfpError, match=r"use store\.repository"):
            copy_descriptor(src, store, desc)
        with pytest.raises(NotFound):
            store.set_names({"never/pushed:1": desc})
        with pytest.raises(InvalidInput, match="deletes manifests, not tags"):
            store.set_names({"never/pushed:1": None})


def test_manifest_is_refused_before_its_blobs(registry: Registry, tmp_path: Path) -> None:
    src, desc = layout_with_image(tmp_path, layers=2)
    repository = repo()
    with client(registry) as c:
        store = RegistryStore(c).repository(repository)
        with pytest.raises(NotFound, match="needed by a manifest"):
            store.put_manifest(src.get_manifest(desc), desc.media_type)
        with pytest.raises(NotFound):
            store.resolve_digest(desc.digest)


def test_chunked_upload_and_streamed_layer(registry: Registry, tmp_path: Path) -> None:
    repository = repo()
    with client(registry) as c:
        store = RegistryStore(c, chunk_size=100_000, monolithic_limit=150_000).repository(repository)
        # a layer produced on the fly goes straight to the registry through blob_sink
        written = write_layer([file_entry("big.bin", random_bytes(repository, 400_000))], store.blob_sink(),
                              mtime=0, compression="none")
        assert c.stats.requests.get("PATCH") == 5  # 400 KB of data + tar headers in 100 KB chunks
        assert store.has_blob(written.descriptor.digest)
        assert store.read_blob(written.descriptor, 1 << 20)[-1024:] == bytes(1024)  # verified, tar trailer


def test_blob_streams_verify_digest_and_size(registry: Registry, tmp_path: Path) -> None:
    src, desc = layout_with_image(tmp_path, layers=1)
    repository = repo()
    with client(registry) as c:
        store = RegistryStore(c).repository(repository)
        copy_descriptor(src, store, desc)
        layer = blobs_of(src, desc)[1]
        lying_size = Descriptor(layer.media_type, layer.digest, layer.size - 1)
        with pytest.raises(SizeMismatch), store.open_blob(lying_size) as f:
            while f.read(1 << 16):
                pass
        unknown = Descriptor(layer.media_type, Digest.of(b"nope"), 4)
        with pytest.raises(NotFound):
            store.open_blob(unknown)
        # a one-shot stream with the wrong bytes is refused before anything is uploaded
        import io

        with pytest.raises(DigestMismatch):
            store.put_blob(io.BytesIO(b"x" * 4), unknown)
        assert not store.has_blob(unknown.digest)


# -- the CLI -------------------------------------------------------------------------------------------
def test_cli_copy_in_every_direction(registry: Registry, busybox_rootfs: Path, tmp_path: Path) -> None:
    a = f"{registry.host}/{repo()}:1"
    b = f"{registry.host}/{repo()}:2"
    pushed = regfp_json("copy", f"dir:{busybox_rootfs}", a)
    from_dir = regfp_json("copy", f"dir:{busybox_rootfs}", f"oci:{tmp_path}/ref:x")
    assert pushed["digest"] == from_dir["digest"]  # the same tree gives the same image anywhere
    pulled = regfp_json("copy", a, f"oci:{tmp_path}/pulled:x")
    assert pulled["digest"] == pushed["digest"]
    assert regfp("verify", str(tmp_path / "pulled")).returncode == 0
    across = regfp_json("copy", a, b)
    assert across["digest"] == pushed["digest"]
    back = regfp_json("copy", f"oci:{tmp_path}/pulled:x", f"{b.rsplit(':', 1)[0]}:3")
    assert back["digest"] == pushed["digest"]
    shown = regfp_json("inspect", b)
    assert shown["digest"] == pushed["digest"] and len(shown["layers"]) == 1
    by_digest = regfp_json("inspect", f"{b.rsplit(':', 1)[0]}@{pushed['digest']}")
    assert by_digest["digest"] == pushed["digest"]


def test_cli_registry_errors_are_clear(registry: Registry) -> None:
    missing = regfp("inspect", f"{registry.host}/{repo()}:nope", check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr and "Traceback" not in missing.stderr
    with socket_free_port() as port:
        down = regfp("inspect", f"127.0.0.1:{port}/a/b:1", check=False)
    assert down.returncode == 1
    assert f"GET http://127.0.0.1:{port}/v2/" in down.stderr and "cannot connect" in down.stderr
    bad = regfp("copy", "oci:/nonexistent:x", f"{registry.host}/Upper/Case:1", check=False)
    assert bad.returncode == 2 and "not a valid repository name" in bad.stderr


class socket_free_port:
    def __enter__(self) -> int:
        import socket

        self._s = socket.socket()
        self._s.bind(("127.0.0.1", 0))
        return self._s.getsockname()[1]  # bound, never listening: connections are refused

    def __exit__(self, *exc: object) -> None:
        self._s.close()


def test_index_of_two_platforms_all_or_one(registry: Registry, tmp_path: Path, tool_env: dict[str, str]) -> None:
    store = LayoutStore.open_or_create(tmp_path / "multi")
    amd = make_image(store, "amd:1", layers=1, platform=("linux", "amd64"))
    arm = make_image(store, "arm:1", layers=2, platform=("linux", "arm64"))
    index = Index(manifests=(Descriptor(amd.media_type, amd.digest, amd.size, platform=Platform("linux", "amd64")),
                             Descriptor(arm.media_type, arm.digest, arm.size, platform=Platform("linux", "arm64"))))
    idx = store.put_manifest(index.to_bytes(), mt.OCI_INDEX)
    store.set_names({"multi:1": idx})
    target = f"{registry.host}/{repo()}:multi"
    assert regfp_json("copy", f"oci:{tmp_path}/multi:multi:1", target)["digest"] == idx.digest.text
    raw = subprocess.run([need("skopeo"), "inspect", "--raw", "--tls-verify=false", f"docker://{target}"],
                         env=tool_env, capture_output=True, check=True).stdout
    assert hashlib.sha256(raw).hexdigest() == idx.digest.hex
    every = regfp_json("copy", target, f"oci:{tmp_path}/all:m")
    assert every["digest"] == idx.digest.text and every["mediaType"] == mt.OCI_INDEX
    assert regfp("verify", str(tmp_path / "all")).returncode == 0
    one = regfp_json("copy", "--platform", "linux/arm64", target, f"oci:{tmp_path}/one:m")
    assert one["digest"] == arm.digest.text
    assert not (tmp_path / "one/blobs/sha256" / amd.digest.hex).exists()
    listed = regfp_json("inspect", target)
    assert [m["digest"] for m in listed["manifests"]] == [amd.digest.text, arm.digest.text]


def test_corrupt_blob_in_the_registry_is_caught_on_pull(make_registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    reg = make_registry()
    src, desc = layout_with_image(tmp_path, layers=2)
    target = f"{reg.host}/{repo()}:1"
    regfp("copy", f"oci:{src.path}:app:1", target)
    layer = blobs_of(src, desc)[2]
    data = reg.blob_data(layer.digest.text)
    good = data.read_bytes()
    data.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])  # one flipped bit, same size
    out = tmp_path / "pulled"
    failed = regfp("copy", target, f"oci:{out}:x", check=False)
    assert failed.returncode == 1
    assert "digest mismatch" in failed.stderr and layer.digest.text in failed.stderr
    assert not (out / "blobs/sha256" / layer.digest.hex).exists()
    assert json.loads((out / "index.json").read_text())["manifests"] == []  # no name points anywhere
    assert list((out / ".regfp/tmp").glob("*")) == []  # and no half-written blob is left behind
    data.write_bytes(good[:-10])  # truncated
    short = regfp("copy", target, f"oci:{out}:x", check=False)
    assert short.returncode == 1 and "size mismatch" in short.stderr


# -- interop ---------------------------------------------------------------------------------------------
def test_skopeo_fetches_what_regfp_pushed(make_registry, busybox_rootfs: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                          tool_env: dict[str, str]) -> None:
    reg = make_registry()  # fresh: skopeo must find every blob where regfp put it
    src, desc = layout_with_image(tmp_path, layers=3)
    target = f"{reg.host}/acme/app:1"
    pushed = regfp_json("copy", f"oci:{src.path}:app:1", target)
    assert pushed["digest"] == desc.digest.text
    out = tmp_path / "skopeo-out"
    subprocess.run([need("skopeo"), "copy", "--src-tls-verify=false", f"docker://{target}", f"oci:{out}:got"],
                   env=tool_env, capture_output=True, check=True)
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == desc.digest.text
    inspected = json.loads(subprocess.run([need("skopeo"), "inspect", "--tls-verify=false", f"docker://{target}"],
                                          env=tool_env, capture_output=True, check=True).stdout)
    assert inspected["Digest"] == desc.digest.text
    assert inspected["Layers"] == [b.digest.text for b in blobs_of(src, desc)[1:]]
    assert regfp("verify", str(out)).returncode == 0


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_regfp_pulls_what_skopeo_pushed(make_registry, busybox_rootfs: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                        tool_env: dict[str, str], fmt: str) -> None:
    reg = make_registry()
    layout = tmp_path / "built"
    regfp("copy", f"dir:{busybox_rootfs}", f"oci:{layout}:base:1")
    target = f"{reg.host}/from/skopeo:{fmt}"
    subprocess.run([need("skopeo"), "copy", "--dest-tls-verify=false", "--format", fmt, f"oci:{layout}:base:1",
                    f"docker://{target}"], env=tool_env, capture_output=True, check=True)
    raw = subprocess.run([need("skopeo"), "inspect", "--raw", "--tls-verify=false", f"docker://{target}"],
                         env=tool_env, capture_output=True, check=True).stdout
    pulled = regfp_json("copy", target, f"oci:{tmp_path}/pulled:x")
    assert pulled["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    want = mt.DOCKER_MANIFEST if fmt == "v2s2" else mt.OCI_MANIFEST
    assert pulled["mediaType"] == want == json.loads(raw)["mediaType"]
    assert regfp("verify", str(tmp_path / "pulled")).returncode == 0
    assert regfp_json("inspect", target)["digest"] == pulled["digest"]


def test_oras_pulls_an_artifact_regfp_pushed(registry: Registry, tmp_path: Path) -> None:
    oras_client = pytest.importorskip("oras.client")
    payload = random_bytes("artifact", 3000)
    layer = Descriptor("application/vnd.regfp.test.data", Digest.of(payload), len(payload),
                       annotations={"org.opencontainers.image.title": "data.bin"})
    empty = Descriptor(mt.OCI_EMPTY, Digest.of(mt.EMPTY_JSON), len(mt.EMPTY_JSON))
    manifest = Manifest(config=empty, layers=(layer,), artifact_type="application/vnd.regfp.test")
    repository = repo()
    import io

    with client(registry) as c:
        store = RegistryStore(c).repository(repository)
        store.put_blob(io.BytesIO(payload), layer)
        store.put_blob(io.BytesIO(mt.EMPTY_JSON), empty)
        desc = store.put_manifest(manifest.to_bytes(), mt.OCI_MANIFEST)
        store.set_names({f"{repository}:art": desc})
    oras = oras_client.OrasClient(insecure=True)
    files = oras.pull(target=f"{registry.host}/{repository}:art", outdir=str(tmp_path / "oras"))
    assert [Path(f).name for f in files] == ["data.bin"]
    assert (tmp_path / "oras/data.bin").read_bytes() == payload
    got = oras.get_manifest(f"{registry.host}/{repository}:art")
    assert got["artifactType"] == "application/vnd.regfp.test" and got["layers"][0]["digest"] == layer.digest.text


def test_load_image_reads_a_registry_reference_through_the_given_opener(registry: Registry, tmp_path: Path) -> None:
    from regctl_fp.errors import RefError
    from regctl_fp.refs import parse_ref
    from regctl_fp.sources import load_image

    src, desc = layout_with_image(tmp_path, layers=2)
    target = f"{registry.host}/{repo()}:1"
    regfp("copy", f"oci:{src.path}:app:1", target)
    ref = parse_ref(target)
    with pytest.raises(RefError, match="no registry access"):
        load_image(ref, work=None)
    with client(registry) as c:
        def opener(r):  # type: ignore[no-untyped-def]
            store = RegistryStore.for_ref(c, r)
            return store, store.resolve(RegistryStore.name_of(r))

        img = load_image(ref, work=None, registry=opener)
        assert img.digest == desc.digest
        with img.layers[1].open() as f:  # layers stream from the registry, verified at the end
            data = b"".join(iter(lambda: f.read(1 << 16), b""))
        assert hashlib.sha256(data).hexdigest() == img.layers[1].digest.hex


def test_registry_error_names_method_url_status_and_code(registry: Registry) -> None:
    repository = repo()
    with client(registry) as c:
        store = RegistryStore(c).repository(repository)
        bogus = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
        with pytest.raises(RegistryError) as info:
            store.put_manifest(bogus, mt.DOCKER_MANIFEST)  # the body says OCI, Content-Type says Docker
    err = info.value
    assert err.method == "PUT" and err.status == 400 and err.code == "MANIFEST_INVALID"
    assert err.url == f"http://{registry.host}/v2/{repository}/manifests/{Digest.of(bogus)}"
    assert str(err).startswith(f"PUT {err.url}: HTTP 400 MANIFEST_INVALID")
