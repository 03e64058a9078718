"""zstd against gzip for the same image: what a puller gets from zstd (the write-side target is retired:
gzip through ISA-L already runs at the write path's floor here).

    python3 bench/compress_bench.py [--runs 5] [--scale 0.5] [--json FILE]

One tree (``tree.py``, deterministic) becomes two single-layer images, gzip (ISA-L, level 1, regfp's
default) and zstd (level 3), pushed to a real registry on 127.0.0.1. Then, interleaved: the pull of each
(``regfp copy REGISTRY oci:FRESH``), the unpack of each layer blob into a fresh directory the way a
runtime does it (GNU ``tar -x`` with ``gzip -d``, ``pigz -d`` when installed, or ``zstd -d``), and
regfp's own decompression of each blob to its end (in a fresh interpreter, timed inside it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH.parent / "tests"))
import interp  # noqa: E402
from tree import make_tree  # noqa: E402

COMPRESSIONS = ("gzip", "zstd")

_DECOMPRESS = """
import sys, time
from regctl_fp.oci.compression import decompressed
t = time.perf_counter()
n = 0
with open(sys.argv[1], "rb") as f:
    r = decompressed(f, sys.argv[2])
    while chunk := r.read(1 << 20):
        n += len(chunk)
print(time.perf_counter() - t, n)
"""


def make_images(work: Path, scale: float) -> dict[str, tuple[Path, int, int]]:
    """compression -> (layer blob file, its size, the tar size) in ``work/<compression>`` layouts."""
    from regctl_fp.layers import collect_tree, write_layer
    from regctl_fp.oci.config import History, ImageConfig
    from regctl_fp.oci.image import Image, Layer
    from regctl_fp.stores.base import write_image
    from regctl_fp.stores.layout import LayoutStore

    tree = work / f"tree-{scale}"
    if not (tree / ".done").exists():
        shutil.rmtree(tree, ignore_errors=True)
        make_tree(tree, scale)
        (tree / ".done").write_text("ok")
    out: dict[str, tuple[Path, int, int]] = {}
    for comp in COMPRESSIONS:
        layout = work / f"image-{comp}-{scale}"
        shutil.rmtree(layout, ignore_errors=True)
        with LayoutStore.open_or_create(layout) as store:
            written = write_layer([e for e in collect_tree(tree) if e.path != b".done"], store.blob_sink(), mtime=0,
                                  compression=comp)
            desc = written.descriptor
            created = "2024-01-01T00:00:00Z"
            image = Image(config=ImageConfig.new(os="linux", architecture="amd64", created=created)).appended(
                Layer(desc, written.diff_id, lambda s=store, d=desc: s.open_blob(d)), History(created=created))
            store.set_names({"img:1": write_image(store, image)})
            out[comp] = (store.blob_path(desc.digest), desc.size, written.uncompressed_size)
    return out


def unpack_argv(blob: Path, comp: str, dest: Path) -> list[str]:
    gzip = "pigz -d" if shutil.which("pigz") else "gzip -d"
    program = "zstd -d" if comp == "zstd" else gzip
    return ["tar", "-x", "-I", program, "-f", str(blob), "-C", str(dest)]


def run(runs: int, scale: float, work: Path) -> dict[str, object]:
    from registry_support import Registry

    py, note = interp.python()
    env = interp.env()
    images = make_images(work, scale)
    scratch = work / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    reg = Registry(scratch / "registry").start()
    times: dict[str, list[float]] = {f"{k} {c}": [] for c in COMPRESSIONS for k in ("pull", "unpack", "decompress")}
    try:
        for comp in COMPRESSIONS:
            subprocess.run([py, "-m", "regctl_fp", "copy", f"oci:{work / f'image-{comp}-{scale}'}:img:1",
                            f"{reg.host}/bench/{comp}:1"], check=True, capture_output=True, env=env)
        for _ in range(runs):
            for comp in COMPRESSIONS:
                blob = images[comp][0]
                pulled, unpacked = scratch / "pulled", scratch / "unpacked"
                shutil.rmtree(pulled, ignore_errors=True)
                os.sync()
                t = time.perf_counter()
                subprocess.run([py, "-m", "regctl_fp", "copy", f"{reg.host}/bench/{comp}:1", f"oci:{pulled}:x"],
                               check=True, capture_output=True, env=env)
                times[f"pull {comp}"].append(time.perf_counter() - t)
                if shutil.which(comp if comp == "zstd" else "gzip"):
                    shutil.rmtree(unpacked, ignore_errors=True)
                    unpacked.mkdir()
                    os.sync()
                    t = time.perf_counter()
                    subprocess.run(unpack_argv(blob, comp, unpacked), check=True, capture_output=True)
                    times[f"unpack {comp}"].append(time.perf_counter() - t)
                done = subprocess.run([py, "-c", _DECOMPRESS, str(blob), comp], check=True, capture_output=True,
                                      text=True, env=env)
                seconds, size = done.stdout.split()
                assert int(size) == images[comp][2]
                times[f"decompress {comp}"].append(float(seconds))
    finally:
        reg.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "interpreter": note, "runs": runs, "tar_bytes": images["gzip"][2],
        "size": {c: images[c][1] for c in COMPRESSIONS},
        "median_s": {k: round(statistics.median(v), 3) for k, v in times.items() if v},
        "min_s": {k: round(min(v), 3) for k, v in times.items() if v},
        "load_avg": os.getloadavg()[0],
    }


def report(result: dict[str, object]) -> None:
    size, med, lo = result["size"], result["median_s"], result["min_s"]
    assert isinstance(size, dict) and isinstance(med, dict) and isinstance(lo, dict)
    tar = float(result["tar_bytes"])  # type: ignore[arg-type]
    print(f"{result['interpreter']}")
    print(f"the same tree ({tar / 1e6:.0f} MB of tar) as one layer; {result['runs']} interleaved runs, "
          f"load {float(result['load_avg']):.2f} at the end (s: median / min)")  # type: ignore[arg-type]
    print(f"{'':34}{'gzip':>16}{'zstd':>16}{'zstd/gzip':>10}")
    print(f"{'compressed size (MB)':34}{size['gzip'] / 1e6:>16.1f}{size['zstd'] / 1e6:>16.1f}"
          f"{size['zstd'] / size['gzip']:>10.2f}")
    for what, label in (("pull", "pull (regfp copy registry->oci)"), ("unpack", "unpack (tar -x)"),
                        ("decompress", "decompress (regfp, in-process)")):
        g, z = f"{what} gzip", f"{what} zstd"
        if g in med and z in med:
            print(f"{label:34}{med[g]:>8.3f}/{lo[g]:<7.3f}{med[z]:>8.3f}/{lo[z]:<7.3f}{med[z] / med[g]:>10.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scale", type=float, default=0.5, help="tree size; 1.0 is ~180 MB of files")
    ap.add_argument("--work", type=Path, default=BENCH / "work" / "compress")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    result = run(args.runs, args.scale, args.work)
    report(result)
    interp.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
