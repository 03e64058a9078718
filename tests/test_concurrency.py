"""Concurrent writers and gc on one OCI layout: nobody loses a name, a name has one entry, and gc never
removes a running writer's blobs. Writers are forked processes released together by a barrier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from test_crash import Child, check_layout, digests, write_images, write_into

from regctl_fp.oci.digest import Digest
from regctl_fp.stores.base import closure
from regctl_fp.stores.layout import REF_NAME, LayoutStore
from regctl_fp.stores.transfer import copy_descriptor
from regctl_fp.verify import verify_layout


class Barrier:
    """Children block in ``wait`` until ``release``; a pipe, so it works across fork."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()

    def wait(self) -> None:
        os.read(self._r, 1)

    def release(self, n: int) -> None:
        os.write(self._w, b"g" * n)


def _start_together(works: list[Callable[[Callable[[str], None]], object]]) -> list[Child]:
    barrier = Barrier()

    def gated(work: Callable[[Callable[[str], None]], object]) -> Callable[[Callable[[str], None]], object]:
        def run(report: Callable[[str], None]) -> None:
            barrier.wait()
            work(report)
        return run

    children = [Child(gated(w)) for w in works]
    barrier.release(len(children))
    return children


def _stamped(report: Callable[[str], None], text: str) -> None:
    report(f"{text} {time.monotonic()}")


def _times(child: Child, prefix: str) -> list[float]:
    return [float(text.split()[-1]) for text, _ in child.messages if text.startswith(prefix)]


# -- two writers, different images ----------------------------------------------------------------------
IMAGES, LAYERS, SIZE = 6, 2, 20_000


def _writer(layout: Path, prefix: str) -> Callable[[Callable[[str], None]], object]:
    def work(report: Callable[[str], None]) -> None:
        with LayoutStore.open_or_create(layout) as store:
            for i in range(IMAGES):
                write_into(store, f"{prefix}/{i}", 1, LAYERS, SIZE)
                _stamped(report, f"named {prefix}/{i}")
    return work


def test_two_writers_keep_each_others_names(tmp_path: Path, tool_env: dict[str, str]) -> None:
    reference: dict[str, str] = {}
    with LayoutStore.open_or_create(tmp_path / "reference") as store:
        for prefix in ("left", "right"):
            for i in range(IMAGES):
                reference.update(digests(write_into(store, f"{prefix}/{i}", 1, LAYERS, SIZE)))
    interleaved = 0
    rounds = 8
    for r in range(rounds):
        layout = tmp_path / f"round{r}" / "layout"
        layout.parent.mkdir()
        expected = dict(reference)
        if r % 4 == 1:
            layout.mkdir()  # both fill the same existing empty directory
        elif r % 4 == 2:  # an existing layout with a name of its own
            expected.update(digests(write_images(layout, "earlier", 1, 1, 100)))
        # r % 4 in (0, 3): both race to create the layout directory itself
        left, right = _start_together([_writer(layout, "left"), _writer(layout, "right")])
        assert left.wait() == 0
        assert right.wait() == 0
        assert check_layout(layout, tool_env) == expected
        a, b = _times(left, "named"), _times(right, "named")
        if a[0] < b[-1] and b[0] < a[-1]:  # each named something while the other was still naming
            interleaved += 1
    assert interleaved >= rounds // 2, f"the writers overlapped in only {interleaved} of {rounds} rounds"


# -- many writers moving one name ---------------------------------------------------------------------------
def _mover(layout: Path, who: int, moves: int) -> Callable[[Callable[[str], None]], object]:
    def work(report: Callable[[str], None]) -> None:
        with LayoutStore.open_or_create(layout) as store:
            mine = [d for _, d in sorted(write_into(store, f"mover{who}", 2, 2, 500).items())]
            for m in range(moves):
                desc = mine[m % 2]
                # A name of its own in the same update: a lost update would lose it.
                store.set_names({"shared:latest": desc, f"mover{who}/move:{m}": desc})
                report(f"moved {desc.digest}")
    return work


def test_many_writers_moving_one_name(tmp_path: Path, tool_env: dict[str, str]) -> None:
    layout = tmp_path / "layout"
    writers, moves = 4, 15
    children = _start_together([_mover(layout, w, moves) for w in range(writers)])
    assert [c.wait() for c in children] == [0] * writers
    written = {text.split()[1] for c in children for text, _ in c.messages}
    assert len(written) == 2 * writers
    entries = json.loads((layout / "index.json").read_bytes())["manifests"]
    shared = [e for e in entries if e["annotations"][REF_NAME] == "shared:latest"]
    assert len(shared) == 1
    assert shared[0]["digest"] in written
    names = check_layout(layout, tool_env)
    for w in range(writers):
        for m in range(moves):
            assert f"mover{w}/move:{m}" in names
    assert len(names) == 1 + writers * (2 + moves)


