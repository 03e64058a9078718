"""``regfp diff A B``: layers shared/removed/added, config differences, and file changes on the merged
filesystem (whiteouts and opaque directories as removals, same bytes from another layer as no change),
for layouts, ``dir:`` trees and registry references, as JSON and as tables."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from conftest import regfp
from registry_support import Registry

from regctl_fp.layers import Entry, dir_entry, file_entry, opaque_entry, whiteout_entry, write_layer
from regctl_fp.oci.config import History, ImageConfig
from regctl_fp.oci.image import Image, Layer
from regctl_fp.stores.base import write_image
from regctl_fp.stores.layout import LayoutStore

pytest_plugins = ["registry_fixtures"]

BASE = [dir_entry("etc"), file_entry("etc/os-release", b"ID=test\n"), dir_entry("bin"),
        file_entry("bin/tool", b"\x7fELF" + b"\0" * 300, 0o755), dir_entry("usr"), dir_entry("usr/share"),
        dir_entry("usr/share/doc"), file_entry("usr/share/doc/a.txt", b"docs\n"),
        file_entry("usr/share/doc/keep.txt", b"keep\n")]
APP_1 = [dir_entry("app"), file_entry("app/main.py", b"print('v1')\n"), file_entry("app/config.yaml", b"a: 1\n")]
APP_2 = [dir_entry("app"), file_entry("app/main.py", b"print('v2')\n"),  # same size, other bytes
         file_entry("app/config.yaml", b"a: 1\n", 0o600), file_entry("app/new.txt", b"new\n"),
         file_entry("etc/os-release", b"ID=test\n"),  # same bytes and mode as the base: no change
         whiteout_entry("usr/share/doc/a.txt")]


def build(store: LayoutStore, name: str, layers: list[list[Entry]], **container: object) -> None:
    image = Image(config=ImageConfig.new(created="2024-01-01T00:00:00Z"))
    for entries in layers:
        written = write_layer(entries, store.blob_sink(), mtime=0)
        desc = written.descriptor
        image = image.appended(Layer(desc, written.diff_id, lambda desc=desc: store.open_blob(desc)),
                               History(created_by=name))
    config = image.config.with_container(**container) if container else image.config
    store.set_names({name: write_image(store, image.with_config(config))})


def diff_json(*args: str) -> dict:  # type: ignore[type-arg]
    """``regfp diff --json``, whose exit status says whether the images differ (0 same, 1 different)."""
    proc = regfp("diff", *args, "--json", check=False)
    doc = json.loads(proc.stdout)
    assert proc.returncode == (0 if doc["identical"] else 1), proc.stderr
    return doc  # type: ignore[no-any-return]


def diff_text(*args: str) -> str:
    proc = regfp("diff", *args, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    assert (proc.returncode == 0) == ("identical: the two references name the same manifest" in proc.stdout)
    return proc.stdout


def make_pair(tmp_path: Path) -> Path:
    layout = tmp_path / "layout"
    with LayoutStore.open_or_create(layout) as store:
        build(store, "a:1", [BASE, APP_1], Env=["PATH=/bin", "MODE=one"], Entrypoint=["/app/main.py"], User="1000",
              WorkingDir="/app", ExposedPorts={"8080/tcp": {}}, Labels={"team": "x", "old": "1"})
        build(store, "b:1", [BASE, APP_2], Env=["PATH=/bin", "MODE=two", "NEW=1"], Entrypoint=["/app/main.py", "-v"],
              User="1000", WorkingDir="/srv", ExposedPorts={"9090/tcp": {}}, Labels={"team": "y"})
        build(store, "c:1", [BASE, [opaque_entry("usr/share/doc"), file_entry("usr/share/doc/b.txt", b"b\n")]])
    return layout


def test_layers_config_and_files(tmp_path: Path) -> None:
    layout = make_pair(tmp_path)
    d = diff_json(f"oci:{layout}:a:1", f"oci:{layout}:b:1")
    assert d["identical"] is False
    layers = d["layers"]
    assert layers["commonPrefix"] == 1
    assert [x["index"] for x in layers["shared"]] == [0]
    assert [x["index"] for x in layers["removed"]] == [1] and [x["index"] for x in layers["added"]] == [1]
    assert layers["removed"][0]["digest"] != layers["added"][0]["digest"]
    config = {c["field"]: (c["a"], c["b"]) for c in d["config"]}
    assert config == {
        "Entrypoint": (["/app/main.py"], ["/app/main.py", "-v"]),
        "WorkingDir": ("/app", "/srv"),
        "Env[MODE]": ("one", "two"),
        "Env[NEW]": (None, "1"),
        "Labels[old]": ("1", None),
        "Labels[team]": ("x", "y"),
        "ExposedPorts[9090/tcp]": (None, "9090/tcp"),
        "ExposedPorts[8080/tcp]": ("8080/tcp", None),
    }
    files = {f["path"]: f for f in d["files"]}
    assert set(files) == {"app/main.py", "app/config.yaml", "app/new.txt", "usr/share/doc/a.txt"}
    assert files["app/new.txt"]["change"] == "added" and files["app/new.txt"]["after"]["size"] == 4
    removed = files["usr/share/doc/a.txt"]
    assert (removed["change"], removed["whiteout"], removed["before"]["size"]) == ("removed", True, 5)
    assert files["app/main.py"]["change"] == "modified" and files["app/main.py"]["details"] == ["content"]
    assert files["app/config.yaml"]["details"] == ["mode 0644 -> 0600"]
    assert d["summary"] == {"layersShared": 1, "layersRemoved": 1, "layersAdded": 1, "configChanges": 8,
                            "annotationChanges": 0, "filesAdded": 1, "filesRemoved": 1, "filesModified": 2}


def test_opaque_directories_and_reverse_direction(tmp_path: Path) -> None:
    layout = make_pair(tmp_path)
    d = diff_json(f"oci:{layout}:a:1", f"oci:{layout}:c:1")
    changes = {f["path"]: f["change"] for f in d["files"]}
    assert changes == {"usr/share/doc/a.txt": "removed", "usr/share/doc/keep.txt": "removed",
                       "usr/share/doc/b.txt": "added", "app": "removed", "app/main.py": "removed",
                       "app/config.yaml": "removed"}
    back = diff_json(f"oci:{layout}:b:1", f"oci:{layout}:a:1")
    changes = {f["path"]: f["change"] for f in back["files"]}
    assert changes == {"app/main.py": "modified", "app/config.yaml": "modified", "app/new.txt": "removed",
                       "usr/share/doc/a.txt": "added"}
    same = diff_json(f"oci:{layout}:a:1", f"oci:{layout}:a:1")
    assert same["identical"] is True and same["files"] == [] and same["config"] == []


def test_text_output_is_tables(tmp_path: Path) -> None:
    layout = make_pair(tmp_path)
    out = diff_text(f"oci:{layout}:a:1", f"oci:{layout}:b:1")
    assert "Layers: 1 shared, 1 removed, 1 added (first 1 identical)" in out
    assert "Files: 1 added, 1 removed, 2 modified" in out
    lines = out.splitlines()
    assert any(line.split()[:2] == ["~", "/app/main.py"] and "content" in line for line in lines)
    assert any(line.split()[:2] == ["-", "/usr/share/doc/a.txt"] and "whiteout" in line for line in lines)
    assert any(line.split()[:3] == ["WorkingDir", "/app", "/srv"] for line in lines)
    same = diff_text(f"oci:{layout}:a:1", f"oci:{layout}:a:1")
    assert "identical" in same


def test_dir_and_registry_references(tmp_path: Path, registry: Registry) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for root, text in ((one, "1"), (two, "22")):
        (root / "etc").mkdir(parents=True)
        (root / "etc/version").write_text(text)
        (root / "etc/same").write_text("same")
    os.symlink("version", two / "etc/link")
    d = diff_json(f"dir:{one}", f"dir:{two}")
    assert {f["path"]: (f["change"], f["details"]) for f in d["files"]} == {
        "etc/version": ("modified", ["size 1 -> 2"]), "etc/link": ("added", [])}
    assert d["files"][0]["after"]["link"] == "version"
    layout = make_pair(tmp_path)
    target = f"{registry.host}/diff/{uuid.uuid4().hex[:10]}:a"
    regfp("copy", f"oci:{layout}:a:1", target)
    remote = diff_json(target, f"oci:{layout}:b:1")
    local = diff_json(f"oci:{layout}:a:1", f"oci:{layout}:b:1")
    assert remote["files"] == local["files"] and remote["config"] == local["config"]
    proc = regfp("diff", f"oci:{layout}:a:1", f"oci:{layout}:nope:1", check=False)
    assert proc.returncode == 2 and "not found" in proc.stderr and "Traceback" not in proc.stderr  # trouble


def test_artifacts_compare_layers_not_files(tmp_path: Path) -> None:
    (tmp_path / "f1").write_text("one")
    (tmp_path / "f2").write_text("two")
    regfp("data", "push", str(tmp_path / "f1"), "--to", f"oci:{tmp_path}/l:x:1")
    regfp("data", "push", str(tmp_path / "f1"), str(tmp_path / "f2"), "--to", f"oci:{tmp_path}/l:x:2",
          "--annotation", "k=v")
    d = diff_json(f"oci:{tmp_path}/l:x:1", f"oci:{tmp_path}/l:x:2")
    assert d["files"] is None
    assert [x.get("title") for x in d["layers"]["added"]] == ["f2"] and len(d["layers"]["shared"]) == 1
    assert d["annotations"] == [{"field": "annotation[k]", "a": None, "b": "v"}]
