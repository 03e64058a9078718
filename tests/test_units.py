"""Matrix cells (N x M x K images, layers shared) and work chunks (rendezvous-hashed fan-out)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import stat
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT, make_busybox_rootfs, need, regfp, regfp_json, run_image
from project import make_project

from regctl_fp.stages.work import assign, chunk_of

MATRIX = """\
matrix:
  - name: grid
    axes:
      base: {{b1: "dir:m/base1", b2: "dir:m/base2"}}
      runtime: {{r1: "dir:m/rt1", r2: "dir:m/rt2"}}
      model: {{m1: "dir:m/model1", m2: "dir:m/model2"}}{extra}
work:
  - {{name: jobs, root: items, items: ["*.txt"], chunks: 3}}
"""


def units_project(tmp: Path, extra: str = "") -> None:
    make_project(tmp)
    m = tmp / "m"
    for b in (1, 2):
        make_busybox_rootfs(m / f"base{b}")
        (m / f"base{b}/etc/os-release").write_text(f"ID=base{b}\n")
    for r in (1, 2):
        run = m / f"rt{r}/opt/rt/run"
        run.parent.mkdir(parents=True)
        run.write_text(f"#!/bin/sh\necho runtime{r} $(cat /models/model.txt) on $(cat /etc/os-release)\n")
        run.chmod(0o755)
    for k in (1, 2):
        (m / f"model{k}/models").mkdir(parents=True)
        (m / f"model{k}/models/model.txt").write_text(f"model{k}\n")
    items = tmp / "items"
    items.mkdir()
    for i in range(20):
        (items / f"item-{i:02d}.txt").write_text(f"item {i}\n")
    recipe = tmp / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("output: {layout: out}\n",
                                                 MATRIX.format(extra=extra) + "output: {layout: out}\n"))


def names(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_text())
    return {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}


def test_matrix_cells_share_layers_and_run(tmp_path: Path, tool_env: dict[str, str]) -> None:
    units_project(tmp_path)
    result = regfp_json("build", str(tmp_path / "recipe.yaml"), "--only", "matrix")
    cells = sorted(i["name"] for i in result["images"])
    assert cells == [f"matrix/grid:b{b}-r{r}-m{k}" for b in (1, 2) for r in (1, 2) for k in (1, 2)]
    layout = tmp_path / "out"
    refs = []
    sizes: dict[str, int] = {}
    for name in cells:
        shown = regfp_json("inspect", f"oci:{layout}:{name}")
        layers = shown["layers"]
        assert len(layers) == 3
        refs += [la["digest"] for la in layers]
        sizes.update({la["digest"]: la["size"] for la in layers})
    distinct = set(refs)
    assert len(refs) == 24 and len(distinct) == 6  # each axis value's layer is stored once
    stored = sum((layout / "blobs/sha256" / d.split(":")[1]).stat().st_size for d in distinct)
    assert stored == sum(sizes[d] for d in distinct)
    naive = sum(sizes[d] for d in refs)
    assert naive / stored > 3.5  # the dedup ratio the layout gets over writing each cell's layers
    for name in cells:
        bundle = tmp_path / "bundles" / name.replace("/", "_").replace(":", "_")
        run = run_image(layout, name, bundle, tool_env, ["/opt/rt/run"])
        b, r, k = name.rsplit(":", 1)[1].split("-")
        assert run.stdout.strip() == f"runtime{r[1]} model{k[1]} on ID=base{b[1]}", run.stderr
    again = regfp_json("build", str(tmp_path / "recipe.yaml"), "--only", "matrix")
    assert all(i["cached"] for i in again["images"])


def test_matrix_path_conflicts(tmp_path: Path) -> None:
    units_project(tmp_path)
    (tmp_path / "m/model1/opt/rt").mkdir(parents=True)
    (tmp_path / "m/model1/opt/rt/run").write_text("#!/bin/sh\necho hijacked\n")
    proc = regfp("build", str(tmp_path / "recipe.yaml"), "--only", "matrix", check=False)
    assert proc.returncode == 2 and "/opt/rt/run is in both runtime=r1 and model=m1" in proc.stderr
    assert "Traceback" not in proc.stderr
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace('model2"}\n', 'model2"}\n    overwrite: true\n'))
    assert regfp("build", str(recipe), "--only", "matrix").returncode == 0


def test_work_chunks_cover_items_once_and_move_one_item(tmp_path: Path, tool_env: dict[str, str]) -> None:
    units_project(tmp_path)
    first = regfp_json("build", str(tmp_path / "recipe.yaml"), "--only", "work")
    chunks = sorted(i["name"] for i in first["images"])
    assert chunks == ["work/jobs:1-of-3", "work/jobs:2-of-3", "work/jobs:3-of-3"]
    layout = tmp_path / "out"
    seen: list[str] = []
    for name in chunks:
        bundle = tmp_path / name.replace("/", "_").replace(":", "_")
        subprocess.run([need("umoci"), "raw", "unpack", "--image", f"{layout}:{name}", str(bundle)], check=True,
                       capture_output=True, env=tool_env)
        index = json.loads((bundle / "work/index.json").read_text())
        listed = [it["item"] for it in index["items"]]
        assert sorted(p.name for p in (bundle / "work/input").iterdir()) == sorted(listed)
        for item in listed:
            assert (bundle / "work/input" / item).stat().st_mode & 0o777 == 0o444
        seen += listed
        shown = regfp_json("inspect", f"oci:{layout}:{name}")
        assert shown["config"]["content"]["config"]["User"] == "65534:65534"
    assert sorted(seen) == [f"item-{i:02d}.txt" for i in range(20)] and len(seen) == len(set(seen))
    before = names(layout)
    (tmp_path / "items/item-99.txt").write_text("a new item\n")
    regfp_json("build", str(tmp_path / "recipe.yaml"), "--only", "work")
    after = names(layout)
    changed = [n for n in chunks if before[n] != after[n]]
    old = [f"item-{i:02d}.txt" for i in range(20)]
    pairs = zip(assign(old, 3), assign([*old, "item-99.txt"], 3), strict=True)
    expected = [f"work/jobs:{c + 1}-of-3" for c, (a, b) in enumerate(pairs) if a != b]
    assert changed == expected and f"work/jobs:{chunk_of('item-99.txt', old, 3) + 1}-of-3" in changed


@pytest.mark.parametrize(("items", "chunks"), [(12, 3), (20, 3), (64, 64), (100, 64), (2048, 512), (500, 7)])
def test_work_assignment_is_balanced_and_stable(items: int, chunks: int) -> None:
    """No empty chunk when items >= chunks; the largest within 1.25x the mean (rounded up); adding one
    item changes at most 3 chunks on average over random insertions; order does not matter."""
    rnd = random.Random(items * 7919 + chunks)
    names = [f"file-{i}" for i in range(items)]
    current = assign(names, chunks)
    assert assign(list(reversed(names)), chunks) == current
    changed = 0
    insertions = 1000
    for step in range(insertions):
        names.append(f"new-{step}-{rnd.random()}")
        grown = assign(names, chunks)
        sizes = [len(c) for c in grown]
        assert sum(sizes) == len(names) and len({n for c in grown for n in c}) == len(names)
        assert max(sizes) <= math.ceil(1.25 * len(names) / chunks), sizes
        assert min(sizes) >= 1, sizes
        changed += sum(1 for a, b in zip(current, grown, strict=True) if a != b)
        current = grown
    assert changed / insertions <= 3, changed / insertions


def test_work_demo_items_are_balanced() -> None:
    """The demo's 12 items in 3 chunks (5 / 7 / 0 with rendezvous hashing before)."""
    items = [p.name for p in (ROOT / "testdata/work/items").glob("*.txt")]
    sizes = sorted(len(c) for c in assign(items, 3))
    assert len(items) == 12 and sizes[0] >= 1 and sizes[-1] <= 5, sizes


