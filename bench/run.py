"""Benchmarks of regfp's layer write path side by side with the stock tools, in one command.

    python3 bench/run.py                      # everything: layers, stages, build, patch, registry, data
    python3 bench/run.py --only layer --runs 5 --json bench/work/results.json

Inputs are generated deterministically into bench/work/ (git-ignored) and reused. Every tool runs as
a subprocess; wall time comes from a monotonic clock around it, peak RSS from GNU time (the largest
single process of the command; ``wait4`` when GNU time is missing). Runs are interleaved (A B C A B
C ...) so drift in the machine's speed hits every tool alike, after one read of the inputs so every
tool runs warm, and with the dirty pages of the previous run flushed first. bench/README.md says what
each figure means.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
GNU_TIME = "/usr/bin/time"

SECTIONS = ("layer", "big", "stages", "startup", "build", "patch", "base", "registry", "zstd", "data", "scale")
# Sections with a script of their own: run as `python3 bench/<name>_bench.py --json FILE`.
EXTERNAL = {"startup": "startup_bench.py", "build": "build_bench.py", "patch": "patch_bench.py",
            "base": "base_bench.py", "registry": "registry_bench.py", "zstd": "compress_bench.py",
            "data": "data_bench.py", "scale": "scale_bench.py"}
MB = 1e6

# The issue's acceptance targets.
TARGET_VS_UMOCI = 1.2
TARGET_RSS_MB = 100.0
TARGET_ZSTD_VS_GZIP = 1.5
TARGET_SIZE_SLACK = 0.15


@dataclass
class Run:
    wall: float
    rss_mb: float
    inner: dict[str, object] = field(default_factory=dict)


@dataclass
class Tool:
    """One command under test. ``prepare`` runs untimed before each run; ``size`` reads the result."""

    name: str
    argv: list[str]
    out: Path
    size: Callable[[Path], int | None]
    compression: str
    inner_json: bool = False
    note: str = ""
    runs: list[Run] = field(default_factory=list)
    sizes: set[int] = field(default_factory=set)
    digests: set[str] = field(default_factory=set)

    def best(self) -> float:
        return min(r.wall for r in self.runs)

    def median(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    def rss(self) -> float:
        return max(r.rss_mb for r in self.runs)

    def inner(self, key: str) -> float | None:
        values = [float(r.inner[key]) for r in self.runs if key in r.inner]  # type: ignore[arg-type]
        return min(values) if values else None


# ---- running things --------------------------------------------------------------------------------

def tool_env(work: Path) -> dict[str, str]:
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SOURCE_DATE_EPOCH")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local"),
               XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=str(REPO), SOURCE_DATE_EPOCH="0",
               LC_ALL="C")
    return env


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB and stdout of one run; raises if the command fails.

    A forked child starts with a copy of this process's memory, and the kernel counts it in the
    child's peak; GNU time, small itself, forks the command and reports that child's own peak. Without
    it, ``wait4`` gives the peak with this process's size as a floor (``rss_floor`` says how much).
    """
    out_path, err_path, rss_path = cwd / "stdout.txt", cwd / "stderr.txt", cwd / "rss.txt"
    wrapped = [GNU_TIME, "-f", "%M", "-o", str(rss_path), *argv] if os.access(GNU_TIME, os.X_OK) else argv
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(wrapped, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                           f"{err_path.read_text(errors='replace')[-2000:]}")
    kib = int(rss_path.read_text().split()[-1]) if wrapped is not argv else usage.ru_maxrss  # Linux: KiB
    return wall, kib / 1024, out_path.read_text()


def rss_floor() -> str:
    if os.access(GNU_TIME, os.X_OK):
        return "peak RSS of each command's own processes (GNU time)"
    import resource

    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return f"peak RSS from wait4: no value reads below this harness's own {floor:.0f} MiB (install GNU time)"


def settle(out: Path) -> None:
    """Untimed: remove the previous output and flush dirty pages so no run pays for another's writes."""
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    os.sync()


