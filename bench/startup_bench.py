"""Start-up: what each command costs before and around its work, next to the interpreter's floor.

    python3 bench/startup_bench.py [--runs 10] [--json FILE]

Commands (a fresh interpreter each, interleaved, stdout and stderr pipes): ``python -c pass`` and
``python -c "import typer"`` (the floor of any typer CLI), ``regfp --version``, a warm no-op
``regfp build recipes/app.yaml`` (a clone of this repository, built once before), ``regfp copy`` of an
unchanged image to a real registry (a re-push: HEADs only), ``regfp inspect`` and ``regfp ls`` of a
layout. For each: wall time (median and min), and its import profile from ``python -X importtime``
(the fastest of the runs): modules imported, import time, the packages that cost most, and which of the
heavy libraries (cryptography, rich, httpx, zstandard, yaml) it loaded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import interp  # noqa: E402

HEAVY = ("cryptography", "rich", "httpx", "httpcore", "zstandard", "yaml", "click", "typer", "ssl")
TOP = 8


def profile(argv: list[str], env: dict[str, str], runs: int) -> dict[str, object]:
    """The import profile of the fastest of ``runs`` runs under ``-X importtime``."""
    best: tuple[int, Counter[str], set[str]] | None = None
    for _ in range(runs):
        proc = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL)
        by_package: Counter[str] = Counter()
        names: set[str] = set()
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, _, name = line[len("import time:"):].split("|")
            name = name.strip()
            names.add(name)
            parts = name.split(".")
            by_package[".".join(parts[:2]) if parts[0] == "regctl_fp" else parts[0]] += int(self_us)
        total = sum(by_package.values())
        if best is None or total < best[0]:
            best = (total, by_package, names)
    assert best is not None
    total, by_package, names = best
    return {"modules": len(names), "import_ms": round(total / 1000, 1),
            "top": [(k, round(v / 1000, 1)) for k, v in by_package.most_common(TOP)],
            "heavy": sorted(h for h in HEAVY if h in names)}


def setup(work: Path, py: str, env: dict[str, str]) -> tuple[dict[str, list[str]], object]:
    from registry_support import Registry, make_image

    from regctl_fp.stores.layout import LayoutStore

    subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "repo")], check=True)
    recipe = work / "repo" / "recipes" / "app.yaml"
    regfp = [py, "-m", "regctl_fp"]
    subprocess.run([*regfp, "build", str(recipe)], check=True, capture_output=True, env=env)
    layout = work / "layout"
    with LayoutStore.open_or_create(layout) as store:
        make_image(store, "app:1", layers=5, size=1 << 20)
    reg = Registry(work / "registry").start()
    target = f"{reg.host}/startup/app:1"
    subprocess.run([*regfp, "copy", f"oci:{layout}:app:1", target], check=True, capture_output=True, env=env)
    commands = {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import typer'": [py, "-c", "import typer"],
        "regfp --version": [*regfp, "--version"],
        "regfp build (warm no-op)": [*regfp, "build", str(recipe), "--json"],
        "regfp copy (re-push)": [*regfp, "copy", f"oci:{layout}:app:1", target],
        "regfp inspect oci:": [*regfp, "inspect", f"oci:{layout}:app:1", "--json"],
        "regfp ls LAYOUT": [*regfp, "ls", str(layout)],
    }
    return commands, reg


def run(runs: int) -> dict[str, object]:
    py, note = interp.python()
    with tempfile.TemporaryDirectory(prefix="regfp-startup-") as tmp:
        work = Path(tmp)
        env = interp.env({**os.environ, "XDG_CACHE_HOME": str(work / "cache"), "HOME": str(work / "home")})
        commands, reg = setup(work, py, env)
        try:
            times: dict[str, list[float]] = {k: [] for k in commands}
            for _ in range(runs):
                for label, argv in commands.items():
                    t = time.perf_counter()
                    subprocess.run(argv, check=True, capture_output=True, env=env, stdin=subprocess.DEVNULL)
                    times[label].append(time.perf_counter() - t)
            profiles = {label: profile(argv, env, max(3, runs // 2)) for label, argv in commands.items()}
        finally:
            reg.stop()  # type: ignore[attr-defined]
            shutil.rmtree(work / "registry", ignore_errors=True)
    return {"interpreter": note, "runs": runs, "load_avg": os.getloadavg()[0],
            "commands": {k: {"median_s": round(statistics.median(v), 3), "min_s": round(min(v), 3),
                             **profiles[k]} for k, v in times.items()}}


def report(result: dict[str, object]) -> None:
    commands = result["commands"]
    assert isinstance(commands, dict)
    print(f"{result['interpreter']}")
    print(f"{result['runs']} interleaved runs of each, load {float(result['load_avg']):.2f} at the end")  # type: ignore[arg-type]
    print(f"{'command':28} {'med s':>6} {'min s':>6} {'mods':>5} {'imp ms':>7}  heavy libraries loaded")
    for label, c in commands.items():
        print(f"{label:28} {c['median_s']:6.3f} {c['min_s']:6.3f} {c['modules']:5d} {c['import_ms']:7.1f}  "
              f"{', '.join(c['heavy']) or '-'}")
    print("\nimport time by package (ms, self time, the fastest -X importtime run; it inflates times):")
    for label, c in commands.items():
        print(f"  {label:28} " + ", ".join(f"{k} {v}" for k, v in c["top"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    result = run(args.runs)
    report(result)
    interp.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