# -- gc and writers -----------------------------------------------------------------------------------------
def _regfp(*args: str) -> list[str]:
    return [sys.executable, "-m", "regctl_fp", *args]


def _fds_of(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found.add(os.readlink(fd))
        except OSError:
            pass
    return found


def test_gc_waits_for_a_writer_that_skipped_an_existing_blob(tmp_path: Path, tool_env: dict[str, str]) -> None:
    """A writer finds a blob already stored (unreferenced) and skips writing it; gc, started meanwhile,
    must not remove that blob before the writer's name is set."""
    source = tmp_path / "source"
    image = write_images(source, "src", 1, 2, 5000)["src/img0:v1"]
    layout = tmp_path / "layout"
    with LayoutStore.open(source) as src, LayoutStore.open_or_create(layout) as dst:
        copy_descriptor(src, dst, image)  # stored but never named: garbage, as far as gc can tell
    blobs = sorted(p.name for p in (layout / "blobs" / "sha256").iterdir())
    assert len(blobs) == 4

    with LayoutStore.open(source) as src, LayoutStore.open_or_create(layout) as writer:
        assert all(writer.has_blob(Digest("sha256", b)) for b in blobs)  # nothing left to copy...
        gc = subprocess.Popen(_regfp("gc", str(layout), "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        deadline = time.monotonic() + 60
        while str(layout / ".regfp" / "session.lock") not in _fds_of(gc.pid):
            assert gc.poll() is None, f"gc did not wait for the writer: {gc.communicate()}"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)  # gc is now waiting for the session lock; give it time to do harm if it could
        assert gc.poll() is None
        assert sorted(p.name for p in (layout / "blobs" / "sha256").iterdir()) == blobs
        copied = copy_descriptor(src, writer, image)  # ...so it only checks and names
        writer.set_names({"copied:1": copied})
    out, err = gc.communicate(timeout=60)
    assert gc.returncode == 0, err
    assert json.loads(out)["removed"] == []
    assert check_layout(layout, tool_env) == {"copied:1": image.digest.text}


def _gc_loop(layout: Path, stop: Path) -> Callable[[Callable[[str], None]], object]:
    def work(report: Callable[[str], None]) -> None:
        store = LayoutStore.open(layout)
        while not stop.exists():
            result = store.gc()
            report(f"gc {len(result.removed)}")
            time.sleep(0.005)
    return work


def _busy_writer(layout: Path, source: Path, rounds: int) -> Callable[[Callable[[str], None]], object]:
    def work(report: Callable[[str], None]) -> None:
        for r in range(rounds):
            with LayoutStore.open(source) as src, LayoutStore.open_or_create(layout) as store:
                # Garbage for gc to find: an image nobody names.
                write_into(store, f"scratch/{r}", 1, 1, 3000)
                store.set_names({f"scratch/{r}/img0:v1": None})
                # An image whose blobs may already be here, unreferenced, from the round before.
                image = src.resolve("src/img0:v1")
                store.set_names({"copied:latest": copy_descriptor(src, store, image)})
                store.set_names({"copied:latest": None})
                store.set_names({f"kept/{r}:1": copy_descriptor(src, store, image)})
                write_into(store, f"fresh/{r}", 1, 2, 3000)
            report(f"round {r}")
            time.sleep(0.05)  # gc waits for every session to end (it takes the lock exclusively)
    return work


def test_gc_concurrent_with_writers_never_removes_their_blobs(tmp_path: Path, tool_env: dict[str, str]) -> None:
    source = tmp_path / "source"
    write_images(source, "src", 1, 3, 4000)
    layout = tmp_path / "layout"
    write_images(layout, "base", 1, 1, 1000)
    stop = tmp_path / "stop"
    rounds = 20
    gc = Child(_gc_loop(layout, stop))
    writers = [Child(_busy_writer(layout, source, rounds)) for _ in range(2)]
    codes = [w.wait() for w in writers]
    stop.touch()
    assert gc.wait() == 0
    assert codes == [0, 0]
    removed = [int(text.split()[1]) for text, _ in gc.messages]
    assert len(removed) >= 3 and sum(removed) > 0, f"gc ran {len(removed)} times, removing {sum(removed)} blobs"
    names = check_layout(layout, tool_env)
    expected_names = {"base/img0:v1"} | {f"kept/{r}:1" for r in range(rounds)} | {
        f"fresh/{r}/img0:v1" for r in range(rounds)}
    assert set(names) == expected_names
    store = LayoutStore.open(layout)
    report = verify_layout(store)
    assert report.ok, report.problems
    # Whatever gc left is exactly what the names reach, once the writers are gone.
    store.gc()
    reachable = closure(store, list(store.read_index().manifests))
    assert {p.name for p in (layout / "blobs" / "sha256").iterdir()} == {d.hex for d in reachable}