def run_tools(tools: list[Tool], runs: int, env: dict[str, str], scratch: Path, log: Callable[[str], None]) -> None:
    for i in range(runs):
        for t in tools:
            settle(t.out)
            wall, rss, stdout = timed(t.argv, env, scratch)
            inner = json.loads(stdout) if t.inner_json else {}
            t.runs.append(Run(wall, rss, inner))
            size = int(inner["size"]) if "size" in inner else t.size(t.out)  # type: ignore[call-overload]
            if size is not None:
                t.sizes.add(size)
            if "digest" in inner:
                t.digests.add(str(inner["digest"]))
            log(f"  run {i + 1}/{runs} {t.name:<28} {wall:7.3f} s  {rss:6.1f} MiB")
        log("")


def warm(path: Path) -> int:
    """Read every file once so all tools find the input in the page cache; returns the bytes read."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if os.path.islink(p):
                continue
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    total += len(chunk)
    return total


# ---- reading results -------------------------------------------------------------------------------

def layout_layer_size(layout: Path) -> int | None:
    """Size of the (single) layer of the only image in an OCI layout, read through index and manifest."""
    try:
        index = json.loads((layout / "index.json").read_text())
        desc = index["manifests"][0]
        manifest = json.loads((layout / "blobs" / desc["digest"].replace(":", "/")).read_text())
        return int(sum(layer["size"] for layer in manifest["layers"]))
    except (OSError, KeyError, IndexError, ValueError):
        return None


def file_size(path: Path) -> int | None:
    return path.stat().st_size if path.exists() else None


# ---- tools -----------------------------------------------------------------------------------------

def make_tools(src: Path, out: Path, have: dict[str, bool], notes: list[str]) -> list[Tool]:
    py = sys.executable
    child = str(BENCH / "child.py")
    tools = [
        Tool("regfp copy (CLI, gzip)", [py, "-m", "regctl_fp", "copy", f"dir:{src}", f"oci:{out / 'cli'}:x"],
             out / "cli", layout_layer_size, "gzip", note="whole process, interpreter and CLI start-up included"),
    ]
    for comp in ("gzip", "zstd", "none"):
        tools.append(Tool(f"regfp write_layer ({comp})", [py, child, "layer", str(src), str(out / f"lib-{comp}"), comp],
                          out / f"lib-{comp}", lambda _: None, comp, inner_json=True,
                          note="library call in a fresh interpreter"))
    if have["umoci"]:
        layout = out / "umoci"
        script = (f'umoci init --layout "{layout}" && umoci new --image "{layout}:x" && '
                  f'umoci insert --image "{layout}:x" "{src}" /')
        tools.append(Tool("umoci init+new+insert", ["sh", "-c", script], layout, layout_layer_size, "gzip"))
    else:
        notes.append("umoci not found: its rows are skipped (apt-get install umoci)")
    if have["tar"] and have["pigz"]:
        tools.append(Tool("tar | pigz -1", ["sh", "-c", f'tar -C "{src}" -cf - . | pigz -1 > "{out / "pigz.tgz"}"'],
                          out / "pigz.tgz", file_size, "gzip"))
    elif have["tar"]:
        notes.append("pigz not found: its rows are skipped (apt-get install pigz)")
    if have["tar"] and have["zstd"]:
        script = f'tar -C "{src}" -cf - . | zstd -q -3 -T0 > "{out / "t.tzst"}"'
        tools.append(Tool("tar | zstd -3 -T0", ["sh", "-c", script], out / "t.tzst", file_size, "zstd"))
    if have["tar"]:
        tools.append(Tool("tar (no compression)", ["sh", "-c", f'tar -C "{src}" -cf "{out / "t.tar"}" .'],
                          out / "t.tar", file_size, "none"))
    else:
        notes.append("tar not found: the tar rows are skipped")
    return tools


def available() -> dict[str, bool]:
    return {name: shutil.which(name) is not None for name in ("umoci", "pigz", "tar", "zstd")}


# ---- sections --------------------------------------------------------------------------------------

def ensure_tree(work: Path, scale: float, log: Callable[[str], None]) -> Path:
    root = work / f"tree-{scale:g}"
    done = work / f"tree-{scale:g}.done"
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        log(f"generating the tree (scale {scale:g}) in {root} ...")
        subprocess.run([sys.executable, str(BENCH / "tree.py"), str(root), str(scale)], check=True,
                       stdout=subprocess.DEVNULL)
        done.write_text("ok\n")
    return root


def ensure_big(work: Path, size_mb: int, log: Callable[[str], None]) -> Path:
    root = work / f"big-{size_mb}"
    done = work / f"big-{size_mb}.done"
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        log(f"generating a {size_mb} MiB file in {root} ...")
        root.mkdir(parents=True)
        subprocess.run([sys.executable, str(BENCH / "tree.py"), "big", str(root / "data.bin"), str(size_mb)],
                       check=True)
        done.write_text("ok\n")
    return root


def section_tools(name: str, src: Path, work: Path, runs: int, env: dict[str, str],
                  log: Callable[[str], None]) -> dict[str, object]:
    notes: list[str] = []
    out = work / "out" / name
    out.mkdir(parents=True, exist_ok=True)
    data = warm(src)
    tools = make_tools(src, out, available(), notes)
    log(f"[{name}] {src}: {data / MB:.1f} MB of file data; {runs} interleaved runs of {len(tools)} commands")
    startup = [timed([sys.executable, str(BENCH / "child.py"), "startup"], env, out)[0] for _ in range(max(3, runs))]
    run_tools(tools, runs, env, out, log)
    for t in tools:
        settle(t.out)
    return {"section": name, "input": str(src), "input_bytes": data, "runs": runs, "notes": notes,
            "startup_s": min(startup), "tools": [tool_result(t, data) for t in tools]}


def tool_result(t: Tool, data: int) -> dict[str, object]:
    result: dict[str, object] = {
        "name": t.name, "compression": t.compression, "note": t.note,
        "wall_s": [r.wall for r in t.runs], "best_s": t.best(), "median_s": t.median(),
        "mb_s_best": data / t.best() / MB, "mb_s_median": data / t.median() / MB,
        "peak_rss_mb": t.rss(), "size": min(t.sizes) if t.sizes else None,
        "same_size_every_run": len(t.sizes) <= 1,
    }
    if t.inner_json:
        work = t.inner("work_s")
        result.update(inner_work_s=work, inner_mb_s=data / work / MB if work else None,
                      import_s=t.inner("import_s"), collect_s=t.inner("collect_s"), write_s=t.inner("write_s"),
                      cpu_s=t.inner("cpu_s"), digest=sorted(t.digests), same_digest_every_run=len(t.digests) == 1)
    return result


def section_stages(src: Path, env: dict[str, str], work: Path) -> dict[str, object]:
    warm(src)
    _, _, stdout = timed([sys.executable, str(BENCH / "child.py"), "stages", str(src)], env, work)
    result: dict[str, object] = json.loads(stdout)
    result.update(section="stages", input=str(src))
    return result


# ---- printing --------------------------------------------------------------------------------------

def by_name(section: dict[str, object]) -> dict[str, dict[str, object]]:
    return {str(t["name"]): t for t in section["tools"]}  # type: ignore[attr-defined]


def print_tools(section: dict[str, object]) -> None:
    tools = by_name(section)
    base = tools.get("umoci init+new+insert")
    print(f"\n== {section['section']}: {section['input']} ({float(section['input_bytes']) / MB:.1f} MB of files, "  # type: ignore[arg-type]
          f"best of {section['runs']}, median beside it) ==")
    head = (f"{'command':<28} {'comp':<5} {'best s':>7} {'med s':>7} {'MB/s':>7} {'med MB/s':>8} {'x umoci':>7} "
            f"{'peakMiB':>7} {'size MB':>8} {'ratio':>6}")
    print(head)
    print("-" * len(head))
    for t in tools.values():
        vs = f"{float(base['best_s']) / float(t['best_s']):.2f}" if base else "-"  # type: ignore[arg-type]
        size = t["size"]
        ratio = f"{float(section['input_bytes']) / float(size):.2f}" if size else "-"  # type: ignore[arg-type]
        print(f"{t['name']:<28} {t['compression']:<5} {t['best_s']:>7.3f} {t['median_s']:>7.3f} "
              f"{t['mb_s_best']:>7.0f} {t['mb_s_median']:>8.0f} {vs:>7} {t['peak_rss_mb']:>7.1f} "
              f"{float(size) / MB if size else float('nan'):>8.2f} {ratio:>6}")  # type: ignore[arg-type]
    print(f"python start-up with regfp imported: {float(section['startup_s']):.3f} s "  # type: ignore[arg-type]
          "(in every regfp row's wall time)")
    for t in tools.values():
        if t.get("inner_work_s"):
            print(f"  {t['name']}: inside the process {t['inner_work_s']:.3f} s = {t['inner_mb_s']:.0f} MB/s "
                  f"(collect {t['collect_s']:.3f} s, write {t['write_s']:.3f} s, CPU {t['cpu_s']:.2f} s)"
                  + ("" if t["same_digest_every_run"] else "  DIGEST DIFFERED BETWEEN RUNS"))
    for note in section["notes"]:  # type: ignore[attr-defined]
        print(f"note: {note}")


def print_stages(section: dict[str, object]) -> None:
    print(f"\n== stages: each part of the write path alone, on the tree's tar stream "
          f"({float(section['tar_size']) / MB:.1f} MB; best of 3) ==")  # type: ignore[arg-type]
    head = f"{'stage':<56} {'thr':>3} {'wall s':>7} {'MB/s':>7} {'CPU s':>6} {'MB/CPU-s':>8}"
    print(head)
    print("-" * len(head))
    for r in section["rows"]:  # type: ignore[attr-defined]
        print(f"{r['stage']:<56} {r['threads']:>3} {r['wall_s']:>7.3f} {r['mb_s']:>7.0f} {r['cpu_s']:>6.2f} "
              f"{r['mb_s_per_cpu_s'] or 0:>8.0f}")
    for comp, v in section["same_bytes"].items():  # type: ignore[attr-defined]
        print(f"{comp}: layer digest with 1, 2, 3, 4 compressor threads identical: {v['identical']}")


def targets(results: list[dict[str, object]]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for section in results:
        if section["section"] == "stages":
            continue
        tools = by_name(section)
        name = section["section"]
        cli, lib = tools.get("regfp copy (CLI, gzip)"), tools.get("regfp write_layer (gzip)")
        zstd, umoci, pigz = tools.get("regfp write_layer (zstd)"), tools.get("umoci init+new+insert"), \
            tools.get("tar | pigz -1")
        if umoci:
            for label, t in (("CLI", cli), ("library", lib)):
                if t:
                    ratio = float(umoci["best_s"]) / float(t["best_s"])  # type: ignore[arg-type]
                    out.append({"section": name, "target": f"regfp {label} gzip throughput vs umoci",
                                "value": ratio, "goal": f">= {TARGET_VS_UMOCI}", "met": ratio >= TARGET_VS_UMOCI})
        rss = max(float(t["peak_rss_mb"]) for n, t in tools.items() if n.startswith("regfp"))  # type: ignore[arg-type]
        out.append({"section": name, "target": "regfp peak RSS (MiB, worst regfp row)", "value": rss,
                    "goal": f"< {TARGET_RSS_MB:g}", "met": rss < TARGET_RSS_MB})
        if lib and zstd:
            ratio = float(lib["best_s"]) / float(zstd["best_s"])  # type: ignore[arg-type]
            out.append({"section": name, "target": "regfp zstd vs gzip throughput", "value": ratio,
                        "goal": f">= {TARGET_ZSTD_VS_GZIP}", "met": ratio >= TARGET_ZSTD_VS_GZIP})
        for other in (umoci, pigz):
            if lib and other and lib["size"] and other["size"]:
                ratio = float(lib["size"]) / float(other["size"])  # type: ignore[arg-type]
                out.append({"section": name, "target": f"regfp gzip size / {other['name']} size", "value": ratio,
                            "goal": f"<= {1 + TARGET_SIZE_SLACK:.2f}", "met": ratio <= 1 + TARGET_SIZE_SLACK})
    return out


def print_targets(rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    print("\n== targets ==")
    for r in rows:
        print(f"[{r['section']}] {r['target']:<48} {float(r['value']):7.2f}  goal {r['goal']:<7} "  # type: ignore[arg-type]
              f"{'met' if r['met'] else 'NOT MET'}")


def print_issue_table(external: dict[str, object]) -> None:
    """The start-up and transfer targets side by side with their anchors (medians; min in brackets)."""
    rows: list[tuple[str, str, str, str, str]] = []

    def ok(flag: bool) -> str:
        return "met" if flag else "NOT MET"

    build = external.get("build")
    if isinstance(build, dict) and "build" in build:
        b = build["build"]
        rows.append(("warm no-op build recipes/app.yaml", f"{b['warm_build_s']:.3f} s ({b['warm_build_min_s']:.3f})",
                     f"python -c pass {b['python_pass_s']:.3f} s; import typer {b['import_typer_s']:.3f} s",
                     "<= 0.25 s", ok(b["warm_build_s"] <= 0.25)))
    reg = external.get("registry")
    if isinstance(reg, dict) and "median_s" in reg:
        m, lo = reg["median_s"], reg["min_s"]
        rows.append(("re-push of an unchanged image (CLI)",
                     f"{m['regfp_repush_cli']:.3f} s ({lo['regfp_repush_cli']:.3f})",
                     f"skopeo {m['skopeo_repush']:.3f} s", "<= 0.2 s", ok(m["regfp_repush_cli"] <= 0.2)))
        ratio = m["regfp_push_single"] / m["skopeo_push_single"]
        rows.append((f"push {reg['single_mb']:.0f} MB single layer, fresh registry",
                     f"{m['regfp_push_single']:.3f} s ({lo['regfp_push_single']:.3f})",
                     f"skopeo {m['skopeo_push_single']:.3f} s; ratio {ratio:.2f}", "<= 0.8x", ok(ratio <= 0.8)))
        ratio = m["regfp_pull"] / m["skopeo_pull"]
        rows.append((f"pull {reg['image_mb']:.0f} MiB, {reg['layers']} layers",
                     f"{m['regfp_pull']:.3f} s ({lo['regfp_pull']:.3f})",
                     f"skopeo {m['skopeo_pull']:.3f} s; ratio {ratio:.2f}", "<= 0.9x", ok(ratio <= 0.9)))
    base = external.get("base")
    if isinstance(base, dict) and "median_s" in base and "skopeo copy oci->oci" in base["median_s"]:
        m, lo = base["median_s"], base["min_s"]
        key = "regfp rebase (patch onto os:2)"
        ratio = m[key] / m["skopeo copy oci->oci"]
        rows.append(("a new 1 GB base into the output layout", f"{m[key]:.3f} s ({lo[key]:.3f})",
                     f"skopeo copy oci->oci {m['skopeo copy oci->oci']:.3f} s; ratio {ratio:.2f}", "<= 0.25x",
                     ok(ratio <= 0.25)))
    zstd = external.get("zstd")
    if isinstance(zstd, dict) and "size" in zstd:
        m, size = zstd["median_s"], zstd["size"]
        rows.append(("zstd vs gzip (no target)", f"size {size['zstd'] / size['gzip']:.2f}x of gzip",
                     f"pull {m.get('pull zstd', 0):.3f} vs {m.get('pull gzip', 0):.3f} s; unpack "
                     f"{m.get('unpack zstd', 0):.3f} vs {m.get('unpack gzip', 0):.3f} s", "-", "-"))
    if not rows:
        return
    print("\n== issue 17: regfp side by side with its anchor (median of the runs, min in brackets) ==")
    for work, mine, anchor, goal, met in rows:
        print(f"{work:42} {mine:22} {anchor:54} {goal:9} {met}")


def environment() -> dict[str, object]:
    def version(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (done.stdout or done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "missing"

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "load_avg": os.getloadavg(), "rss": rss_floor(), "umoci": version(["umoci", "--version"]),
            "pigz": version(["pigz", "--version"]), "tar": version(["tar", "--version"]),
            "zstd": version(["zstd", "--version"])}


def main(argv: list[str] | None = None) -> int:
    # Installed from a wheel, regfp runs from byte-compiled modules; so it does here, whatever
    # PYTHONDONTWRITEBYTECODE says (compiling ~100 modules on each start-up would cost ~30 ms).
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "regctl_fp"), quiet=1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections to run, of {', '.join(SECTIONS)} (default: all)")
    ap.add_argument("--runs", type=int, help="timed runs of each command (default 3; the sections with a "
                    "script of their own keep that script's default unless given)")
    ap.add_argument("--scale", type=float, default=1.0, help="tree size factor; 1.0 is ~180 MB (default 1.0)")
    ap.add_argument("--big-mb", type=int, default=1024, help="size of the single-file input in MiB (default 1024)")
    ap.add_argument("--work", type=Path, default=BENCH / "work", help="where inputs and outputs go")
    ap.add_argument("--json", type=Path, help="also write all results to this JSON file")
    ap.add_argument("--quiet", action="store_true", help="no per-run progress lines on stderr")
    args = ap.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    runs = 3 if args.runs is None else args.runs
    if unknown or runs < 1:
        ap.error(f"unknown section(s) {unknown}" if unknown else "--runs must be at least 1")

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = tool_env(work)
    print(f"load average at the start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)", flush=True)
    results: list[dict[str, object]] = []
    if "layer" in sections:
        results.append(section_tools("layer", ensure_tree(work, args.scale, log), work, runs, env, log))
        print_tools(results[-1])
    if "big" in sections:
        results.append(section_tools("big", ensure_big(work, args.big_mb, log), work, runs, env, log))
        print_tools(results[-1])
    if "stages" in sections:
        scratch = work / "out"
        scratch.mkdir(parents=True, exist_ok=True)
        results.append(section_stages(ensure_tree(work, args.scale, log), env, scratch))
        print_stages(results[-1])
    external: dict[str, object] = {}
    for name in (n for n in sections if n in EXTERNAL):
        out = work / f"results-{name}.json"
        print(f"\n== {name} ({EXTERNAL[name]})", flush=True)
        extra = [] if args.runs is None or name == "data" else ["--runs", str(args.runs)]  # data: one run each
        proc = subprocess.run([sys.executable, str(BENCH / EXTERNAL[name]), "--json", str(out), *extra])
        external[name] = json.loads(out.read_text()) if proc.returncode in (0, 1) and out.exists() else {
            "error": f"exit {proc.returncode}"}
    goals = targets(results)
    print_targets(goals)
    print_issue_table(external)
    env_info = environment()
    print(f"\nmachine: {env_info['cpus']} CPUs, load average at the end {env_info['load_avg'][0]:.2f} "  # type: ignore[index]
          f"(other work on the machine slows every row alike but adds noise)")
    print(f"memory: {rss_floor()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"environment": env_info, "sections": results, "targets": goals,
                                         "external": external}, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
