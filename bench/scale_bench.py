"""Scale benchmark: how the engine's cost grows with the number of images a recipe owns.

Two recipes side by side in one run, each of matrix cells and work chunks only (no Git source):
  small: a 4x4x4 matrix + 64 work chunks over 256 items   (128 images)
  large: an 8x8x8 matrix + 512 work chunks over 2,048 items (1,024 images)
For each: a cold build into an empty layout, and a warm no-op (everything cached). Start-up is the wall
time of a warm no-op of a one-image recipe (interpreter, imports, recipe, one key lookup); per-image cost
is (cold wall - start-up) / images. Last, one more image into a layout that already holds 10,000 names,
against the same into a layout of one name, in rounds that also time the start-up no-op again (runs
interleaved, so that drift in the machine's speed hits all three alike); its cost beyond start-up is the
median over rounds of (that wall - the round's start-up). Inputs are left to age 2 s before they are
used: regfp never caches a dir: tree changed in the last 2 s.

    python3 bench/scale_bench.py [--runs 3] [--work DIR] [--json FILE]

The work goes into a new directory under ``--work`` (default ``bench/work/``, as the other sections).
Next to the figures it prints the cost of creating a file there (2,000 new files, each written and
renamed into another directory, as a layout stores a blob): on one ext4 filesystem of these machines
that cost was 16 us a file in one directory and 160-270 us in another (a directory under /tmp made
minutes earlier), with nothing of regfp running, and a cold build creates about 2.5 files an image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import interp  # noqa: E402  (bench/interp.py: the interpreter regfp runs on)

TARGET_COLD_MS_PER_IMAGE = 5.0
TARGET_GROWTH = 1.2
TARGET_WARM_S = 0.5
TARGET_ADD_ONE_MS = 50.0


def make_inputs(work: Path, axis: int, chunks: int, items: int) -> Path:
    """A recipe of an axis^3 matrix (each value a one-file dir: image) and ``chunks`` work chunks."""
    axes = {}
    for name in ("base", "runtime", "model"):
        values = {}
        for v in range(axis):
            tree = work / "trees" / f"{name}-{v}" / name
            tree.mkdir(parents=True, exist_ok=True)
            (tree / f"{name}.txt").write_text(f"{name} {v}\n")
            values[f"{name[0]}{v}"] = f"dir:trees/{name}-{v}"
        axes[name] = values
    (work / "items").mkdir(exist_ok=True)
    for i in range(items):
        (work / "items" / f"item-{i:05d}.txt").write_text(f"item {i}\n")
    lines = ["regfp: 1", "name: scale", "matrix:", "  - name: grid", "    overwrite: true", "    axes:"]
    for axis_name, values in axes.items():
        inner = ", ".join(f"{k}: \"{v}\"" for k, v in values.items())
        lines.append(f"      {axis_name}: {{{inner}}}")
    lines += ["work:", f"  - {{name: jobs, root: items, items: [\"*.txt\"], chunks: {chunks}}}",
              "output: {layout: out}", ""]
    recipe = work / "recipe.yaml"
    recipe.write_text("\n".join(lines))
    return recipe


def one_image_recipe(work: Path, tag: str = "x") -> Path:
    """A recipe of one matrix cell over a one-file tree; each ``tag`` is a different image."""
    tree = work / f"one-{tag}" / "t"
    tree.mkdir(parents=True, exist_ok=True)
    (tree / "one.txt").write_text(f"one {tag}\n")
    recipe = work / f"one-{tag}.yaml"
    recipe.write_text(f"regfp: 1\nname: one\nmatrix:\n  - name: one\n    axes: {{a: {{{tag}: \"dir:one-{tag}\"}}}}\n"
                      "output: {layout: out}\n")
    return recipe


def settle() -> None:
    """regfp never caches a dir: tree changed in the last 2 s (racily clean, as git): let inputs age."""
    time.sleep(2.1)


def timed(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=env, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr}")
    return wall


def count_images(layout: Path) -> int:
    return len(json.loads((layout / "index.json").read_text())["manifests"])


def fill_layout(layout: Path, names: int, env: dict[str, str]) -> None:
    """A layout holding ``names`` names (all on one small image), written through regfp's own store."""
    code = f"""
from regctl_fp.oci.config import ImageConfig
from regctl_fp.oci.image import Image
from regctl_fp.stores.base import write_image
from regctl_fp.stores.layout import LayoutStore
with LayoutStore.open_or_create({str(layout)!r}) as store:
    desc = write_image(store, Image(config=ImageConfig.new()))
    store.set_names({{f"filler/n{{i:05d}}:latest": desc for i in range({names})}})
"""
    subprocess.run([sys.executable, "-c", code], check=True, env=env)  # set-up, not timed


def create_floor(directory: Path, files: int = 2000) -> float:
    """Microseconds to create a new file in ``directory`` (median over ``files``), each written and
    renamed into a sibling directory as a layout stores a blob: the filesystem's part of a cold build."""
    src, dst = directory / "create-floor", directory / "create-floor.dst"
    src.mkdir()
    dst.mkdir()
    times = []
    for i in range(files):
        t = time.perf_counter()
        fd, name = tempfile.mkstemp(dir=src)
        times.append(time.perf_counter() - t)
        os.write(fd, b"x" * 200)
        os.close(fd)
        os.rename(name, dst / f"f{i}")
    shutil.rmtree(src)
    shutil.rmtree(dst)
    return statistics.median(times) * 1e6