def _clock_after(path: Path, seconds: float) -> int:
    """A run start ``seconds`` after ``path``'s last change (the clock file timestamps use)."""
    st = os.lstat(path)
    return max(st.st_mtime_ns, st.st_ctime_ns) + int(seconds * 1e9)


def test_work_item_digests_cached_by_stat_and_never_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work items are hashed once: a later run takes the digest of an unchanged file from the cache (the
    file is not read), an edited file is read again (its ctime moved), and a file changed within the racy
    margin of the run's start is never recorded (a second write in the same tick could hide behind it)."""
    import regctl_fp.filedigests as fdmod
    from regctl_fp.filedigests import FileDigests

    root = tmp_path / "items"
    root.mkdir()
    item = root / "a.txt"
    item.write_text("one\n")
    reads: list[str] = []
    real = fdmod.hash_file

    def counting(path: str) -> tuple[str, os.stat_result]:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(fdmod, "hash_file", counting)
    cache = tmp_path / "cache"
    want = hashlib.sha256(b"one\n").hexdigest()

    racy = FileDigests(cache, str(root), clock=lambda: _clock_after(item, 0.5))  # changed 0.5 s before start
    assert racy.digest("a.txt", str(item), os.lstat(item)) == want
    racy.save()
    assert not list(cache.glob("*.json")), "a racily clean file was recorded"

    aged = FileDigests(cache, str(root), clock=lambda: _clock_after(item, 5))
    assert aged.digest("a.txt", str(item), os.lstat(item)) == want
    aged.save()
    [written] = list(cache.glob("*.json"))
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    reads.clear()
    again = FileDigests(cache, str(root), clock=lambda: _clock_after(item, 5))
    assert again.digest("a.txt", str(item), os.lstat(item)) == want
    assert reads == [], "an unchanged item was read again"

    item.write_text("two\n")  # same size: only the times (and the content) tell
    edited = FileDigests(cache, str(root), clock=lambda: _clock_after(item, 5))
    assert edited.digest("a.txt", str(item), os.lstat(item)) == hashlib.sha256(b"two\n").hexdigest()
    assert reads == [str(item)]

    written.write_text('{"a.txt": [1, 2, 3')  # a damaged cache is a cache that misses
    damaged = FileDigests(cache, str(root), clock=lambda: _clock_after(item, 5))
    assert damaged.digest("a.txt", str(item), os.lstat(item)) == hashlib.sha256(b"two\n").hexdigest()


def test_work_item_edit_reaches_the_chunk_through_the_cache(tmp_path: Path, tool_env: dict[str, str]) -> None:
    """Through the CLI: after a cached run, an item rewritten with bytes of the same size changes its
    chunk's image (the digest cache sees the new ctime)."""
    items = tmp_path / "items"
    items.mkdir()
    for i in range(6):
        (items / f"i{i}.txt").write_text(f"item {i}\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text('regfp: 1\nname: w\nwork:\n  - {name: jobs, root: items, items: ["*.txt"], chunks: 2}\n'
                      "output: {layout: out}\n")
    time.sleep(2.1)  # older than the racy margin: the digests are recorded
    first = {i["name"]: i["digest"] for i in regfp_json("build", str(recipe), env=tool_env)["images"]}
    assert list((Path(tool_env["XDG_CACHE_HOME"]) / "regfp" / "file-digests").glob("*.json"))
    (items / "i3.txt").write_text("ITEM 3\n")
    second = {i["name"]: i["digest"] for i in regfp_json("build", str(recipe), env=tool_env)["images"]}
    changed = [n for n in first if first[n] != second[n]]
    assert len(changed) == 1, (first, second)
