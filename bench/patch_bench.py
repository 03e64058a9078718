"""Patch (rebase) benchmark: moving an app onto a new base costs the same for a 10 MB and a 1 GB base.

Side by side: `regfp rebase` of the same app on a small and a big base, and a full rebuild of the big
image (tarring and compressing the base tree again, which is what building onto a new base costs
without rebase). Start-up is measured separately (`regfp --version`) and subtracted for "work".
"""

from __future__ import annotations

import argparse
import compileall
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from regctl_fp.layers import file_entry, write_layer  # noqa: E402
from regctl_fp.oci.config import History  # noqa: E402
from regctl_fp.oci.image import Layer  # noqa: E402
from regctl_fp.sources import BuildOptions, image_from_directory  # noqa: E402
from regctl_fp.stores.base import write_image  # noqa: E402
from regctl_fp.stores.layout import LayoutStore  # noqa: E402


def make_base_dir(root: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text(f"ID=bench-{seed}\n")
    block = rng.randbytes(1 << 20)
    left = size
    i = 0
    while left > 0:
        n = min(left, 64 << 20)
        with open(root / f"blob{i}.bin", "wb") as f:
            for _ in range(n >> 20):
                f.write(block[: 1 << 19] + rng.randbytes(1 << 19))  # half compressible
        left -= n
        i += 1


def setup(work: Path) -> Path:
    layout = work / "layout"
    if (work / "ready").exists():
        return layout
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    store = LayoutStore.open_or_create(layout)
    options = BuildOptions()
    names = {}
    for label, size in (("small", 10 << 20), ("big", 1 << 30)):
        for version in ("a", "b"):
            d = work / f"{label}-{version}"
            make_base_dir(d, size, seed=hash((label, version)) & 0xFFFF)
            base = image_from_directory(d, store, options)
            names[f"bases/{label}:{version}"] = write_image(store, base)
            if version == "a":
                written = write_layer([file_entry("app/run.sh", b"#!/bin/sh\necho app\n", 0o755)],
                                      store.blob_sink(), mtime=0)
                desc = written.descriptor
                app = base.appended(Layer(desc, written.diff_id, lambda d=desc: store.open_blob(d)),
                                    History(created_by="app"))
                app = app.with_annotations({"org.opencontainers.image.base.name": f"oci:{layout}:bases/{label}:a",
                                            "org.opencontainers.image.base.digest": base.digest.text})
                names[f"app/{label}:1"] = write_image(store, app)
    store.set_names(names)
    (work / "ready").write_text("ok")
    return layout


def timed(cmd: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return out


_INNER = """
import sys, time
from regctl_fp.cli.options import build_options
from regctl_fp.refs import parse_ref
from regctl_fp.sources import load_image
from regctl_fp.stages.patch import patch_descriptor
from regctl_fp.stores.layout import LayoutStore
layout, name, new, out = sys.argv[1:5]
options = build_options()
t = time.perf_counter()
store = LayoutStore.open(layout)
desc = store.resolve(name)
result = patch_descriptor(store, desc, new, lambda ref, p: load_image(parse_ref(ref), work=store, platform=p,
                          options=options), old_ref=None, channel=None, annotations={})
with LayoutStore.open_or_create(layout) as dst:
    dst.set_names({out: result.write(dst)})
print(time.perf_counter() - t)
"""


def inner(layout: Path, label: str, runs: int) -> list[float]:
    """The patch's own work, timed inside a process whose imports are already done."""
    out = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", _INNER, str(layout), f"app/{label}:1",
                               f"oci:{layout}:bases/{label}:b", f"inner/{label}:1"], capture_output=True, text=True,
                              check=True)
        out.append(float(proc.stdout.strip()))
    return out


def main() -> None:
    # Installed from a wheel, regfp runs from byte-compiled modules; so it does here, whatever
    # PYTHONDONTWRITEBYTECODE says (compiling ~100 modules on each start-up would cost ~30 ms).
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "regctl_fp"), quiet=1)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, default=HERE / "work" / "patch")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    args = ap.parse_args()
    layout = setup(args.work)
    regfp = [sys.executable, "-m", "regctl_fp"]
    startup = timed([*regfp, "--version"], args.runs)
    results = {"startup": startup}
    for label in ("small", "big"):
        results[f"patch-{label}"] = timed([*regfp, "rebase", f"oci:{layout}:app/{label}:1",
                                           f"oci:{layout}:bases/{label}:b", f"oci:{layout}:out/{label}:1"],
                                          args.runs)
        results[f"inner-{label}"] = inner(layout, label, args.runs)
    rebuild = timed([*regfp, "copy", f"dir:{args.work / 'big-b'}", f"oci:{args.work / 'rebuild'}:big"], 1)
    shutil.rmtree(args.work / "rebuild", ignore_errors=True)
    results["rebuild-big"] = rebuild
    med = {k: statistics.median(v) for k, v in results.items()}
    report = {
        "startup_s": med["startup"],
        "patch_10MB_s": med["patch-small"], "patch_1GB_s": med["patch-big"],
        "patch_1GB_over_10MB": med["patch-big"] / med["patch-small"],
        "patch_10MB_work_s": med["inner-small"], "patch_1GB_work_s": med["inner-big"],
        "rebuild_1GB_s": med["rebuild-big"],
        "rebuild_over_patch_1GB": med["rebuild-big"] / med["patch-big"],
    }
    print(f"{'patch (rebase) figure':34} {'value':>10}")
    for key, value in report.items():
        print(f"{key:34} {value:10.3f}")
    ok_ratio, ok_work = report["patch_1GB_over_10MB"] <= 1.2, report["patch_1GB_work_s"] < 0.1
    print(f"targets: 1 GB within 1.2x of 10 MB: {'met' if ok_ratio else 'NOT MET'}; "
          f"1 GB work under 0.1 s: {'met' if ok_work else 'NOT MET'}   (medians of {args.runs} runs)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"patch": report, "targets": {"ratio": ok_ratio, "work": ok_work}},
                                        indent=2))


if __name__ == "__main__":
    main()
