"""Layouts regfp did not write: made by umoci and skopeo (OCI and Docker v2 schema 2 manifests), a
multi-platform index, images known only by digest, a layout's only image. regfp reads, verifies and
copies each with digests preserved, and leaves the source untouched; skopeo is the independent reader."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import need
from test_crash import check_layout
from test_layout import nested_index, run_all, snapshot

from regctl_fp.oci import mediatypes as mt
from regctl_fp.stores.layout import LayoutStore
from regctl_fp.verify import verify_layout


def tool(name: str, *args: str, env: dict[str, str]) -> str:
    proc = subprocess.run([need(name), *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{name} {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def rootless() -> list[str]:
    return [] if os.geteuid() == 0 else ["--rootless"]


@dataclass
class Source:
    ref: str  # what regfp is given
    layout: Path
    skopeo_ref: str  # the same image (or index) as skopeo names it
    media_type: str


DATA = bytes(range(256)) * 64


def umoci_layout(tmp_path: Path, env: dict[str, str]) -> Path:
    """``umoci init`` + ``new`` + two ``insert``s + ``config``: two layers, old manifests left behind."""
    layout = tmp_path / "umoci"
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hello").write_text("hello from umoci\n")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "data.bin").write_bytes(DATA)
    tool("umoci", "init", "--layout", str(layout), env=env)
    tool("umoci", "new", "--image", f"{layout}:base", env=env)
    tool("umoci", "insert", *rootless(), "--image", f"{layout}:base", str(tree), "/", env=env)
    tool("umoci", "insert", *rootless(), "--image", f"{layout}:base", str(extra), "/data", env=env)
    tool("umoci", "config", "--image", f"{layout}:base", "--config.cmd", "/bin/sh", env=env)
    return layout


def make_source(kind: str, tmp_path: Path, env: dict[str, str]) -> Source:
    if kind == "index" or kind == "index-child-by-digest":
        layout = tmp_path / "index"
        with LayoutStore.open_or_create(layout) as store:
            index, parts = nested_index(store, deep=False)
            store.set_names({"multi:1": index})
        if kind == "index":
            return Source(f"oci:{layout}:multi:1", layout, f"oci:{layout}:multi:1", mt.OCI_INDEX)
        # A manifest that index.json does not list: only the index inside the layout refers to it.
        arm64 = parts["arm64"].digest
        return Source(f"oci:{layout}@{arm64}", layout, f"oci:{layout}:multi:1", mt.OCI_MANIFEST)
    base = umoci_layout(tmp_path, env)
    if kind == "umoci":
        return Source(f"oci:{base}:base", base, f"oci:{base}:base", mt.OCI_MANIFEST)
    if kind == "skopeo-oci":
        layout = tmp_path / "skopeo-oci"
        tool("skopeo", "copy", "--format", "oci", f"oci:{base}:base", f"oci:{layout}:copied", env=env)
        return Source(f"oci:{layout}:copied", layout, f"oci:{layout}:copied", mt.OCI_MANIFEST)
    if kind == "skopeo-v2s2":
        layout = tmp_path / "skopeo-v2s2"
        tool("skopeo", "copy", "--format", "v2s2", f"oci:{base}:base", f"oci:{layout}:docker", env=env)
        # skopeo 1.9 finds Docker-typed entries only as a layout's single image, not by name.
        return Source(f"oci:{layout}:docker", layout, f"oci:{layout}", mt.DOCKER_MANIFEST)
    layout = tmp_path / "unnamed"
    tool("skopeo", "copy", f"oci:{base}:base", f"oci:{layout}", env=env)  # an index.json entry without a name
    (entry,) = json.loads((layout / "index.json").read_bytes())["manifests"]
    assert "annotations" not in entry
    if kind == "single":
        return Source(f"oci:{layout}", layout, f"oci:{layout}", mt.OCI_MANIFEST)
    assert kind == "unnamed-by-digest"
    return Source(f"oci:{layout}@{entry['digest']}", layout, f"oci:{layout}", mt.OCI_MANIFEST)


def skopeo_digest(source: Source, env: dict[str, str]) -> str:
    """The digest of what ``source`` names, as skopeo reads it (not through regfp)."""
    if source.ref.startswith(f"oci:{source.layout}@") and source.skopeo_ref.endswith(":multi:1"):
        index = json.loads(tool("skopeo", "inspect", "--raw", source.skopeo_ref, env=env))
        (arm,) = [m for m in index["manifests"] if m["platform"]["architecture"] == "arm64"]
        return arm["digest"]
    raw = tool("skopeo", "inspect", "--raw", source.skopeo_ref, env=env).encode()
    digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    if source.media_type != mt.OCI_INDEX:
        assert json.loads(tool("skopeo", "inspect", source.skopeo_ref, env=env))["Digest"] == digest
    return digest


KINDS = ["umoci", "skopeo-oci", "skopeo-v2s2", "index", "index-child-by-digest", "unnamed-by-digest", "single"]


@pytest.mark.parametrize("kind", KINDS)
def test_foreign_layout_inspect_verify_copy(tmp_path: Path, tool_env: dict[str, str], kind: str) -> None:
    source = make_source(kind, tmp_path, tool_env)
    expected = skopeo_digest(source, tool_env)
    before = snapshot(source.layout)
    dest = tmp_path / "dest"
    inspected, verified_ref, verified_all, copied = run_all(
        ["inspect", source.ref, "--json"], ["verify", source.ref], ["verify", str(source.layout)],
        ["copy", source.ref, f"oci:{dest}:imported", "--json"])
    for proc in (inspected, verified_ref, verified_all, copied):
        assert proc.returncode == 0, f"{proc.args}: {proc.stderr}"
    shown = json.loads(inspected.stdout)
    assert (shown["digest"], shown["mediaType"]) == (expected, source.media_type)
    if source.media_type == mt.OCI_INDEX:
        assert sorted(m["platform"]["architecture"] for m in shown["manifests"]) == ["amd64", "arm64"]
    else:
        assert len(shown["layers"]) >= 1
    assert json.loads(copied.stdout)["digest"] == expected
    # Reading changed nothing in the foreign layout (no lock files, no temp directory).
    assert snapshot(source.layout) == before

    # The copy, read back by skopeo: byte-identical manifest, hence the same digest.
    assert verify_layout(LayoutStore.open(dest)).ok
    raw_src = tool("skopeo", "inspect", "--raw", source.skopeo_ref, env=tool_env)
    copy_ref = f"oci:{dest}" if source.media_type == mt.DOCKER_MANIFEST else f"oci:{dest}:imported"
    raw_copy = tool("skopeo", "inspect", "--raw", copy_ref, env=tool_env)
    assert f"sha256:{hashlib.sha256(raw_copy.encode()).hexdigest()}" == expected
    if kind != "index-child-by-digest":
        assert raw_copy == raw_src
    if source.media_type == mt.OCI_MANIFEST:
        assert json.loads(tool("skopeo", "inspect", copy_ref, env=tool_env))["Digest"] == expected
        check_layout(dest, tool_env, unpack_into=tmp_path / "bundles" if kind in ("umoci", "single") else None,
                     expect_files={"etc/hello": b"hello from umoci\n", "data/data.bin": DATA})


def test_copy_one_platform_out_of_an_index(tmp_path: Path, tool_env: dict[str, str]) -> None:
    source = make_source("index", tmp_path, tool_env)
    index = json.loads(tool("skopeo", "inspect", "--raw", source.skopeo_ref, env=tool_env))
    by_arch = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    dest = tmp_path / "dest"
    arm, amd = run_all(["copy", "--platform", "linux/arm64", source.ref, f"oci:{dest}:arm", "--json"],
                       ["inspect", "--platform", "linux/amd64", source.ref, "--json"])
    assert arm.returncode == 0, arm.stderr
    assert json.loads(arm.stdout)["digest"] == by_arch["arm64"]
    assert json.loads(amd.stdout)["digest"] == by_arch["amd64"]
    assert check_layout(dest, tool_env) == {"arm": by_arch["arm64"]}
    config = json.loads(tool("skopeo", "inspect", "--config", f"oci:{dest}:arm", env=tool_env))
    assert config["architecture"] == "arm64"


def test_ambiguous_or_unknown_foreign_references_fail_cleanly(tmp_path: Path, tool_env: dict[str, str]) -> None:
    base = umoci_layout(tmp_path, tool_env)
    tool("umoci", "tag", "--image", f"{base}:base", "second", env=tool_env)
    missing = "sha256:" + "0" * 64
    bare, unknown, by_missing = run_all(["inspect", f"oci:{base}"], ["inspect", f"oci:{base}:nope"],
                                        ["copy", f"oci:{base}@{missing}", f"oci:{tmp_path / 'dest'}:x"])
    assert bare.returncode == 2 and "base" in bare.stderr and "second" in bare.stderr  # it lists the names
    assert unknown.returncode == 1 and "'nope'" in unknown.stderr
    assert by_missing.returncode == 1 and missing in by_missing.stderr
    for proc in (bare, unknown, by_missing):
        assert "Traceback" not in proc.stderr
    check_layout(base, tool_env)  # and umoci's layout is still whole
