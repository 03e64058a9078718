"""The OCI layout store's promises: corruption is found and never passed on, names move atomically and
only onto complete content, and gc removes exactly what no name reaches."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_crash import Child, check_layout, payload, write_images, write_into

from regctl_fp.errors import NotFound, RefError
from regctl_fp.layers import file_entry, write_layer
from regctl_fp.oci import mediatypes as mt
from regctl_fp.oci.config import History, ImageConfig
from regctl_fp.oci.descriptor import Descriptor, Platform
from regctl_fp.oci.digest import Digest
from regctl_fp.oci.image import Image, Layer
from regctl_fp.oci.manifest import Index, Manifest
from regctl_fp.stores.base import closure, write_image
from regctl_fp.stores.layout import REF_NAME, LayoutStore
from regctl_fp.verify import verify_layout

NAME = "app:1"


def run_all(*commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run several regfp commands at once (they only read, or write to separate places)."""
    procs = [subprocess.Popen([sys.executable, "-m", "regctl_fp", *c], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in commands]
    done = []
    for cmd, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return done


def blob_files(layout: Path) -> set[str]:
    return {p.name for p in (layout / "blobs" / "sha256").iterdir()}


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its content: to prove nothing changed."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


# -- corrupt, truncated and missing blobs ------------------------------------------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Digest]]:
    """A layout with one named two-layer image and one blob nothing refers to."""
    layout = tmp_path_factory.mktemp("template") / "layout"
    with LayoutStore.open_or_create(layout) as store:
        desc = write_into(store, "app", 1, 2, 50_000)["app/img0:v1"]
        store.set_names({NAME: desc})
        manifest = Manifest.parse(store.get_manifest(desc))
        stray = store.put_manifest(b'{"not": "referenced by anything"}', "application/octet-stream")
    parts = {"manifest": desc.digest, "config": manifest.config.digest, "layer0": manifest.layers[0].digest,
             "layer1": manifest.layers[1].digest, "unreferenced": stray.digest}
    return layout, parts


def damage(path: Path, how: str) -> None:
    if how == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 7])
    else:
        path.unlink()


# A flipped byte in every kind of blob; truncated and missing ones for each kind that is read differently.
CASES = [*((part, "flip") for part in ("manifest", "config", "layer0", "layer1", "unreferenced")),
         *((part, how) for part in ("manifest", "config", "layer1") for how in ("truncate", "missing")),
         ("unreferenced", "truncate")]


@pytest.mark.parametrize(("part", "how"), CASES, ids=[f"{p}-{h}" for p, h in CASES])
def test_damaged_blob_is_reported_and_never_copied(tmp_path: Path, template: tuple[Path, dict[str, Digest]],
                                                   tool_env: dict[str, str], part: str, how: str) -> None:
    source, parts = template
    layout = tmp_path / "layout"
    shutil.copytree(source, layout)
    digest = parts[part]
    damage(layout / "blobs" / "sha256" / digest.hex, how)
    dest = tmp_path / "dest"
    reading = part in ("manifest", "config")  # what inspect reads; layers it only describes
    commands = [["verify", str(layout)], ["copy", f"oci:{layout}:{NAME}", f"oci:{dest}:{NAME}"]]
    if reading:
        commands.append(["inspect", f"oci:{layout}:{NAME}"])
    if part == "manifest":
        commands.append(["gc", str(layout)])
    before = snapshot(layout)
    verified, copied, *others = run_all(*commands)
    for proc in (verified, copied, *others):
        assert "Traceback" not in proc.stderr, proc.stderr
    assert verified.returncode == 1
    assert digest.text in verified.stderr, verified.stderr
    # Named content is reported as such, never mistaken for a stray file.
    assert ("unreferenced blob" in verified.stderr) == (part == "unreferenced"), verified.stderr
    if part == "unreferenced":  # the image itself is intact and copies fine
        assert copied.returncode == 0, copied.stderr
        assert check_layout(dest, tool_env) == {NAME: parts["manifest"].text}
        return
    assert copied.returncode == 1
    assert copied.stdout == ""
    assert digest.text in copied.stderr and "error" in copied.stderr.lower(), copied.stderr
    if dest.exists():  # whatever good blobs arrived, no name points at anything
        assert json.loads((dest / "index.json").read_bytes())["manifests"] == []
        assert digest.hex not in blob_files(dest)
        assert verify_layout(LayoutStore.open(dest)).ok
    for proc in others:
        assert proc.returncode == 1, proc.args
        assert proc.stdout == ""
        assert digest.text in proc.stderr, proc.stderr
    # gc could not tell what the damaged manifest reaches, so it deleted nothing.
    assert snapshot(layout) == before


