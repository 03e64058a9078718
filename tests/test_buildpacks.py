"""Rebasing an image built the Buildpacks way: the lifecycle label, not OCI annotations, marks the run image."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import make_busybox_rootfs, regfp, regfp_json, run_image

from regctl_fp.layers import file_entry, write_layer
from regctl_fp.mutate import CNB_METADATA
from regctl_fp.oci.config import History
from regctl_fp.oci.image import Image, Layer
from regctl_fp.sources import BuildOptions, image_from_directory
from regctl_fp.stores.base import read_image, write_image
from regctl_fp.stores.layout import LayoutStore


def make_run_image(store: LayoutStore, root: Path, name: str, stack: str = "io.regfp.test") -> Image:
    make_busybox_rootfs(root)
    (root / "etc/os-release").write_text(f"ID={name}\n")
    base = image_from_directory(root, store, BuildOptions())
    extra = write_layer([file_entry("etc/run-image", name.encode())], store.blob_sink(), mtime=0)
    desc = extra.descriptor
    base = base.appended(Layer(desc, extra.diff_id, lambda: store.open_blob(desc)), History(created_by=name))
    cfg = base.config.with_labels({"io.buildpacks.stack.id": stack, "io.buildpacks.stack.mixins": "[]",
                                   "io.buildpacks.base.distro.name": name})
    return base.with_config(cfg)


def cnb_app(store: LayoutStore, run: Image) -> Image:
    """An app image laid out as the lifecycle exports one: run-image layers, then buildpack layers."""
    app = run
    for i, content in enumerate((b"#!/bin/sh\necho launcher\n", b"app payload\n")):
        written = write_layer([file_entry(f"layers/bp{i}/file", content, 0o755)], store.blob_sink(), mtime=0)
        desc = written.descriptor
        app = app.appended(Layer(desc, written.diff_id, lambda d=desc: store.open_blob(d)),
                           History(created_by=f"buildpack layer {i}"))
    meta = {"app": [], "buildpacks": [{"key": "test/bp", "version": "1"}],
            "runImage": {"topLayer": run.layers[-1].diff_id.text, "reference": run.digest.text,
                         "image": "example.com/run:old", "mirrors": ["mirror.example.com/run:old"]},
            "stack": {"runImage": {"image": "example.com/run:old"}}}
    cfg = app.config.with_labels({CNB_METADATA: json.dumps(meta, separators=(",", ":"))}).with_container(
        Entrypoint=["/bin/sh", "-c", "cat /etc/os-release; cat /layers/bp1/file"], Env=["CNB_APP_DIR=/workspace"])
    return app.with_config(cfg)  # no OCI base annotations: only the label says where the run image ends


def test_buildpacks_image_rebased_onto_a_new_run_image(tmp_path: Path, tool_env: dict[str, str]) -> None:
    layout = tmp_path / "layout"
    store = LayoutStore.open_or_create(layout)
    old = make_run_image(store, tmp_path / "old", "run-old")
    new = make_run_image(store, tmp_path / "new", "run-new")
    app = cnb_app(store, old)
    for img in (old, new):
        write_image(store, img)
    store.set_names({"app": write_image(store, app), "run/new": write_image(store, new)})
    result = regfp_json("rebase", f"oci:{layout}:app", f"oci:{layout}:run/new", f"oci:{layout}:app-rebased")
    rebased = read_image(store, store.resolve("app-rebased"))
    assert result["digest"] == rebased.digest.text
    assert [la.digest for la in rebased.layers] == [*(la.digest for la in new.layers),
                                                     *(la.digest for la in app.layers[len(old.layers):])]
    meta = json.loads(rebased.config.labels[CNB_METADATA])
    assert meta["runImage"]["topLayer"] == new.layers[-1].diff_id.text
    assert meta["runImage"]["reference"] == new.digest.text
    assert meta["runImage"]["image"] == f"oci:{layout}:run/new" and meta["runImage"]["mirrors"] == []
    assert meta["buildpacks"] == [{"key": "test/bp", "version": "1"}]  # the rest of the label is kept
    assert rebased.config.labels["io.buildpacks.base.distro.name"] == "run-new"
    assert rebased.config.entrypoint == app.config.entrypoint
    run = run_image(layout, "app-rebased", tmp_path / "bundle", tool_env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["ID=run-new", "app payload"]


def test_buildpacks_rebase_refusals(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    store = LayoutStore.open_or_create(layout)
    old = make_run_image(store, tmp_path / "old", "run-old")
    other_stack = make_run_image(store, tmp_path / "other", "run-other", stack="io.other.stack")
    app = cnb_app(store, old)
    broken = app.with_config(app.config.with_labels({CNB_METADATA: json.dumps(
        {"runImage": {"topLayer": "sha256:" + "0" * 64}})}))
    for img in (old, other_stack):
        write_image(store, img)
    store.set_names({"app": write_image(store, app), "broken": write_image(store, broken),
                     "other": write_image(store, other_stack)})
    stack = regfp("rebase", f"oci:{layout}:app", f"oci:{layout}:other", f"oci:{layout}:x", check=False)
    assert stack.returncode == 1 and "incompatible stack" in stack.stderr
    top = regfp("rebase", f"oci:{layout}:broken", f"oci:{layout}:other", f"oci:{layout}:y", check=False)
    assert top.returncode == 1 and "topLayer" in top.stderr
    assert "x" not in LayoutStore.open(layout).names() and "y" not in LayoutStore.open(layout).names()


def test_recipe_patch_from_a_buildpacks_image(tmp_path: Path, tool_env: dict[str, str]) -> None:
    """A recipe with patch.from patches an existing image onto its channels, no source or build."""
    layout = tmp_path / "images"
    store = LayoutStore.open_or_create(layout)
    old = make_run_image(store, tmp_path / "old", "run-old")
    new = make_run_image(store, tmp_path / "new", "run-new")
    app = cnb_app(store, old)
    store.set_names({"app": write_image(store, app), "run/old": write_image(store, old),
                     "run/new": write_image(store, new)})
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("""\
regfp: 1
name: cnbapp
patch:
  from: "oci:images:app"
  channels: {stable: "oci:images:run/old", current: "oci:images:run/new"}
rollouts: {channel: current}
output: {layout: out}
""")
    result = regfp_json("build", str(recipe))
    by_stage = {i["stage"]: i for i in result["images"]}
    assert {"from", "patch", "rollout"} <= set(by_stage)
    hexd = app.digest.hex
    names = {i["name"]: i["digest"] for i in result["images"]}
    assert names[f"from/cnbapp:{hexd}"] == app.digest.text
    out = LayoutStore.open(tmp_path / "out")
    current = read_image(out, out.resolve(f"patch/cnbapp/{hexd}:current"))
    assert [la.digest for la in current.layers[: len(new.layers)]] == [la.digest for la in new.layers]
    assert json.loads(current.config.labels[CNB_METADATA])["runImage"]["topLayer"] == new.layers[-1].diff_id.text
    run = run_image(tmp_path / "out", f"patch/cnbapp/{hexd}:current", tmp_path / "bundle", tool_env)
    assert run.returncode == 0 and run.stdout.splitlines() == ["ID=run-new", "app payload"], run.stderr
    again = regfp_json("build", str(recipe))
    assert all(i["cached"] for i in again["images"])
    both = recipe.read_text().replace("name: cnbapp\n", "name: cnbapp\nsource: {git: .}\n")
    recipe.write_text(both)
    refused = regfp("build", str(recipe), check=False)
    assert refused.returncode == 2 and "patch.from patches an existing image" in refused.stderr
