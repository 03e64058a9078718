"""Registry transfer benchmark: regfp and ``skopeo copy`` side by side against the real distribution
registry on 127.0.0.1, each push to a fresh registry so neither finds blobs already there.

    python3 bench/registry_bench.py                 # ~200 MiB image of 5 gzip layers, 150 MB layer, 1 GiB layer
    python3 bench/registry_bench.py --runs 5 --json bench/work/registry.json

Measured per run (interleaved, the order of the two tools alternating, dirty pages flushed before
each): push of the 5-layer image (wall time of each tool's CLI), push of a single-layer ~150 MB gzip
image, each to a fresh registry; re-push of the same image to the same repository (the CLI, and
regfp's own work timed inside the process with the requests it sent: HEADs only); pull into a fresh OCI
layout; and the peak RSS of pushing an image with one 1 GiB layer. Inputs are generated
deterministically into bench/work/registry/ and reused. regfp runs byte-compiled from a venv holding
only its pinned dependencies (``interp.py``). ``main(argv)`` is the entry point for bench/run.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
import interp  # noqa: E402

GNU_TIME = "/usr/bin/time"
MB = 1 << 20
PY = sys.executable  # replaced by interp.python() in main

# The targets (regfp / skopeo for the transfers, seconds for the re-push).
TARGET_PUSH_VS_SKOPEO = 0.8
TARGET_PULL_VS_SKOPEO = 0.9
TARGET_REPUSH_CLI_S = 0.2
TARGET_REPUSH_WORK_S = 0.3
TARGET_BIG_RSS_MB = 100.0
SINGLE_CONTENT_MB = 187  # half noise, half text: stores as a ~150 MB gzip layer


# -- inputs ----------------------------------------------------------------------------------------------
class _Noise:
    """A deterministic stream of incompressible bytes (shake-256 per 64 KiB block), never held whole."""

    def __init__(self, seed: str, size: int) -> None:
        self._seed = seed.encode()
        self._left = size
        self._block = 0
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        parts = [self._buf]
        have = len(self._buf)
        while have < n:
            block = hashlib.shake_256(self._seed + self._block.to_bytes(8, "big")).digest(1 << 16)
            parts.append(block)
            have += len(block)
            self._block += 1
        joined = b"".join(parts)
        data, self._buf = joined[:n], joined[n:]
        self._left -= n
        return data

    def close(self) -> None:
        pass

    def __enter__(self) -> _Noise:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _Text(_Noise):
    """Deterministic text-like bytes (gzip to about 60%): the noise mapped onto a few letters, spaces
    and newlines, so every layer is unique and compresses like source code and text files do."""

    TABLE = (b"etaoinshrdlu  \n." * 16)[:256]

    def read(self, n: int = -1) -> bytes:
        return _Noise.read(self, n).translate(self.TABLE)


def make_layout(path: Path, name: str, layer_sizes: list[int], compression: str, seed: str) -> None:
    """An OCI layout holding one image whose layers are files of the given sizes (skipped if present)."""
    from regctl_fp.layers import Entry, write_layer
    from regctl_fp.oci.config import History, ImageConfig
    from regctl_fp.oci.image import Image, Layer
    from regctl_fp.stores.base import write_image
    from regctl_fp.stores.layout import LayoutStore

    if (path / "index.json").exists():
        with LayoutStore.open(path) as store:
            if name in store.names():
                return
    created = "2024-01-01T00:00:00Z"
    with LayoutStore.open_or_create(path) as store:
        image = Image(config=ImageConfig.new(os="linux", architecture="amd64", created=created))
        for i, size in enumerate(layer_sizes):
            # Noise, and for gzip layers half text: compressible like real layers, unique per layer.
            half = size // 2 if compression != "none" else size
            entries = [Entry(f"data/{i}/noise.bin".encode(), "file", 0o644, size=half,
                             opener=(lambda i=i, s=half: _Noise(f"{seed}/{i}", s)))]
            if size > half:
                entries.append(Entry(f"data/{i}/text.txt".encode(), "file", 0o644, size=size - half,
                                     opener=(lambda i=i, s=size - half: _Text(f"{seed}/{i}/t", s))))
            written = write_layer(entries, store.blob_sink(), mtime=0, compression=compression)
            desc = written.descriptor
            image = image.appended(Layer(desc, written.diff_id, lambda d=desc: store.open_blob(d)),
                                   History(created=created, created_by=f"bench layer {i}"))
        store.set_names({name: write_image(store, image)})


def layout_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path / "blobs").rglob("*") if p.is_file())


# -- running things --------------------------------------------------------------------------------------
def tool_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGFP_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_RUNTIME_DIR=str(home / "run"), PYTHONPATH=str(REPO))
    (home / "run").mkdir(exist_ok=True)
    return env


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB, of the command's own process via GNU time) and stdout."""
    rss_path = cwd / "rss.txt"
    wrapped = [GNU_TIME, "-f", "%M", "-o", str(rss_path), *argv] if os.access(GNU_TIME, os.X_OK) else argv
    start = time.perf_counter()
    proc = subprocess.run(wrapped, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rss = int(rss_path.read_text().split()[-1]) / 1024 if wrapped is not argv else float("nan")
    return wall, rss, proc.stdout


def settle() -> None:
    os.sync()


def start_registry(root: Path) -> Any:
    sys.path.insert(0, str(REPO / "tests"))
    from registry_support import Registry

    if root.exists():
        shutil.rmtree(root)
    return Registry(root).start()


def regfp_cmd(*args: str) -> list[str]:
    return [PY, "-m", "regctl_fp", *args]


def skopeo_push(layout: Path, name: str, target: str) -> list[str]:
    return ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:{name}", f"docker://{target}"]


def skopeo_pull(target: str, out: Path) -> list[str]:
    return ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{target}", f"oci:{out}:pulled"]


# -- the child: regfp's own work, timed inside the process -----------------------------------------------
def child(argv: list[str]) -> None:
    """``--child push|repush LAYOUT NAME HOST REPO``: time copy + set_names inside the process (the
    registry decides which it is: a fresh one gets everything, a second push only HEADs)."""
    t0 = time.perf_counter()
    from regctl_fp.refs import LayoutRef
    from regctl_fp.sources import open_layout_ref
    from regctl_fp.stores.registry import RegistryStore
    from regctl_fp.stores.transfer import copy_descriptor
    from regctl_fp.stores.transport import ClientOptions, RegistryClient

    imported = time.perf_counter()
    _, layout, name, host, repo = argv
    src, desc = open_layout_ref(LayoutRef(layout, name))
    with RegistryClient(host, None, ClientOptions(plain_http=True)) as c:
        store = RegistryStore(c).repository(repo)
        start = time.perf_counter()
        store.set_names({f"{repo}:1": copy_descriptor(src, store, desc, jobs=6)})
        work = time.perf_counter() - start
        print(json.dumps({"import_s": imported - t0, "work_s": work, "requests": c.stats.requests,
                          "uploaded": c.stats.uploaded}))


# -- the benchmark ---------------------------------------------------------------------------------------
def run(opts: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    work = Path(opts.work)
    work.mkdir(parents=True, exist_ok=True)
    image = work / "image"
    sizes = [int(opts.size_mb * MB * w / sum(range(1, opts.layers + 1))) for w in range(1, opts.layers + 1)]
    log(f"inputs: {opts.layers} gzip layers, {opts.size_mb} MiB of content, in {image}")
    make_layout(image, "bench:1", sizes, "gzip", "registry-bench")
    image_mb = layout_bytes(image) / MB
    single = work / "single"
    log(f"inputs: one gzip layer of {SINGLE_CONTENT_MB} MiB of content in {single}")
    make_layout(single, "single:1", [SINGLE_CONTENT_MB * MB], "gzip", "registry-bench-single")
    single_mb = layout_bytes(single) / 1e6
    scratch = Path(tempfile.mkdtemp(prefix="regbench-", dir=work))
    rows: dict[str, list[float]] = {k: [] for k in (
        "skopeo_push", "regfp_push", "regfp_push_work", "skopeo_repush", "regfp_repush_cli", "regfp_repush_work",
        "skopeo_pull", "regfp_pull", "regfp_push_rss", "skopeo_push_rss", "skopeo_push_single",
        "regfp_push_single")}
    repush_requests: dict[str, int] = {}
    try:
        for r in range(opts.runs):
            log(f"run {r + 1}/{opts.runs}")
            regs = {}
            for tool in ("skopeo", "regfp", "inner", "skopeo-single", "regfp-single"):
                regs[tool] = start_registry(scratch / f"reg-{tool}")
            try:
                env = tool_env(scratch / f"home-{r}")
                settle()
                _, _, out = timed([PY, str(Path(__file__)), "--child", "push", str(image), "bench:1",
                                   regs["inner"].host, "bench/inner"], env, scratch)
                rows["regfp_push_work"].append(json.loads(out)["work_s"])
                for tool in ("skopeo", "regfp") if r % 2 == 0 else ("regfp", "skopeo"):
                    target = f"{regs[tool].host}/bench/{tool}:1"
                    settle()
                    argv = (skopeo_push(image, "bench:1", target) if tool == "skopeo"
                            else regfp_cmd("copy", f"oci:{image}:bench:1", target))
                    wall, rss, _ = timed(argv, env, scratch)
                    rows[f"{tool}_push"].append(wall)
                    rows[f"{tool}_push_rss"].append(rss)
                # one ~150 MB layer, each tool to a registry of its own that has never seen it
                for tool in ("skopeo", "regfp") if r % 2 == 0 else ("regfp", "skopeo"):
                    target = f"{regs[tool + '-single'].host}/bench/single:1"
                    settle()
                    argv = (skopeo_push(single, "single:1", target) if tool == "skopeo"
                            else regfp_cmd("copy", f"oci:{single}:single:1", target))
                    wall, _, _ = timed(argv, env, scratch)
                    rows[f"{tool}_push_single"].append(wall)
                # re-push the same image to the same repository
                settle()
                for tool in ("skopeo", "regfp") if r % 2 == 0 else ("regfp", "skopeo"):
                    if tool == "skopeo":
                        wall, _, _ = timed(skopeo_push(image, "bench:1", f"{regs['skopeo'].host}/bench/skopeo:1"),
                                           env, scratch)
                        rows["skopeo_repush"].append(wall)
                    else:
                        wall, _, _ = timed(regfp_cmd("copy", f"oci:{image}:bench:1",
                                                     f"{regs['regfp'].host}/bench/regfp:1"), env, scratch)
                        rows["regfp_repush_cli"].append(wall)
                _, _, out = timed([PY, str(Path(__file__)), "--child", "repush", str(image), "bench:1",
                                   regs["regfp"].host, "bench/regfp"], env, scratch)
                inner = json.loads(out)
                rows["regfp_repush_work"].append(inner["work_s"])
                repush_requests = inner["requests"]
                assert inner["uploaded"] == 0
                # pull into a fresh layout
                for tool in ("skopeo", "regfp") if r % 2 == 0 else ("regfp", "skopeo"):
                    out_dir = scratch / f"pulled-{tool}"
                    shutil.rmtree(out_dir, ignore_errors=True)
                    target = f"{regs[tool].host}/bench/{tool}:1"
                    settle()
                    argv = skopeo_pull(target, out_dir) if tool == "skopeo" else regfp_cmd(
                        "copy", target, f"oci:{out_dir}:pulled")
                    wall, _, _ = timed(argv, env, scratch)
                    rows[f"{tool}_pull"].append(wall)
            finally:
                for reg in regs.values():
                    reg.stop()
        big = None
        if opts.big_mb:
            big = big_layer(opts, work, scratch, log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    result = {
        "image_mb": round(image_mb, 1), "layers": opts.layers, "runs": opts.runs, "single_mb": round(single_mb, 1),
        "median_s": {k: round(v, 3) for k, v in med.items() if not k.endswith("_rss")},
        "min_s": {k: round(min(v), 3) for k, v in rows.items() if v and not k.endswith("_rss")},
        "load_avg": os.getloadavg()[0],
        "push_rss_mb": {"regfp": round(med["regfp_push_rss"], 1), "skopeo": round(med["skopeo_push_rss"], 1)},
        "all_s": {k: [round(x, 3) for x in v] for k, v in rows.items() if not k.endswith("_rss")},
        "repush_requests": repush_requests, "big_layer": big,
    }
    result["targets"] = [
        {"what": f"push {single_mb:.0f} MB single layer regfp/skopeo",
         "value": round(med["regfp_push_single"] / med["skopeo_push_single"], 2),
         "target": f"<= {TARGET_PUSH_VS_SKOPEO}",
         "ok": med["regfp_push_single"] <= TARGET_PUSH_VS_SKOPEO * med["skopeo_push_single"]},
        {"what": f"pull {image_mb:.0f} MiB, {opts.layers} layers regfp/skopeo",
         "value": round(med["regfp_pull"] / med["skopeo_pull"], 2), "target": f"<= {TARGET_PULL_VS_SKOPEO}",
         "ok": med["regfp_pull"] <= TARGET_PULL_VS_SKOPEO * med["skopeo_pull"]},
        {"what": "re-push unchanged, CLI (s)", "value": round(med["regfp_repush_cli"], 3),
         "target": f"<= {TARGET_REPUSH_CLI_S}", "ok": med["regfp_repush_cli"] <= TARGET_REPUSH_CLI_S},
        {"what": f"push {image_mb:.0f} MiB, {opts.layers} layers regfp/skopeo",
         "value": round(med["regfp_push"] / med["skopeo_push"], 2),
         "target": f"<= {TARGET_PUSH_VS_SKOPEO}",
         "ok": med["regfp_push"] <= TARGET_PUSH_VS_SKOPEO * med["skopeo_push"]},
        {"what": "re-push work (s)", "value": round(med["regfp_repush_work"], 3),
         "target": f"< {TARGET_REPUSH_WORK_S}",
         "ok": med["regfp_repush_work"] < TARGET_REPUSH_WORK_S and set(repush_requests) <= {"GET", "HEAD"}
         and repush_requests.get("GET", 0) <= 1},
    ]
    if big is not None:
        result["targets"].append({"what": "1 GiB layer push peak RSS (MiB)", "value": big["regfp_rss_mb"],
                                  "target": f"< {TARGET_BIG_RSS_MB}", "ok": big["regfp_rss_mb"] < TARGET_BIG_RSS_MB})
    return result


def big_layer(opts: argparse.Namespace, work: Path, scratch: Path, log: Any) -> dict[str, Any]:
    layout = work / "big"
    log(f"inputs: one {opts.big_mb} MiB layer (uncompressed) in {layout}")
    make_layout(layout, "big:1", [opts.big_mb * MB], "none", "registry-bench-big")
    env = tool_env(scratch / "home-big")
    out: dict[str, Any] = {"layer_mb": round(layout_bytes(layout) / MB, 1)}
    for tool in ("regfp", "skopeo"):
        reg = start_registry(scratch / f"reg-big-{tool}")
        try:
            target = f"{reg.host}/bench/big:1"
            settle()
            argv = regfp_cmd("copy", f"oci:{layout}:big:1", target) if tool == "regfp" else skopeo_push(
                layout, "big:1", target)
            wall, rss, _ = timed(argv, env, scratch)
            out[f"{tool}_s"] = round(wall, 2)
            out[f"{tool}_rss_mb"] = round(rss, 1)
        finally:
            reg.stop()
            shutil.rmtree(reg.root, ignore_errors=True)
    return out


def report(result: dict[str, Any]) -> None:
    m, lo = result["median_s"], result["min_s"]
    print(f"\nimage: {result['image_mb']} MiB in {result['layers']} layers, and one {result['single_mb']} MB layer; "
          f"{result['runs']} runs each, load {result['load_avg']:.2f} at the end (s: median / min)")
    print(f"{'':28}{'regfp':>16}{'skopeo':>16}{'ratio':>8}")
    for label, key in ((f"push {result['single_mb']:.0f} MB, 1 layer", "push_single"),
                       (f"push {result['image_mb']:.0f} MiB, {result['layers']} layers", "push"),
                       ("re-push unchanged (CLI)", "repush"), (f"pull {result['image_mb']:.0f} MiB", "pull")):
        mine = f"regfp_{key}" if f"regfp_{key}" in m else f"regfp_{key}_cli"
        theirs = f"skopeo_{key}"
        print(f"{label:28}{m[mine]:>8.3f}/{lo[mine]:<7.3f}{m[theirs]:>8.3f}/{lo[theirs]:<7.3f}"
              f"{m[mine] / m[theirs]:>8.2f}")
    print(f"inside regfp (imports excluded): push {m['regfp_push_work']:.3f} s, re-push {m['regfp_repush_work']:.3f} s "
          f"with requests {result['repush_requests']}")
    print(f"push peak RSS (MiB): regfp {result['push_rss_mb']['regfp']}, skopeo {result['push_rss_mb']['skopeo']}")
    if result["big_layer"]:
        b = result["big_layer"]
        print(f"{b['layer_mb']} MiB layer push: regfp {b['regfp_s']} s / {b['regfp_rss_mb']} MiB peak RSS, "
              f"skopeo {b['skopeo_s']} s / {b['skopeo_rss_mb']} MiB")
    print("\ntargets:")
    for t in result["targets"]:
        print(f"  {'ok  ' if t['ok'] else 'MISS'} {t['what']}: {t['value']} (target {t['target']})")


def options(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's options (defaults for ``[]``), for ``run(options([...]))`` from bench/run.py."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--size-mb", type=int, default=265,
                   help="content of the pushed image (MiB before gzip; 265 stores as ~200 MiB)")
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--big-mb", type=int, default=1024, help="size of the single-layer image for peak RSS (0: skip)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--work", default=str(BENCH / "work" / "registry"))
    p.add_argument("--json", dest="json_out", help="also write the results to this file")
    return p.parse_args(argv or [])


def main(argv: list[str] | None = None) -> int:
    global PY
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1:])
        return 0
    PY, note = interp.python()  # byte-compiled, without site hooks a regular install does not have
    print(note, flush=True)
    opts = options(argv)
    if shutil.which("skopeo") is None or shutil.which("docker-registry") is None:
        print("needs skopeo and docker-registry (see .ci/setup)", file=sys.stderr)
        return 2
    result = run(opts)
    report(result)
    if opts.json_out:
        Path(opts.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(t["ok"] for t in result["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