def test_verify_json_names_every_damaged_blob(tmp_path: Path, template: tuple[Path, dict[str, Digest]]) -> None:
    source, parts = template
    layout = tmp_path / "layout"
    shutil.copytree(source, layout)
    for part in ("layer1", "unreferenced"):
        damage(layout / "blobs" / "sha256" / parts[part].hex, "flip")
    (result,) = run_all(["verify", str(layout), "--json"])
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    for part in ("layer1", "unreferenced"):
        assert any(parts[part].text in p for p in doc["problems"]), doc["problems"]
    assert not any(parts["layer0"].text in p for p in doc["problems"])


# -- names ----------------------------------------------------------------------------------------------
def _entries(layout: Path) -> list[dict]:  # type: ignore[type-arg]
    return json.loads((layout / "index.json").read_bytes())["manifests"]


def test_names_carry_ref_name_and_move_by_replacing(tmp_path: Path, tool_env: dict[str, str]) -> None:
    layout = tmp_path / "layout"
    with LayoutStore.open_or_create(layout) as store:
        first = write_into(store, "one", 1, 2, 1000)["one/img0:v1"]
        second = write_into(store, "two", 1, 2, 1000)["two/img0:v1"]
        store.set_names({NAME: first.annotated(note="kept")})
        (entry,) = [e for e in _entries(layout) if e["annotations"][REF_NAME] == NAME]
        assert entry["digest"] == first.digest.text
        assert entry["annotations"] == {REF_NAME: NAME, "note": "kept"}
        store.set_names({NAME: second})
        moved = [e for e in _entries(layout) if e["annotations"][REF_NAME] == NAME]
        assert [e["digest"] for e in moved] == [second.digest.text]
        assert store.resolve(NAME).digest == second.digest
        store.set_names({"one/img0:v1": None})
        assert first.digest.text not in {e["digest"] for e in _entries(layout)}
    assert check_layout(layout, tool_env) == {NAME: second.digest.text, "two/img0:v1": second.digest.text}


def test_moving_a_name_keeps_entries_without_a_name(tmp_path: Path) -> None:
    """Foreign layouts may list images by digest only; regfp keeps those entries when it moves names."""
    layout = tmp_path / "layout"
    with LayoutStore.open_or_create(layout) as store:
        desc = write_into(store, "x", 1, 1, 100)["x/img0:v1"]
    doc = json.loads((layout / "index.json").read_bytes())
    doc["manifests"].append({"mediaType": mt.OCI_MANIFEST, "digest": desc.digest.text, "size": desc.size})
    (layout / "index.json").write_text(json.dumps(doc))
    with LayoutStore.open_or_create(layout) as store:
        store.set_names({"x/img0:v1": None, "y:1": desc})
    assert sorted(e.get("annotations", {}).get(REF_NAME, "") for e in _entries(layout)) == ["", "y:1"]


def _image_with_layer(store: LayoutStore, content: bytes) -> Image:
    written = write_layer([file_entry("f", content)], store.blob_sink(), mtime=0)
    layer = Layer(written.descriptor, written.diff_id, lambda: store.open_blob(written.descriptor))
    return Image(ImageConfig.new(created="1970-01-01T00:00:00Z")).appended(layer, History(created_by="f"))


@pytest.mark.parametrize("missing", ["layer", "config", "manifest", "index-child"])
def test_set_names_refuses_missing_content(tmp_path: Path, missing: str) -> None:
    layout = tmp_path / "layout"
    with LayoutStore.open_or_create(layout) as store:
        good = write_into(store, "good", 1, 1, 100)["good/img0:v1"]
        store.set_names({"good:1": good})
        image = _image_with_layer(store, payload(missing, 300))
        target = write_image(store, image)
        store.flush()  # blobs move into blobs/ in batches; the test takes one away from there
        if missing == "layer":
            store.blob_path(image.layers[0].digest).unlink()
        elif missing == "config":
            store.blob_path(image.config_descriptor.digest).unlink()
        elif missing == "manifest":
            store.blob_path(target.digest).unlink()
        else:
            index = Index(manifests=(Descriptor(mt.OCI_MANIFEST, target.digest, target.size,
                                                platform=Platform("linux", "amd64")),))
            store.blob_path(target.digest).unlink()
            target = store.put_manifest(index.to_bytes(), mt.OCI_INDEX)
        before = (layout / "index.json").read_bytes()
        with pytest.raises(NotFound):
            store.set_names({"new:1": target})
        with pytest.raises(NotFound):  # a batch is all or nothing
            store.set_names({"good:1": None, "other:1": good, "new:1": target})
        assert (layout / "index.json").read_bytes() == before


