"""Matrix cells (N x M x K images, layers shared) and work chunks (rendezvous-hashed fan-out)."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

from conftest import make_busybox_rootfs, need, regfp, regfp_json, run_image
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
    assert changed == [f"work/jobs:{chunk_of('item-99.txt', 3) + 1}-of-3"]


def test_rendezvous_assignment_is_stable_and_balanced() -> None:
    items = [f"file-{i}" for i in range(3000)]
    counts = Counter(chunk_of(i, 6) for i in items)
    assert all(abs(n - 500) < 100 for n in counts.values()), counts
    base = assign(items, 6)
    grown = assign([*items, "file-new"], 6)
    moved = [i for i, (a, b) in enumerate(zip(base, grown, strict=True)) if a != b]
    assert len(moved) == 1 and "file-new" in grown[moved[0]]
