"""What ``run.py`` runs in a fresh interpreter: regfp's library on its own, timed from the inside.

``startup``: only the imports, to separate interpreter start-up from the work.
``layer TREE OUT COMPRESSION``: ``collect_tree`` + ``write_layer`` into a fresh OCI layout (fsync included).
``stages TREE``: what each stage of the write path costs alone, and whether the bytes depend on threads.
Each prints one JSON object on stdout.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections.abc import Callable

T0 = time.perf_counter()

from regctl_fp import layers  # noqa: E402
from regctl_fp.oci import compression  # noqa: E402
from regctl_fp.oci.descriptor import Descriptor  # noqa: E402
from regctl_fp.oci.digest import Digest  # noqa: E402
from regctl_fp.stores.layout import LayoutStore  # noqa: E402

IMPORTED = time.perf_counter()


class NullSink:
    """Counts bytes and keeps a sha256 only when asked: isolates the pipeline from disk and hashing."""

    def __init__(self, hashing: bool = False) -> None:
        self.size = 0
        self.hash = hashlib.sha256() if hashing else None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.hash is not None:
            self.hash.update(data)

    def commit(self, media_type: str) -> Descriptor:
        hexdigest = self.hash.hexdigest() if self.hash is not None else "0" * 64
        return Descriptor(media_type, Digest("sha256", hexdigest), self.size)

    def abort(self) -> None:
        pass


def layer(tree: str, out: str, comp: str) -> dict[str, object]:
    start = time.perf_counter()
    cpu = time.process_time()
    with LayoutStore.open_or_create(out) as store:
        entries = layers.collect_tree(tree)
        collected = time.perf_counter()
        written = layers.write_layer(entries, store.blob_sink(), mtime=0, compression=comp)
    end = time.perf_counter()
    return {"import_s": IMPORTED - T0, "collect_s": collected - start, "write_s": end - collected,
            "work_s": end - start, "cpu_s": time.process_time() - cpu, "size": written.descriptor.size,
            "digest": written.descriptor.digest.text, "diff_id": written.diff_id.text,
            "tar_size": written.uncompressed_size, "files": layers.total_size(entries)}


def _timed(fn: Callable[[], object], repeat: int = 3) -> tuple[float, float, object]:
    """Best wall seconds of ``repeat`` runs, the CPU seconds of that run, and its result."""
    best: tuple[float, float, object] | None = None
    for _ in range(repeat):
        cpu, start = time.process_time(), time.perf_counter()
        result = fn()
        wall, used = time.perf_counter() - start, time.process_time() - cpu
        if best is None or wall < best[0]:
            best = (wall, used, result)
    assert best is not None
    return best


def _threads(n: int, fn: Callable[[int], None]) -> None:
    workers = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def stages(tree: str) -> dict[str, object]:
    entries = layers.collect_tree(tree)
    tar_sink = _MemorySink()
    layers.write_layer(entries, tar_sink, mtime=0, compression="none")
    tar = bytes(tar_sink.data)
    del tar_sink
    block = compression.BLOCK
    views = [memoryview(tar)[i:i + block] for i in range(0, len(tar), block)]
    workers = compression.WORKERS
    rows: list[dict[str, object]] = []

    def row(name: str, threads: int, fn: Callable[[], object], note: str = "") -> object:
        wall, cpu, result = _timed(fn)
        rows.append({"stage": name, "threads": threads, "wall_s": wall, "cpu_s": cpu,
                     "mb_s": len(tar) / wall / 1e6, "mb_s_per_cpu_s": len(tar) / cpu / 1e6 if cpu else None,
                     "note": note})
        return result

    row("read files + tar headers (write_layer none, null sink)", 1,
        lambda: layers.write_layer(entries, NullSink(), mtime=0, compression="none"))

    def sha() -> str:
        h = hashlib.sha256()
        for v in views:
            h.update(v)
        return h.hexdigest()

    row("sha256 of the tar (diff_id)", 1, sha)

    def gzip_blocks(n: int) -> int:
        comp = compression.block_compressor("gzip")
        jobs = [comp.job(v, i == len(views) - 1) for i, v in enumerate(views)]
        sizes = [0] * len(jobs)

        def work(k: int) -> None:
            for i in range(k, len(jobs), n):
                sizes[i] = len(jobs[i]())

        _threads(n, work)
        return sum(sizes)

    row("gzip (ISA-L level 1) blocks", 1, lambda: gzip_blocks(1))
    row("gzip (ISA-L level 1) blocks", workers, lambda: gzip_blocks(workers))

    def zstd(level: int, threads: int) -> int:
        saved = compression.ZSTD_THREADS
        compression.ZSTD_THREADS = threads
        try:
            obj = compression.compressor("zstd", level)
        finally:
            compression.ZSTD_THREADS = saved
        return sum(len(obj.compress(v)) for v in views) + len(obj.flush())

    for level in (3, 1):
        for threads in sorted({1, workers}):
            row(f"zstd level {level}", threads, lambda lv=level, t=threads: zstd(lv, t),  # type: ignore[misc]
                "the default" if level == 3 else "not the default")
    for comp in ("gzip", "zstd", "none"):
        row(f"whole write_layer {comp}, sink hashing, no disk", workers,
            lambda c=comp: layers.write_layer(entries, NullSink(hashing=True), mtime=0,  # type: ignore[misc]
                                              compression=c))
    return {"tar_size": len(tar), "workers": workers, "rows": rows, "same_bytes": _same_bytes(entries)}


class _MemorySink(NullSink):
    def __init__(self) -> None:
        super().__init__(hashing=False)
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        super().write(data)
        self.data += data


def _same_bytes(entries: list[layers.Entry]) -> dict[str, object]:
    """The layer's digest under different thread counts (they must all be equal), and through the
    streaming compressor fed in odd-sized pieces."""
    out: dict[str, object] = {}
    saved_workers, saved_zstd = compression._GzipBlocks.workers, compression.ZSTD_THREADS
    try:
        for comp in ("gzip", "zstd"):
            digests = {}
            for n in (1, 2, 3, 4):
                compression._GzipBlocks.workers = n
                compression.ZSTD_THREADS = n
                sink = NullSink(hashing=True)
                digests[n] = layers.write_layer(entries, sink, mtime=0, compression=comp).descriptor.digest.text
            out[comp] = {"digests_by_threads": digests, "identical": len(set(digests.values())) == 1}
    finally:
        compression._GzipBlocks.workers, compression.ZSTD_THREADS = saved_workers, saved_zstd
    return out


def main(argv: list[str]) -> None:
    what = argv[0]
    if what == "startup":
        result: dict[str, object] = {"import_s": IMPORTED - T0}
    elif what == "layer":
        result = layer(argv[1], argv[2], argv[3])
    elif what == "stages":
        result = stages(argv[1])
    else:
        raise SystemExit(f"unknown: {what}")
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
