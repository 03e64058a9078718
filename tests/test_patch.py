"""The patch stage and ``mutate.rebase``: swap the OS base under an app without touching its layers."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import need, regfp, regfp_json, run_image
from hypothesis import given, settings
from hypothesis import strategies as st
from project import build, make_project

from regctl_fp.layers import dir_entry, file_entry, opaque_entry, whiteout_entry, write_layer
from regctl_fp.mutate import RebaseError, rebase
from regctl_fp.oci import mediatypes as mt
from regctl_fp.oci.config import History, ImageConfig
from regctl_fp.oci.descriptor import Descriptor
from regctl_fp.oci.digest import Digest
from regctl_fp.oci.image import Image, Layer
from regctl_fp.stores.base import write_image
from regctl_fp.stores.layout import LayoutStore

# ---- rebase as a pure function ---------------------------------------------------------------------


def _unreadable() -> object:
    raise AssertionError("rebase must not read a layer blob")


def fake_layer(seed: str) -> Layer:
    blob = Digest.of(f"blob {seed}".encode())
    return Layer(Descriptor(mt.OCI_LAYER_GZIP, blob, 100 + len(seed)), Digest.of(f"tar {seed}".encode()),
                 _unreadable)  # type: ignore[arg-type]


def base_image(tag: str, n_layers: int, env: dict[str, str], labels: dict[str, str], cmd: list[str] | None,
               arch: str = "amd64") -> Image:
    cfg = ImageConfig.new(architecture=arch, created="2020-01-01T00:00:00Z").with_env(env)
    if labels:
        cfg = cfg.with_labels(labels)
    if cmd is not None:
        cfg = cfg.with_container(Cmd=cmd)
    img = Image(config=cfg)
    for i in range(n_layers):
        img = img.appended(fake_layer(f"{tag}-{i}"), History(created="2020-01-01T00:00:00Z",
                                                              created_by=f"{tag} layer {i}"))
    return img


def app_on(base: Image, n_layers: int, env: dict[str, str], labels: dict[str, str],
           entrypoint: list[str] | None) -> Image:
    img = base
    for i in range(n_layers):
        img = img.appended(fake_layer(f"app-{i}"), History(created="2021-01-01T00:00:00Z",
                                                            created_by=f"app layer {i}"))
    cfg = img.config.with_env(env).with_fields(created="2021-01-01T00:00:00Z")
    if labels:
        cfg = cfg.with_labels(labels)
    if entrypoint is not None:
        cfg = cfg.with_container(Entrypoint=entrypoint, Cmd=None)
    return img.with_config(cfg).with_annotations({"org.opencontainers.image.base.name": "a",
                                                  "org.opencontainers.image.base.digest": base.digest.text,
                                                  "dev.regfp.channel": "stable"})


names = st.sampled_from(["PATH", "LANG", "HOME", "TZ", "SSL_CERT_FILE", "JAVA_HOME"])
values = st.sampled_from(["/usr/bin:/bin", "C.UTF-8", "/root", "UTC", "x", "y"])
env_maps = st.dictionaries(names, values, max_size=4)
# What the app sets is drawn from values no base uses: a value equal to a base default is, by design,
# indistinguishable from an inherited one (see mutate._merge_env).
app_values = st.sampled_from(["app-1", "app-2", "/app/bin:/usr/bin"])
app_env = st.dictionaries(st.sampled_from(["PORT", "MODE", "PATH", "LANG"]), app_values, max_size=3)
label_maps = st.dictionaries(st.sampled_from(["vendor", "os", "app"]), values, max_size=2)
app_labels = st.dictionaries(st.sampled_from(["vendor", "os", "app"]), app_values, max_size=2)
cmds = st.one_of(st.none(), st.lists(st.sampled_from(["/bin/sh", "-c", "run"]), min_size=1, max_size=2))


@settings(max_examples=200, deadline=None)
@given(a_layers=st.integers(1, 4), b_layers=st.integers(1, 4), app_layers=st.integers(0, 3),
       a_env=env_maps, b_env=env_maps, a_labels=label_maps, b_labels=label_maps, a_cmd=cmds, b_cmd=cmds,
       env=app_env, labels=app_labels, entrypoint=st.one_of(st.none(), st.just(["/app/run"])))
def test_rebase_round_trip_restores_the_manifest_digest(a_layers: int, b_layers: int, app_layers: int,
                                                        a_env: dict[str, str], b_env: dict[str, str],
                                                        a_labels: dict[str, str], b_labels: dict[str, str],
                                                        a_cmd: list[str] | None, b_cmd: list[str] | None,
                                                        env: dict[str, str], labels: dict[str, str],
                                                        entrypoint: list[str] | None) -> None:
    a = base_image("a", a_layers, a_env, a_labels, a_cmd)
    b = base_image("b", b_layers, b_env, b_labels, b_cmd)
    x = app_on(a, app_layers, env, labels, entrypoint)
    y = rebase(x, a, b, base_name="b", channel="current")
    assert [la.digest for la in y.layers] == [la.digest for la in (*b.layers, *x.layers[a_layers:])]
    assert y.config.diff_ids == tuple(la.diff_id for la in y.layers)
    assert y.annotations["org.opencontainers.image.base.digest"] == b.digest.text
    assert y.annotations["dev.regfp.channel"] == "current"
    for key, value in env.items():  # what the app set survives
        if a_env.get(key) != value:
            assert f"{key}={value}" in y.config.env
    z = rebase(y, b, a, base_name="a", channel="stable")
    assert z.digest == x.digest
    assert z.manifest_bytes == x.manifest_bytes


def test_rebase_takes_base_defaults_the_app_did_not_override() -> None:
    a = base_image("a", 1, {"PATH": "/a/bin", "LANG": "C"}, {"os": "a"}, ["/bin/sh"])
    b = base_image("b", 2, {"PATH": "/b/bin", "TZ": "UTC"}, {"os": "b"}, ["/bin/bash"])
    x = app_on(a, 1, {"LANG": "C.UTF-8", "PORT": "8080"}, {"app": "x"}, None)
    y = rebase(x, a, b, base_name="b")
    assert y.config.env == ("PATH=/b/bin", "TZ=UTC", "LANG=C.UTF-8", "PORT=8080")
    assert y.config.cmd == ("/bin/bash",)
    assert dict(y.config.labels) == {"os": "b", "app": "x"}
    assert "dev.regfp.channel" not in y.annotations


def test_rebase_refuses_a_base_that_is_not_a_prefix() -> None:
    a = base_image("a", 2, {}, {}, None)
    other = base_image("other", 2, {}, {}, None)
    x = app_on(a, 1, {}, {}, None)
    with pytest.raises(RebaseError, match="layer 0"):
        rebase(x, other, a, base_name="a")


def test_rebase_refuses_another_architecture() -> None:
    a = base_image("a", 1, {}, {}, None)
    arm = base_image("arm", 1, {}, {}, None, arch="arm64")
    with pytest.raises(Exception, match="architecture 'arm64'"):
        rebase(app_on(a, 1, {}, {}, None), a, arm, base_name="arm")


# ---- the recipe's patch stage, end to end ---------------------------------------------------------


def run_in_runc(layout: Path, name: str, tmp: Path, env: dict[str, str]) -> str:
    run = run_image(layout, name, tmp / f"bundle-{name.rsplit(':', 1)[1]}", env)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_three_channels_three_answers_under_runc(tmp_path: Path, tool_env: dict[str, str]) -> None:
    repo = make_project(tmp_path, runnable=True)
    result = build(tmp_path)
    sha = repo.git("rev-parse", "HEAD")
    by_name = {i["name"]: i for i in result["images"]}
    build_layers = regfp_json("inspect", f"oci:{tmp_path / 'out'}:build/src:{sha}")["layers"]
    for n, channel in enumerate(("stable", "current", "next"), start=1):
        name = f"patch/src/{sha}:{channel}"
        assert name in by_name and by_name[name]["stage"] == "patch"
        shown = regfp_json("inspect", f"oci:{tmp_path / 'out'}:{name}")
        assert shown["annotations"]["dev.regfp.channel"] == channel
        # The application's layers are the build's, blob for blob.
        assert [la["digest"] for la in shown["layers"][1:]] == [la["digest"] for la in build_layers[1:]]
        out = run_in_runc(tmp_path / "out", name, tmp_path, tool_env)
        assert f"hello hi on ID=test-os-{n}" in out
    assert regfp("verify", str(tmp_path / "out")).returncode == 0


def test_a_moved_channel_is_repatched_without_rebuilding(tmp_path: Path) -> None:
    make_project(tmp_path)
    time.sleep(2.1)  # a tree changed in the last 2 s is never kept in the dir: cache (racily clean, as git)
    first = {i["name"]: i for i in build(tmp_path)["images"]}
    (tmp_path / "bases/os-3/etc/os-release").write_text("ID=test-os-3-moved\n")
    plan = regfp_json("plan", str(tmp_path / "recipe.yaml"))
    states = {n["id"]: n for n in plan["nodes"]}  # type: ignore[index]
    assert states["build"]["state"] == "cached"
    assert states["patch:next"]["state"] == "build" and "moved" in states["patch:next"]["reason"]
    assert states["patch:current"]["state"] == "cached"
    second = build(tmp_path)
    changed = {i["name"] for i in second["images"] if not i["cached"]}
    assert len(changed) == 1 and changed.pop().endswith(":next")
    assert second["stats"]["layersCompressed"] == 1  # only the moved channel's directory was tarred
    again = {i["name"]: i for i in second["images"]}
    assert all(again[n]["digest"] == first[n]["digest"] for n in first if not n.endswith(":next"))


def test_patch_command_one_channel(tmp_path: Path) -> None:
    make_project(tmp_path)
    result = regfp_json("patch", str(tmp_path / "recipe.yaml"), "--channel", "next")
    stages = sorted((i["stage"], i["name"].rsplit(":", 1)[1]) for i in result["images"])  # type: ignore[index]
    assert [s for s, _ in stages] == ["build", "patch"] and stages[1][1] == "next"
    bad = regfp("patch", str(tmp_path / "recipe.yaml"), "--channel", "nightly", check=False)
    assert bad.returncode == 2 and "no channel 'nightly'" in bad.stderr


# ---- whiteouts survive a rebase -------------------------------------------------------------------


def layer_of(store: LayoutStore, entries: list) -> Layer:  # type: ignore[type-arg]
    written = write_layer(entries, store.blob_sink(), mtime=0)
    desc = written.descriptor
    return Layer(desc, written.diff_id, lambda: store.open_blob(desc))


def test_whiteouts_still_delete_after_rebase(tmp_path: Path, tool_env: dict[str, str]) -> None:
    store = LayoutStore.open_or_create(tmp_path / "layout")

    def base(tag: str) -> Image:
        entries = [dir_entry("etc"), file_entry("etc/removed", b"old\n"), file_entry("etc/os", tag.encode()),
                   dir_entry("opt"), dir_entry("opt/dir"), file_entry("opt/dir/a", b"a"),
                   file_entry(f"opt/dir/only-in-{tag}", b"x")]
        return Image(config=ImageConfig.new()).appended(layer_of(store, entries), History(created_by=tag))

    a, b = base("a"), base("b")
    app = a.appended(layer_of(store, [whiteout_entry("etc/removed"), opaque_entry("opt/dir"),
                                      file_entry("opt/dir/app", b"app")]), History(created_by="app"))
    app = app.with_annotations({"org.opencontainers.image.base.digest": a.digest.text})
    moved = rebase(app, a, b, base_name="b")
    for img in (a, b, moved):
        write_image(store, img)
    store.set_names({"moved": write_image(store, moved)})
    bundle = tmp_path / "bundle"
    subprocess.run([need("umoci"), "unpack", "--image", f"{tmp_path / 'layout'}:moved", str(bundle)],
                   check=True, capture_output=True, env=tool_env)
    root = bundle / "rootfs"
    assert (root / "etc/os").read_text() == "b"
    assert not (root / "etc/removed").exists()
    assert sorted(p.name for p in (root / "opt/dir").iterdir()) == ["app"]


# ---- regfp rebase: errors leave nothing behind ---------------------------------------------------


def test_rebase_command_errors(tmp_path: Path, busybox_rootfs: Path) -> None:
    make_project(tmp_path)
    build(tmp_path, "--only", "build")
    layout = tmp_path / "out"
    [name] = [n for n in json.loads((layout / "index.json").read_text())["manifests"]
              if n["annotations"]["org.opencontainers.image.ref.name"].startswith("build/")]
    src = f"oci:{layout}:{name['annotations']['org.opencontainers.image.ref.name']}"
    ok = regfp_json("rebase", src, f"dir:{tmp_path / 'bases/os-2'}", f"oci:{tmp_path / 'ok'}:moved")
    assert ok["digest"].startswith("sha256:")

    # Prefix mismatch: the named old base is not under the image.
    wrong = regfp("rebase", src, f"dir:{tmp_path / 'bases/os-2'}", f"oci:{tmp_path / 'x1'}:m",
                  "--from", f"dir:{busybox_rootfs}", check=False)
    assert wrong.returncode == 1 and "layer 0" in wrong.stderr and "Traceback" not in wrong.stderr
    assert not (tmp_path / "x1").exists()

    # No base annotations: an image copied from a plain directory.
    regfp("copy", f"dir:{busybox_rootfs}", f"oci:{tmp_path / 'plain'}:img")
    missing = regfp("rebase", f"oci:{tmp_path / 'plain'}:img", f"dir:{tmp_path / 'bases/os-2'}",
                    f"oci:{tmp_path / 'x2'}:m", check=False)
    assert missing.returncode == 2 and "--from" in missing.stderr
    assert not (tmp_path / "x2").exists()

    # Another architecture.
    env = dict(os.environ)
    arm = regfp("copy", f"dir:{tmp_path / 'bases/os-2'}", f"oci:{tmp_path / 'arm'}:base", env=env, check=False)
    assert arm.returncode == 0
    index = json.loads((tmp_path / "arm/index.json").read_text())
    desc = index["manifests"][0]
    store = LayoutStore.open(tmp_path / "arm")
    from regctl_fp.stores.base import read_image

    img = read_image(store, Descriptor.from_dict(desc))
    arm_img = img.with_config(img.config.with_fields(architecture="arm64"))
    store.set_names({"base": write_image(store, arm_img)})
    other = regfp("rebase", src, f"oci:{tmp_path / 'arm'}:base", f"oci:{tmp_path / 'x3'}:m", check=False)
    assert other.returncode == 2 and "arm64" in other.stderr
    assert not (tmp_path / "x3").exists()


def test_multi_platform_image_is_rebased_platform_by_platform(tmp_path: Path, tool_env: dict[str, str]) -> None:
    from regctl_fp.oci.descriptor import Platform
    from regctl_fp.oci.manifest import Index
    from regctl_fp.stores.base import read_image

    store = LayoutStore.open_or_create(tmp_path / "layout")

    def image(arch: str, tag: str, base: Image | None = None) -> Image:
        img = base or Image(config=ImageConfig.new(architecture=arch))
        img = img.appended(layer_of(store, [file_entry(f"{tag}-{arch}", tag.encode())]), History(created_by=tag))
        if base is not None:
            img = img.with_annotations({"org.opencontainers.image.base.digest": base.digest.text})
        return img

    def index(images: list[Image]) -> Descriptor:
        entries = []
        for img in images:
            desc = write_image(store, img)
            entries.append(Descriptor(desc.media_type, desc.digest, desc.size,
                                      platform=Platform("linux", img.config.architecture)))
        idx = Index(manifests=tuple(entries))
        return store.put_manifest(idx.to_bytes(), idx.media_type)

    old = {a: image(a, "old") for a in ("amd64", "arm64")}
    new = {a: image(a, "new") for a in ("amd64", "arm64")}
    apps = [image(a, "app", old[a]) for a in ("amd64", "arm64")]
    for base in old.values():  # the old bases live in the layout, found by their digest
        write_image(store, base)
    store.set_names({"app": index(apps), "newbase": index(list(new.values()))})
    result = regfp_json("rebase", f"oci:{tmp_path / 'layout'}:app", f"oci:{tmp_path / 'layout'}:newbase",
                        f"oci:{tmp_path / 'layout'}:app-moved")
    assert result["mediaType"] == mt.OCI_INDEX
    moved = store.resolve("app-moved")
    idx = Index.parse(store.get_manifest(moved))
    assert [str(d.platform) for d in idx.manifests] == ["linux/amd64", "linux/arm64"]
    for entry, arch in zip(idx.manifests, ("amd64", "arm64"), strict=True):
        img = read_image(store, entry)
        assert img.config.architecture == arch
        assert [la.digest for la in img.layers] == [new[arch].layers[0].digest, apps[0 if arch == "amd64" else 1]
                                                    .layers[1].digest]
        assert img.annotations["org.opencontainers.image.base.digest"] == new[arch].digest.text
    one = regfp_json("rebase", f"oci:{tmp_path / 'layout'}:app", f"oci:{tmp_path / 'layout'}:newbase",
                     f"oci:{tmp_path / 'layout'}:arm-only", "--platform", "linux/arm64")
    assert one["mediaType"] == mt.OCI_MANIFEST and one["platforms"][0]["platform"] == "linux/arm64"
    assert regfp("verify", str(tmp_path / "layout")).returncode == 0


def test_gc_keeps_the_bases_that_patch_needs(tmp_path: Path) -> None:
    make_project(tmp_path)
    build(tmp_path, "--only", "build")
    report = regfp_json("gc", str(tmp_path / "out"))
    assert report["removed"] == []  # the build's base manifest and config stay: patch finds it by digest
    (tmp_path / "bases/os-1/etc/os-release").write_text("ID=changed-after-the-build\n")
    result = build(tmp_path, "--only", "patch")  # the old base is gone from disk, but not from the layout
    assert {i["stage"] for i in result["images"]} == {"build", "patch"}


def test_fallback_rebuild_when_the_old_base_is_gone(tmp_path: Path) -> None:
    make_project(tmp_path)
    first = build(tmp_path, "--only", "build")
    built = first["images"][0]
    shown = regfp_json("inspect", f"oci:{tmp_path / 'out'}:{built['name']}")
    base = shown["annotations"]["org.opencontainers.image.base.digest"].split(":")[1]
    (tmp_path / "out/blobs/sha256" / base).unlink()  # the old base's manifest is gone from the layout
    (tmp_path / "bases/os-1/etc/os-release").write_text("ID=changed\n")  # and its directory moved on
    failed = regfp("build", str(tmp_path / "recipe.yaml"), "--only", "patch", check=False)
    assert failed.returncode == 1 and "not the digest" not in failed.stdout
    assert "the image's base" in failed.stderr and "Traceback" not in failed.stderr
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("patch:\n", "patch:\n  fallback: rebuild\n"))
    done = regfp_json("build", str(recipe), "--only", "patch")
    patched = {i["name"]: i for i in done["images"] if i["stage"] == "patch"}
    assert len(patched) == 3
    stable = next(n for n in patched if n.endswith(":stable"))
    ann = regfp_json("inspect", f"oci:{tmp_path / 'out'}:{stable}")["annotations"]
    assert ann["dev.regfp.fallback"] == "rebuild" and ann["dev.regfp.channel"] == "stable"
    assert regfp("verify", str(tmp_path / "out")).returncode == 0