def run(runs: int, work_root: Path) -> dict[str, object]:
    py, note = interp.python()  # as a user's regular install runs it (see interp.py)
    result: dict[str, object] = {"interpreter": note}
    work_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="regfp-scale-", dir=work_root) as tmp:
        base = Path(tmp)
        result["work_dir"] = str(base)
        result["create_us"] = create_floor(base)
        env = interp.env(dict(os.environ, XDG_CACHE_HOME=str(base / "cache")))
        one = one_image_recipe(base)
        settle()
        subprocess.run([py, "-m", "regctl_fp", "build", str(one)], check=True, capture_output=True, env=env)
        startup = statistics.median(timed([py, "-m", "regctl_fp", "build", str(one)], env) for _ in range(5))
        result["startup_s"] = startup
        sizes = {"small": (4, 64, 256), "large": (8, 512, 2048)}
        for label, (axis, chunks, items) in sizes.items():
            work = base / label
            work.mkdir()
            recipe = make_inputs(work, axis, chunks, items)
            settle()
            build = [py, "-m", "regctl_fp", "build", str(recipe)]
            colds, warms = [], []
            for _ in range(runs):
                shutil.rmtree(work / "out", ignore_errors=True)
                shutil.rmtree(base / "cache", ignore_errors=True)
                colds.append(timed(build, env))
                warms.append(timed(build, env))
            images = count_images(work / "out")
            cold = statistics.median(colds)
            result[label] = {"images": images, "cold_s": cold, "warm_s": statistics.median(warms),
                             "cold_ms_per_image": (cold - startup) / images * 1000}
        # One more image: each round times, interleaved so that drift in the machine's speed hits all
        # three alike, the start-up no-op again, one new image into a layout of one name, and one into a
        # layout of 10,000 names (each try a recipe of its own, so each adds a new image).
        tries = max(runs, 7)
        layouts = {}
        for filled in (1, 10_000):
            work = base / f"add-{filled}"
            work.mkdir()
            fill_layout(work / "out", filled, env)
            layouts[filled] = [one_image_recipe(work, f"v{i}") for i in range(tries)]
        settle()
        rounds: dict[str, list[float]] = {"startup": [], "one": [], "many": []}
        for i in range(tries):
            rounds["startup"].append(timed([py, "-m", "regctl_fp", "build", str(one)], env))
            rounds["one"].append(timed([py, "-m", "regctl_fp", "build", str(layouts[1][i])], env))
            rounds["many"].append(timed([py, "-m", "regctl_fp", "build", str(layouts[10_000][i])], env))
        result["startup_interleaved_s"] = statistics.median(rounds["startup"])
        result["add_one_to_one_name_s"] = statistics.median(rounds["one"])
        result["add_one_to_10000_s"] = statistics.median(rounds["many"])
        # per round, so that each difference is taken between runs a few hundred ms apart
        result["add_beyond_startup_ms"] = statistics.median(
            (m - s) * 1000 for m, s in zip(rounds["many"], rounds["startup"], strict=True))
        result["add_10000_beyond_one_ms"] = statistics.median(
            (m - o) * 1000 for m, o in zip(rounds["many"], rounds["one"], strict=True))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    args = ap.parse_args(argv)
    r = run(args.runs, args.work)
    small, large = r["small"], r["large"]
    assert isinstance(small, dict) and isinstance(large, dict)
    growth = large["cold_ms_per_image"] / small["cold_ms_per_image"]
    add_ms = float(r["add_beyond_startup_ms"])  # type: ignore[arg-type]
    print(r["interpreter"])
    print(f"work directory {r['work_dir']}: creating a file there costs {float(r['create_us']):.0f} us "  # type: ignore[arg-type]
          "(median of 2,000, each written and renamed away, nothing of regfp running)")
    print(f"start-up (warm no-op, one image): {r['startup_s']:.3f} s")
    for label in ("small", "large"):
        row = r[label]
        assert isinstance(row, dict)
        print(f"{label:6} {row['images']:5d} images: cold {row['cold_s']:7.3f} s "
              f"({row['cold_ms_per_image']:.2f} ms/image after start-up), warm no-op {row['warm_s']:.3f} s")
    print(f"one more image: into a layout of one name {r['add_one_to_one_name_s']:.3f} s, into 10,000 names "
          f"{r['add_one_to_10000_s']:.3f} s (medians); per round, into 10,000 names is {add_ms:.0f} ms beyond "
          f"the start-up no-op and {float(r['add_10000_beyond_one_ms']):.0f} ms beyond adding into one name")  # type: ignore[arg-type]
    targets = {
        f"cold <= {TARGET_COLD_MS_PER_IMAGE} ms/image": large["cold_ms_per_image"] <= TARGET_COLD_MS_PER_IMAGE,
        f"per-image growth 130 -> 1,026 <= {TARGET_GROWTH}x": growth <= TARGET_GROWTH,
        f"warm no-op over 1,026 names <= {TARGET_WARM_S} s": large["warm_s"] <= TARGET_WARM_S,
        f"one more image into 10,000 names <= {TARGET_ADD_ONE_MS:.0f} ms": add_ms <= TARGET_ADD_ONE_MS,
    }
    print(f"growth of per-image cost: {growth:.2f}x")
    for text, met in targets.items():
        print(f"target {text}: {'met' if met else 'NOT MET'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"scale": {**r, "growth": growth, "add_one_ms": add_ms},
                                         "targets": targets}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
