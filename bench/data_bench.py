"""Data artifact benchmark: ``regfp data push`` / ``data pull`` of one big file (default 1 GiB) to an OCI
layout and to the real distribution registry on 127.0.0.1, and of a directory holding it (a gzip tar
layer), with the wall time and the peak RSS of each command (GNU time's ``%M``, the CLI's own process).

    python3 bench/data_bench.py                      # 1 GiB, one run of each command
    python3 bench/data_bench.py --mb 256 --json bench/work/data.json

The target (issue 9): a 1 GB file pushes and pulls with peak RSS under 100 MB. Every pull is checked
against the input's sha256. The input is generated deterministically into bench/work/data/ and reused.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from registry_bench import MB, regfp_cmd, settle, start_registry, timed, tool_env  # noqa: E402

TARGET_RSS_MB = 100.0


def make_input(path: Path, size: int) -> str:
    """``size`` bytes of incompressible data (shake-256 blocks), written once; returns its sha256."""
    done = path.with_suffix(".sha256")
    if path.is_file() and path.stat().st_size == size and done.is_file():
        return done.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        written, n = 0, 0
        while written < size:
            block = hashlib.shake_256(f"data-bench-{n}".encode()).digest(min(MB, size - written))
            f.write(block)
            h.update(block)
            written += len(block)
            n += 1
    done.write_text(h.hexdigest())
    return h.hexdigest()


def file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MB):
            h.update(chunk)
    return h.hexdigest()


def run(opts: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    work = Path(opts.work)
    size = opts.mb * MB
    big = work / "input" / "big.bin"
    log(f"input: {opts.mb} MiB at {big}")
    expected = make_input(big, size)
    tree = work / "input-dir"
    if not (tree / "big.bin").exists():
        tree.mkdir(parents=True, exist_ok=True)
        os.link(big, tree / "big.bin")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="data-bench-", dir=work) as tmp:
        scratch = Path(tmp)
        env = tool_env(scratch / "home")
        registry = start_registry(scratch / "registry")
        try:
            steps = [
                ("push file -> layout",
                 regfp_cmd("data", "push", str(big), "--to", f"oci:{scratch}/layout:big:1"), None),
                ("pull file <- layout",
                 regfp_cmd("data", "pull", f"oci:{scratch}/layout:big:1", str(scratch / "p1")), scratch / "p1/big.bin"),
                ("push file -> registry", regfp_cmd("data", "push", str(big), "--to", f"{registry.host}/bench/big:1"),
                 None),
                ("pull file <- registry",
                 regfp_cmd("data", "pull", f"{registry.host}/bench/big:1", str(scratch / "p2")),
                 scratch / "p2/big.bin"),
                ("push dir (gzip) -> registry",
                 regfp_cmd("data", "push", str(tree), "--to", f"{registry.host}/bench/dir:1"), None),
                ("pull dir <- registry", regfp_cmd("data", "pull", f"{registry.host}/bench/dir:1", str(scratch / "p3")),
                 scratch / "p3/input-dir/big.bin"),
            ]
            for label, argv, check in steps:
                settle()
                wall, rss, _ = timed(argv, env, scratch)
                ok = True
                if check is not None:
                    ok = file_sha(check) == expected
                    shutil.rmtree(check.parent, ignore_errors=True)
                rows.append({"step": label, "wall_s": round(wall, 2), "mb_per_s": round(size / MB / wall, 1),
                             "peak_rss_mb": round(rss, 1), "content_ok": ok})
                log(f"  {label:30} {wall:7.2f} s  {size / MB / wall:7.1f} MiB/s  peak RSS {rss:6.1f} MiB"
                    + ("" if ok else "  CONTENT MISMATCH"))
        finally:
            registry.stop()
    worst = max(r["peak_rss_mb"] for r in rows)
    result = {"size_mib": opts.mb, "rows": rows,
              "target": {"what": "peak RSS of every push and pull (MiB)", "value": worst,
                         "target": f"< {TARGET_RSS_MB}",
                         "ok": worst < TARGET_RSS_MB and all(r["content_ok"] for r in rows)}}
    log(f"peak RSS over all commands: {worst:.1f} MiB (target < {TARGET_RSS_MB:.0f}): "
        + ("ok" if result["target"]["ok"] else "NOT MET"))
    return result


def main(argv: list[str] | None = None) -> int:
    # Installed from a wheel, regfp runs from byte-compiled modules; so it does here, whatever
    # PYTHONDONTWRITEBYTECODE says (compiling ~100 modules on each start-up would cost ~30 ms).
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "regctl_fp"), quiet=1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the file in MiB (default 1024)")
    parser.add_argument("--work", default=str(BENCH / "work" / "data"), help="where inputs live (git-ignored)")
    parser.add_argument("--json", help="also write the results here")
    opts = parser.parse_args(argv)
    Path(opts.work).mkdir(parents=True, exist_ok=True)
    result = run(opts)
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["target"]["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