def test_bad_names_are_refused(tmp_path: Path, busybox_rootfs: Path) -> None:
    layout = tmp_path / "layout"
    with LayoutStore.open_or_create(layout) as store:
        desc = write_into(store, "x", 1, 1, 100)["x/img0:v1"]
        before = (layout / "index.json").read_bytes()
        for bad in ("", "UPPER CASE", "a//b", "-leading", "trailing-"):
            with pytest.raises(RefError):
                store.set_names({bad: desc})
        assert (layout / "index.json").read_bytes() == before
    (copy,) = run_all(["copy", f"dir:{busybox_rootfs}", f"oci:{layout}:bad name"])
    assert copy.returncode == 2
    assert "Traceback" not in copy.stderr
    assert (layout / "index.json").read_bytes() == before


def test_index_json_is_replaced_atomically(tmp_path: Path) -> None:
    """A reader polling index.json while another process moves names hundreds of times only ever
    sees a whole, valid index; afterwards no temp file is left anywhere."""
    layout = tmp_path / "layout"
    with LayoutStore.open_or_create(layout) as store:
        descs = list(write_into(store, "img", 3, 2, 200).values())
    assert len({d.digest for d in descs}) == 3
    moves = 150

    def mover(report: object) -> None:
        with LayoutStore.open_or_create(layout) as s:
            for i in range(moves):
                s.set_names({"moving:latest": descs[i % 3], f"step:{i}": descs[i % 3]})

    reads: list[int] = []
    bad: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = (layout / "index.json").read_bytes()
            try:
                Index.parse(data, mt.OCI_INDEX)
                names = [e["annotations"][REF_NAME] for e in json.loads(data)["manifests"]]
                reads.append(len(names))
            except Exception as e:
                bad.append(f"{e}: {data[:80]!r}")

    child = Child(mover)  # forked before the reader thread exists
    thread = threading.Thread(target=reader)
    thread.start()
    code = child.wait()
    stop.set()
    thread.join()
    assert code == 0
    assert bad == []
    assert len(reads) > 50 and len(set(reads)) > 10  # the reader saw many different states
    assert reads == sorted(reads)  # names only ever added: no read went back in time
    assert {p.name for p in layout.iterdir()} == {"oci-layout", "index.json", "blobs", ".regfp"}
    assert list((layout / ".regfp" / "tmp").iterdir()) == []
    assert len(_entries(layout)) == 3 + 1 + moves


# -- gc -----------------------------------------------------------------------------------------------------
def _platform_image(store: LayoutStore, arch: str) -> Descriptor:
    image = _image_with_layer(store, payload(f"multi-{arch}", 2000))
    image = image.with_config(image.config.with_fields(architecture=arch))
    return write_image(store, image)


def nested_index(store: LayoutStore, *, deep: bool = True) -> tuple[Descriptor, dict[str, Descriptor]]:
    """An image index for linux/amd64 and linux/arm64; with ``deep`` the arm64 entry is itself an index."""
    amd64 = _platform_image(store, "amd64")
    arm64 = _platform_image(store, "arm64")
    parts = {"amd64": amd64, "arm64": arm64}
    arm_entry = Descriptor(mt.OCI_MANIFEST, arm64.digest, arm64.size, platform=Platform("linux", "arm64"))
    if deep:
        inner = store.put_manifest(Index(manifests=(arm_entry,)).to_bytes(), mt.OCI_INDEX)
        parts["inner"] = inner
        arm_entry = Descriptor(mt.OCI_INDEX, inner.digest, inner.size, platform=Platform("linux", "arm64"))
    outer = Index(manifests=(
        Descriptor(mt.OCI_MANIFEST, amd64.digest, amd64.size, platform=Platform("linux", "amd64")), arm_entry))
    return store.put_manifest(outer.to_bytes(), mt.OCI_INDEX), parts


def _own_blobs(store: LayoutStore, desc: Descriptor) -> set[str]:
    return {d.hex for d in closure(store, [desc])}


