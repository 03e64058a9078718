"""Crash safety of the OCI layout store: writers killed with SIGKILL leave a layout that umoci and
``regfp verify`` accept, and running the same write again completes it.

Writers run in forked child processes (a real process, a real SIGKILL) so that dozens of kills stay
cheap: no interpreter start-up per trial. Two ways of choosing where to kill: seeded random delays
spread over a whole multi-image write, and, for layout creation, every filesystem call in turn.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest
from conftest import need

from regctl_fp.layers import dir_entry, file_entry, write_layer
from regctl_fp.oci import mediatypes as mt
from regctl_fp.oci.config import History, ImageConfig
from regctl_fp.oci.descriptor import Descriptor
from regctl_fp.oci.image import Image, Layer
from regctl_fp.stores.base import write_image
from regctl_fp.stores.layout import REF_NAME, LayoutStore
from regctl_fp.verify import verify_layout

CREATED = "1970-01-01T00:00:00Z"
LAYOUT_ENTRIES = {"oci-layout", "index.json", "blobs", ".regfp"}


# -- the writer (shared with test_concurrency) ---------------------------------------------------------
def payload(seed: str, size: int) -> bytes:
    """Incompressible, reproducible bytes: the layer digests are the same on every run."""
    return random.Random(seed).randbytes(size)


def write_into(store: LayoutStore, prefix: str, images: int, layers: int, size: int,
               latest: str | None = None) -> dict[str, Descriptor]:
    """``images`` images of ``layers`` layers each; layer 0 is the same in all of them (a shared blob).

    Each image is named ``<prefix>/img<i>:v1``; with ``latest``, that name moves to each new image in
    the same ``set_names`` call, so it always points at the newest named image.
    """
    named: dict[str, Descriptor] = {}
    for i in range(images):
        image = Image(ImageConfig.new(created=CREATED).with_container(Env=["PATH=/bin"], Cmd=["/bin/sh"]))
        for j in range(layers):
            seed = "shared" if j == 0 else f"{prefix}/{i}/{j}"
            path = "d0/shared" if j == 0 else f"d{j}/{prefix.replace('/', '_')}-{i}"
            written = write_layer([dir_entry(f"d{j}"), file_entry(path, payload(seed, size))],
                                  store.blob_sink(), mtime=0)
            desc = written.descriptor
            image = image.appended(Layer(desc, written.diff_id, lambda d=desc: store.open_blob(d)),
                                   History(created=CREATED, created_by=f"layer {j}"))
        manifest = write_image(store, image)
        update = {f"{prefix}/img{i}:v1": manifest}
        if latest is not None:
            update[latest] = manifest
        store.set_names(update)
        named.update(update)
    return named


def write_images(path: Path, prefix: str, images: int, layers: int, size: int,
                 latest: str | None = None) -> dict[str, Descriptor]:
    with LayoutStore.open_or_create(path) as store:
        return write_into(store, prefix, images, layers, size, latest)


class Child:
    """``work`` in a forked process that says when it is running; ``kill_at`` makes it SIGKILL itself
    just before its n-th filesystem call (counted from the start of ``work``)."""

    MUTATING = ("mkdir", "rename", "replace", "link", "unlink", "open", "write", "chmod", "fsync", "rmdir")

    def __init__(self, work: Callable[[Callable[[str], None]], object], kill_at: int | None = None) -> None:
        ready_r, ready_w = os.pipe()
        self._msg_r, msg_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.close(ready_r)
                os.close(self._msg_r)
                write = os.write  # the child's own reports are not kill points
                write(ready_w, b"r")
                counter = _count_fs_calls(kill_at)
                work(lambda text: write(msg_w, f"{text}|{counter[0]}\n".encode()) and None)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(ready_w)
        os.close(msg_w)
        self.pid = pid
        os.read(ready_r, 1)
        os.close(ready_r)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def wait(self) -> int:
        """The exit code (``-SIGKILL`` when it was killed); ``messages`` then holds what it reported."""
        _, status = os.waitpid(self.pid, 0)
        data = b""
        while chunk := os.read(self._msg_r, 65536):
            data += chunk
        os.close(self._msg_r)
        # Each message comes with the child's count of filesystem calls at that moment.
        self.messages = [(text, int(n)) for text, _, n in
                         (line.rpartition("|") for line in data.decode().splitlines())]
        return os.waitstatus_to_exitcode(status)


def _count_fs_calls(kill_at: int | None) -> list[int]:
    counter = [0]
    lock = threading.Lock()  # the layer writer's compression thread writes blobs too

    def tick() -> None:
        with lock:
            if counter[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            counter[0] += 1

    for name in Child.MUTATING:
        real = getattr(os, name)

        def wrapper(*args: object, _real: Callable[..., object] = real, **kw: object) -> object:
            tick()
            return _real(*args, **kw)

        setattr(os, name, wrapper)
    real_open = io.open

    def counted_open(file: object, mode: str = "r", *args: object, **kw: object) -> object:
        opened = real_open(file, mode, *args, **kw)  # type: ignore[call-overload]
        if not any(c in mode for c in "wax+"):
            return opened
        tick()
        return _CountedFile(opened, tick)

    io.open = builtins.open = counted_open  # type: ignore[assignment]
    return counter


class _CountedFile:
    """A file opened for writing whose every ``write`` is a possible kill point (after a truncating
    open and before the data, for example)."""

    def __init__(self, file: BinaryIO, tick: Callable[[], None]) -> None:
        self._file = file
        self._tick = tick

    def write(self, data: bytes) -> int:
        self._tick()
        return self._file.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._file, name)

    def __enter__(self) -> _CountedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


# -- checks -----------------------------------------------------------------------------------------
def umoci_args(*args: str) -> list[str]:
    return [need("umoci"), *args]


def check_layout(path: Path, tool_env: dict[str, str], *, unpack_into: Path | None = None,
                 expect_files: dict[str, bytes] | None = None) -> dict[str, str]:
    """Assert ``path`` is a complete, valid layout by umoci and by ``regfp verify``; its names -> digests.

    With ``unpack_into``, umoci also unpacks every image there, and ``expect_files`` (paths in the root
    filesystem -> content) must be in each.
    """
    assert json.loads((path / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    assert {p.name for p in path.iterdir()} <= LAYOUT_ENTRIES
    index = json.loads((path / "index.json").read_bytes())
    entries = index["manifests"]
    names = {e["annotations"][REF_NAME]: e["digest"] for e in entries}
    assert len(names) == len(entries), f"unnamed or duplicate entries in {entries}"
    listed = subprocess.run(umoci_args("ls", "--layout", str(path)), env=tool_env, capture_output=True,
                            text=True)
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == sorted(names)
    # umoci 0.4.7 reads image manifests only; an index is checked by regfp below.
    images = {e["digest"]: e["annotations"][REF_NAME] for e in entries if e["mediaType"] == mt.OCI_MANIFEST}
    for digest, name in sorted(images.items()):
        stat = subprocess.run(umoci_args("stat", "--image", f"{path}:{name}", "--json"), env=tool_env,
                              capture_output=True, text=True)
        assert stat.returncode == 0, f"umoci stat {name}: {stat.stderr}"
        assert len(json.loads(stat.stdout)["history"]) >= 1
        if unpack_into is not None:
            bundle = unpack_into / digest.replace(":", "-")
            shutil.rmtree(bundle, ignore_errors=True)
            rootless = [] if os.geteuid() == 0 else ["--rootless"]
            unpacked = subprocess.run(umoci_args("unpack", *rootless, "--image", f"{path}:{name}", str(bundle)),
                                      env=tool_env, capture_output=True, text=True)
            assert unpacked.returncode == 0, f"umoci unpack {name}: {unpacked.stderr}"
            for rel, content in (expect_files or {}).items():
                assert (bundle / "rootfs" / rel).read_bytes() == content
            shutil.rmtree(bundle)
    report = verify_layout(LayoutStore.open(path))
    assert report.ok, report.problems
    return names


def digests(named: dict[str, Descriptor]) -> dict[str, str]:
    return {name: d.digest.text for name, d in named.items()}


# -- random kills during a multi-image write ----------------------------------------------------------
IMAGES, LAYERS, SIZE = 4, 3, 120_000
PREFIX, LATEST = "crash", "crash/latest"
TRIALS = 24


def _full_write(path: Path) -> Callable[[Callable[[str], None]], object]:
    return lambda report: write_images(path, PREFIX, IMAGES, LAYERS, SIZE, LATEST)


def _timed_run(path: Path) -> float:
    child = Child(_full_write(path))
    start = time.monotonic()
    assert child.wait() == 0
    return time.monotonic() - start


@pytest.mark.slow
def test_sigkill_at_random_points_leaves_valid_layout(tmp_path: Path, tool_env: dict[str, str]) -> None:
    reference = digests(write_images(tmp_path / "reference", PREFIX, IMAGES, LAYERS, SIZE, LATEST))
    assert len(reference) == IMAGES + 1
    # How long a whole write takes here, so the kills spread over all of it on any machine.
    duration = min(_timed_run(tmp_path / f"timing{i}") for i in range(2))
    rng = random.Random(20240611)
    killed_mid_write = 0
    states: set[int] = set()
    stale_tmp = 0
    for trial in range(TRIALS):
        layout = tmp_path / f"trial{trial}" / "layout"
        layout.parent.mkdir()
        if trial % 3 == 2:  # rewrite over a complete layout: blobs replaced, names moved to themselves
            shutil.copytree(tmp_path / "reference", layout)
        # trial % 3 == 1: kill twice, the second time on top of what the first kill left
        for _ in range(2 if trial % 3 == 1 else 1):
            started_empty = not layout.exists()
            child = Child(_full_write(layout))
            # The last fifth of a whole run is mostly the interpreter starting and ending, not the write.
            time.sleep(rng.uniform(0, duration * 0.8))
            child.kill()
            if child.wait() == -signal.SIGKILL:
                killed_mid_write += 1
            if not layout.exists():
                states.add(-1)
                assert trial % 3 != 2
                continue
            names = check_layout(layout, tool_env, unpack_into=tmp_path / "bundles" if trial % 2 else None,
                                 expect_files={"d0/shared": payload("shared", SIZE)})
            states.add(len(names))
            # Names only ever point at finished images, and the batch {img<i>, latest} moved together.
            assert all(reference[n] == d for n, d in names.items() if n != LATEST), names
            done = sorted(int(n.split("img")[1].split(":")[0]) for n in names if n != LATEST)
            assert done == list(range(len(done)))
            if started_empty and done:
                assert names[LATEST] == names[f"{PREFIX}/img{done[-1]}:v1"]
            elif done:  # over earlier work: latest is wherever the last finished batch put it
                assert names[LATEST] in {d for n, d in names.items() if n != LATEST}
        tmp = layout / ".regfp" / "tmp"
        stale_tmp += len(list(tmp.iterdir())) if tmp.is_dir() else 0
        # The same write, run again to the end, completes the work with the same digests.
        assert digests(write_images(layout, PREFIX, IMAGES, LAYERS, SIZE, LATEST)) == reference
        assert {n: d.digest.text for n, d in LayoutStore.open(layout).names().items()} == reference
        assert verify_layout(LayoutStore.open(layout)).ok
        # A killed writer's temp files were removed by the rerun (nobody held their locks); every blob
        # it did store is used by the rerun.
        assert not any(tmp.iterdir())
        report = LayoutStore.open(layout).gc()
        assert report.removed == () and report.temp_files == 0
    assert killed_mid_write >= 20, f"only {killed_mid_write} kills landed before the writer finished"
    assert len(states) >= 3, f"kills did not spread over the write: saw states {states}"
    assert stale_tmp > 0  # some kills landed while a blob was being written


# -- kills at every filesystem call of a small write, layout creation included ----------------------------
def _create_and_write(path: Path) -> Callable[[Callable[[str], None]], object]:
    def work(report: Callable[[str], None]) -> None:
        with LayoutStore.open_or_create(path) as store:
            report("opened")
            write_into(store, "new", 1, 1, 2000)
        report("done")
    return work


@pytest.mark.parametrize("existing", [False, True], ids=["new-directory", "existing-empty-directory"])
def test_sigkill_at_every_filesystem_call(tmp_path: Path, tool_env: dict[str, str], existing: bool) -> None:
    """Kill the writer just before each of its filesystem calls in turn (creating the layout, writing
    temp files, renaming blobs, replacing index.json). Before the layout is complete it must be absent
    (or, for a directory that existed, not yet marked as a layout); after, always valid."""
    probe = tmp_path / "probe" / "layout"
    probe.parent.mkdir()
    if existing:
        probe.mkdir()
    counting = Child(_create_and_write(probe))
    assert counting.wait() == 0
    calls = dict(counting.messages)
    assert 5 < calls["opened"] < calls["done"]
    expected = check_layout(probe, tool_env)
    outcomes = {"absent": 0, "not-a-layout": 0, "empty": 0, "named": 0}
    for n in range(calls["done"]):
        layout = tmp_path / f"kill{n}" / "layout"
        layout.parent.mkdir()
        if existing:
            layout.mkdir()
        child = Child(_create_and_write(layout), kill_at=n)
        assert child.wait() == -signal.SIGKILL
        if not layout.exists():
            assert not existing and n < calls["opened"]
            outcomes["absent"] += 1
        elif not (layout / "oci-layout").exists():
            # Only a directory that existed can be seen half-filled, and then it is not a layout yet.
            assert existing and n < calls["opened"], sorted(p.name for p in layout.iterdir())
            assert {p.name for p in layout.iterdir()} <= LAYOUT_ENTRIES
            outcomes["not-a-layout"] += 1
        else:
            names = check_layout(layout, tool_env)
            assert names in ({}, expected)
            outcomes["named" if names else "empty"] += 1
        # Whatever the kill left (staging directories included), the same write now completes.
        assert digests(write_images(layout, "new", 1, 1, 2000)) == expected
        assert {n: d.digest.text for n, d in LayoutStore.open(layout).names().items()} == expected
        assert verify_layout(LayoutStore.open(layout)).ok
    assert outcomes["empty"] > 0
    assert outcomes["not-a-layout" if existing else "absent"] > 0


def test_killed_cli_copy_leaves_valid_layout(tmp_path: Path, busybox_rootfs: Path,
                                             tool_env: dict[str, str]) -> None:
    """``regfp copy`` itself, killed at seeded random moments: ``regfp verify`` and umoci still pass."""
    layout = tmp_path / "out"
    rng = random.Random(7)

    def copy(name: str) -> subprocess.Popen[bytes]:
        (busybox_rootfs / "etc" / "marker").write_text(name)  # a different layer for every name
        return subprocess.Popen([sys.executable, "-m", "regctl_fp", "copy", f"dir:{busybox_rootfs}",
                                 f"oci:{layout}:{name}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    start = time.monotonic()
    assert copy("a:1").wait() == 0
    duration = time.monotonic() - start
    for name in ("b:1", "c:1", "d:1"):
        proc = copy(name)
        time.sleep(rng.uniform(duration / 3, duration))  # past interpreter start-up, into the copy
        proc.kill()
        proc.wait()
        verified = subprocess.run([sys.executable, "-m", "regctl_fp", "verify", str(layout)],
                                  capture_output=True, text=True)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        names = check_layout(layout, tool_env)
        assert "a:1" in names
        assert set(names) <= {"a:1", "b:1", "c:1", "d:1"}
