"""Layers whose blobs match every digest but whose tar archives are not whole: cut short inside an
entry's data (the gzip stream around it ending cleanly), or missing the zero blocks that end a tar.
Every reader names the layer (no "internal error"), and ``verify --deep`` finds both."""

from __future__ import annotations

import gzip
import io
import os
import resource
import tarfile
from pathlib import Path

import pytest
from conftest import regfp, regfp_json
from project import make_project

from regctl_fp.errors import CorruptLayer
from regctl_fp.oci.config import History, ImageConfig
from regctl_fp.oci.descriptor import Descriptor
from regctl_fp.oci.digest import Digest
from regctl_fp.oci.image import Image, Layer
from regctl_fp.stores.base import write_image
from regctl_fp.stores.layout import LayoutStore

CREATED = "2024-01-01T00:00:00Z"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _layer(store: LayoutStore, tar: bytes) -> Layer:
    """A gzip layer of exactly these tar bytes; the gzip stream itself is whole."""
    blob = gzip.compress(tar, mtime=0)
    desc = Descriptor(GZIP_LAYER, Digest.of(blob), len(blob))
    store.put_blob(io.BytesIO(blob), desc)
    return Layer(desc, Digest.of(tar), lambda: store.open_blob(desc))


def _image(store: LayoutStore, layers: list[Layer]) -> Descriptor:
    image = Image(config=ImageConfig.new(created=CREATED).with_container(Env=["PATH=/bin"]))
    for i, layer in enumerate(layers):
        image = image.appended(layer, History(created=CREATED, created_by=f"layer {i}"))
    return write_image(store, image)


BIG = bytes(range(256)) * 64  # 16 KiB


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A layout with ``base`` (whole), ``cut`` (base + a layer whose tar ends inside data/big.bin) and
    ``noend`` (base + a layer whose tar lacks its end-of-archive blocks). Returns the layout and the
    digest of each image's hostile layer."""
    layout = tmp_path / "layout"
    base_tar = _tar({"etc/os-release": b"ID=hostile\n", "etc/passwd": b"root:x:0:0::/root:/bin/sh\n"})
    top = _tar({"data/small.txt": b"small\n", "data/big.bin": BIG, "data/zzz.txt": b"after\n"})
    big_at = top.index(BIG)
    cut = top[: big_at + len(BIG) // 2]  # inside big.bin's data
    no_end = top[: top.index(b"after\n") + 512]  # every entry whole, the two zero blocks gone
    assert no_end.rstrip(b"\0") == top.rstrip(b"\0") and len(no_end) < len(top) - 1024
    with LayoutStore.open_or_create(layout) as store:
        base = _layer(store, base_tar)
        cut_layer, no_end_layer = _layer(store, cut), _layer(store, no_end)
        store.set_names({"base": _image(store, [base]), "cut": _image(store, [base, cut_layer]),
                         "noend": _image(store, [base, no_end_layer])})
    return layout, {"cut": cut_layer.digest.text, "noend": no_end_layer.digest.text}


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def _run(*args: str) -> tuple[int, str]:
    """The CLI under a 1 GiB address-space cap and a timeout, without a traceback whatever happens."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "regctl_fp", *args], capture_output=True, text=True, timeout=120,
                          preexec_fn=_limits)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stderr


def test_plain_verify_checks_digests_and_deep_verify_reads_every_tar(hostile: tuple[Path, dict[str, str]]) -> None:
    layout, bad = hostile
    code, err = _run("verify", f"oci:{layout}:cut")  # every digest and diff_id matches: the plain check passes
    assert code == 0, err
    code, err = _run("verify", "--deep", f"oci:{layout}:cut")
    assert code == 1
    assert f"layer 1 {bad['cut']}: its tar archive is cut short" in err, err
    code, err = _run("verify", "--deep", f"oci:{layout}:noend")
    assert code == 1
    assert f"layer 1 {bad['noend']}: its tar archive is cut short" in err and "zero blocks" in err, err
    assert _run("verify", "--deep", f"oci:{layout}:base")[0] == 0
    doc = regfp_json("verify", "--deep", str(layout), check=False)
    assert doc["ok"] is False and doc["verified"] == ["base"]
    assert sorted(p.split(":")[0] for p in doc["problems"]) == ["cut", "noend"]


def test_deep_verify_accepts_what_regfp_builds(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_bytes(BIG * 3)
    os.symlink("d/f", tree / "link")
    regfp("copy", f"dir:{tree}", f"oci:{tmp_path}/l:tree")
    assert regfp_json("verify", "--deep", f"oci:{tmp_path}/l:tree")["ok"] is True


def test_diff_names_the_cut_layer(hostile: tuple[Path, dict[str, str]]) -> None:
    layout, bad = hostile
    code, err = _run("diff", f"oci:{layout}:base", f"oci:{layout}:cut")
    # diff follows cmp(1): 0 same, 1 different, 2 trouble (a layer that cannot be read is trouble).
    assert code == 2 and f"layer {bad['cut']}: its tar archive is cut short" in err, err


def test_file_lookups_name_the_cut_layer(hostile: tuple[Path, dict[str, str]]) -> None:
    """What environment, debug and identity checks use: the top layer is read first and is cut short."""
    from regctl_fp.imagefs import list_files, read_file
    from regctl_fp.refs import LayoutRef
    from regctl_fp.sources import open_layout_ref
    from regctl_fp.stores.base import read_image

    layout, bad = hostile
    store, desc = open_layout_ref(LayoutRef(str(layout), name="cut"))
    image = read_image(store, desc)
    with pytest.raises(CorruptLayer) as err:
        read_file(image, "etc/passwd")
    assert err.value.digest == bad["cut"] and "cut short" in str(err.value)
    with pytest.raises(CorruptLayer):
        list_files(image)
    store, desc = open_layout_ref(LayoutRef(str(layout), name="noend"))
    assert list_files(read_image(store, desc))["data/zzz.txt"] == "file"  # all entries there: readable


def test_a_matrix_build_on_a_cut_layer_names_it(hostile: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    layout, bad = hostile
    project = tmp_path / "p"
    make_project(project)
    (project / "m").mkdir()
    (project / "m" / "tool.txt").write_text("tool\n")
    recipe = project / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("output: {layout: out}\n", f"""\
matrix:
  - name: grid
    axes:
      base: {{cut: "oci:{layout}:cut"}}
      tool: {{t: "dir:m"}}
output: {{layout: out}}
"""))
    code, err = _run("build", str(recipe), "--only", "matrix")
    assert code == 1 and f"layer {bad['cut']}: its tar archive is cut short" in err, err


def test_pulling_a_cut_directory_layer_names_it(tmp_path: Path) -> None:
    from regctl_fp.stages.data import CONTENT_DIGEST, TITLE, UNPACK, artifact_image

    top = _tar({"dir/a.txt": b"a\n", "dir/big.bin": BIG})
    cut = top[: top.index(BIG) + 100]
    with LayoutStore.open_or_create(tmp_path / "l") as store:
        layer = _layer(store, cut)
        desc = layer.descriptor.with_annotations({TITLE: "dir", UNPACK: "true", CONTENT_DIGEST: layer.diff_id.text})
        layer = Layer(desc, layer.diff_id, lambda: store.open_blob(desc))
        image = artifact_image((layer,), "application/vnd.example", {})
        store.set_names({"a": write_image(store, image)})
    code, err = _run("data", "pull", f"oci:{tmp_path}/l:a", str(tmp_path / "out"))
    assert code == 1 and f"layer {desc.digest}: its tar archive is cut short" in err, err
    assert not (tmp_path / "out" / "dir").exists()