def test_gc_removes_exactly_the_unreachable(tmp_path: Path, tool_env: dict[str, str]) -> None:
    layout = tmp_path / "layout"
    with LayoutStore.open_or_create(layout) as store:
        kept = write_into(store, "app", 2, 2, 3000)  # two images sharing layer 0
        multi, parts = nested_index(store)
        store.set_names({"multi:1": multi})
        unnamed = write_into(store, "unnamed", 1, 2, 3000)
        store.set_names({n: None for n in unnamed})
        moved = write_into(store, "moved", 1, 2, 3000)["moved/img0:v1"]
        store.set_names({"moved/img0:v1": kept["app/img0:v1"]})  # the old target is garbage now
        stray = store.put_manifest(b"stray bytes", "application/octet-stream")
        named = [*kept.values(), multi]
        live = set().union(*(_own_blobs(store, d) for d in named))
        garbage = (_own_blobs(store, next(iter(unnamed.values()))) | _own_blobs(store, moved)
                   | {stray.digest.hex}) - live
    assert parts["arm64"].digest.hex in live and parts["inner"].digest.hex in live
    assert len(garbage) >= 5 and blob_files(layout) == live | garbage
    tmp = layout / ".regfp" / "tmp"
    (tmp / "blob.dead-writer").write_bytes(b"half a blob")
    (tmp / "index.json.dead-writer").write_bytes(b'{"schemaVer')

    before = snapshot(layout)
    (dry,) = run_all(["gc", str(layout), "--dry-run", "--json"])
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert {r["digest"].split(":")[1] for r in report["removed"]} == garbage
    assert report["dryRun"] is True and report["tempFiles"] == 2
    assert snapshot(layout) == before

    (real,) = run_all(["gc", f"oci:{layout}", "--json"])
    assert real.returncode == 0, real.stderr
    report = json.loads(real.stdout)
    assert {r["digest"].split(":")[1] for r in report["removed"]} == garbage
    assert report["freed"] == sum(r["size"] for r in report["removed"]) > 0
    assert blob_files(layout) == live
    assert list(tmp.iterdir()) == []
    assert check_layout(layout, tool_env)["multi:1"] == multi.digest.text
    (again,) = run_all(["gc", str(layout), "--json"])
    assert json.loads(again.stdout)["removed"] == []
    arm = run_all(["inspect", f"oci:{layout}:multi:1", "--platform", "linux/arm64", "--json"])[0]
    assert json.loads(arm.stdout)["digest"] == parts["arm64"].digest.text


def test_gc_refuses_when_a_named_manifest_is_missing(tmp_path: Path) -> None:
    """What a missing manifest reached is unknown: gc must not guess and delete its layers."""
    layout = tmp_path / "layout"
    named = write_images(layout, "app", 2, 2, 1000)
    LayoutStore.open(layout).blob_path(named["app/img1:v1"].digest).unlink()
    before = snapshot(layout)
    (gc,) = run_all(["gc", str(layout)])
    assert gc.returncode == 1
    assert named["app/img1:v1"].digest.text in gc.stderr
    assert "Traceback" not in gc.stderr
    assert snapshot(layout) == before


def test_a_big_blob_is_handed_to_the_disk_while_it_is_written(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Writeback starts every 8 MiB as a blob streams in (sync_file_range), so the fsync before its
    rename waits only for the tail; the blob is stored as ever."""
    import io

    from regctl_fp.stores import layout as layout_module

    data = hashlib.sha256(b"seed").digest() * ((20 << 20) // 32)  # 20 MiB
    desc = Descriptor(mt.OCI_LAYER_GZIP, Digest.of(data), len(data))
    with LayoutStore.open_or_create(tmp_path / "real") as real:  # libc's call, for real
        real.put_blob(io.BytesIO(data), desc)
    assert (tmp_path / "real" / "blobs" / "sha256" / desc.digest.hex).read_bytes() == data

    calls: list[tuple[int, int, int]] = []
    monkeypatch.setattr(layout_module, "_sync_file_range", lambda fd, off, n, flags: calls.append((off, n, flags)))
    with LayoutStore.open_or_create(tmp_path / "seen") as seen:
        seen.put_blob(io.BytesIO(data), desc)
    assert calls == [(0, 8 << 20, 2), (8 << 20, 8 << 20, 2)]  # contiguous, SYNC_FILE_RANGE_WRITE only
    assert (tmp_path / "seen" / "blobs" / "sha256" / desc.digest.hex).read_bytes() == data
