"""A new 1 GB base into the output layout: what a patch costs after a channel moves to a base that lives
in another layout on the same filesystem, side by side with ``skopeo copy oci:BASES:os:2 oci:NEW:os``
(the stock way to bring that base in).

    python3 bench/base_bench.py [--runs 5] [--base-mb 1280] [--json FILE]

Rows, interleaved (A B C A B C ...), each into a fresh output layout, dirty pages flushed first:
- ``regfp rebase`` of an app from the old base (``os:1``, 10 MB) onto ``os:2`` (one gzip layer of
  ``--base-mb`` MiB of content), both in ``bases/``, the app and the result in ``out/``;
- ``regfp copy oci->oci`` of ``os:2`` alone, and ``skopeo copy oci->oci`` of the same.
regfp hard-links the base's blobs (hashing each through the link first); skopeo copies them.
Inputs are made once, deterministically, in bench/work/base/.
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
import interp  # noqa: E402
from registry_bench import MB, make_layout  # noqa: E402

TARGET_VS_SKOPEO = 0.25


def setup(work: Path, base_mb: int) -> tuple[Path, Path]:
    """``bases/`` (os:1, os:2) and a template ``out/`` holding app:1 on os:1 (base annotations set)."""
    from regctl_fp.layers import file_entry, write_layer
    from regctl_fp.oci.config import History
    from regctl_fp.oci.image import Layer
    from regctl_fp.stores.base import read_image, write_image
    from regctl_fp.stores.layout import LayoutStore

    bases, template = work / "bases", work / "out-template"
    ready = work / f"ready-{base_mb}"
    if ready.exists():
        return bases, template
    shutil.rmtree(work, ignore_errors=True)
    make_layout(bases, "os:1", [10 * MB], "gzip", "base-bench-os1")
    make_layout(bases, "os:2", [base_mb * MB], "gzip", f"base-bench-os2-{base_mb}")
    with LayoutStore.open(bases) as src, LayoutStore.open_or_create(template) as out:
        old = src.resolve("os:1")
        base = read_image(src, old)
        written = write_layer([file_entry("app/run.sh", b"#!/bin/sh\necho app\n", 0o755)], out.blob_sink(), mtime=0)
        desc = written.descriptor
        app = base.appended(Layer(desc, written.diff_id, lambda: out.open_blob(desc)), History(created_by="app"))
        app = app.with_annotations({"org.opencontainers.image.base.name": f"oci:{bases}:os:1",
                                    "org.opencontainers.image.base.digest": old.digest.text})
        out.set_names({"app:1": write_image(out, app)})
    ready.write_text("ok")
    return bases, template


def run(runs: int, base_mb: int, work: Path) -> dict[str, object]:
    py, note = interp.python()
    bases, template = setup(work, base_mb)
    env = interp.env()
    base_bytes = sum(p.stat().st_size for p in (bases / "blobs").rglob("*") if p.is_file())
    out, fresh = work / "out", work / "fresh"
    regfp = [py, "-m", "regctl_fp"]
    rows = {
        "regfp rebase (patch onto os:2)": [*regfp, "rebase", f"oci:{out}:app:1", f"oci:{bases}:os:2",
                                           f"oci:{out}:app:2", "--from", f"oci:{bases}:os:1"],
        "regfp copy oci->oci": [*regfp, "copy", f"oci:{bases}:os:2", f"oci:{fresh}:os"],
        "skopeo copy oci->oci": ["skopeo", "copy", "--quiet", f"oci:{bases}:os:2", f"oci:{fresh}:os"],
    }
    if shutil.which("skopeo") is None:
        rows.pop("skopeo copy oci->oci")
    times: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(runs):
        for label, argv in rows.items():
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(fresh, ignore_errors=True)
            shutil.copytree(template, out)
            os.sync()
            t = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True, env=env, stdin=subprocess.DEVNULL)
            times[label].append(time.perf_counter() - t)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(fresh, ignore_errors=True)
    result: dict[str, object] = {
        "base_bytes": base_bytes, "runs": runs, "interpreter": note,
        "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "min_s": {k: round(min(v), 3) for k, v in times.items()},
        "load_avg": os.getloadavg()[0],
    }
    med = result["median_s"]
    assert isinstance(med, dict)
    if "skopeo copy oci->oci" in med:
        ratio = med["regfp rebase (patch onto os:2)"] / med["skopeo copy oci->oci"]
        result["targets"] = [{"what": "new 1 GB base into the output layout: regfp rebase / skopeo copy oci->oci",
                              "value": round(ratio, 3), "target": f"<= {TARGET_VS_SKOPEO}",
                              "ok": ratio <= TARGET_VS_SKOPEO}]
    return result


def report(result: dict[str, object]) -> None:
    med, lo = result["median_s"], result["min_s"]
    assert isinstance(med, dict) and isinstance(lo, dict)
    print(f"{result['interpreter']}")
    print(f"bases layout: {float(result['base_bytes']) / 1e6:.0f} MB; {result['runs']} interleaved runs, "  # type: ignore[arg-type]
          f"load {float(result['load_avg']):.2f} at the end")  # type: ignore[arg-type]
    print(f"{'command':34} {'median s':>9} {'min s':>8}")
    for k in med:
        print(f"{k:34} {med[k]:9.3f} {lo[k]:8.3f}")
    for t in result.get("targets", []):  # type: ignore[attr-defined]
        print(f"target {t['what']}: {t['value']} (goal {t['target']}) {'met' if t['ok'] else 'NOT MET'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--base-mb", type=int, default=1280,
                    help="content of the new base's layer (MiB; 1280 stores as ~1 GB of gzip)")
    ap.add_argument("--work", type=Path, default=BENCH / "work" / "base")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    result = run(args.runs, args.base_mb, args.work)
    report(result)
    interp.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
