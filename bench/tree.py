"""Deterministic benchmark inputs: a ~180 MB tree of mixed files (text, binaries, incompressible assets,
many tiny files) and one large compressible file. Same seed and size, same bytes, on any machine."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

WORDS = ("def class return import from self None True False for while if else elif try except with as "  # noqa: SIM905
         "lambda yield async await struct int char void static const unsigned long double float pointer "
         "buffer size length offset index value key name path file data error result config layer image "
         "digest manifest registry blob tag the of and to in is that it for on are was").split()


def text_blob(rng: random.Random, size: int) -> bytes:
    out = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def binary_blob(rng: random.Random, size: int) -> bytes:
    # Shared-library-like: runs of repeated instruction-ish patterns mixed with noise (ratio ~2-3x).
    chunks = []
    n = 0
    while n < size:
        if rng.random() < 0.5:
            c = rng.randbytes(rng.randint(16, 256))
        else:
            c = bytes(rng.choice((0, 0x48, 0x89, 0xFF, 0xE8, 0x8B))) * rng.randint(8, 128) + rng.randbytes(8)
        chunks.append(c)
        n += len(c)
    return b"".join(chunks)[:size]


def make_tree(root: Path, scale: float = 1.0, seed: int = 42) -> int:
    rng = random.Random(seed)
    total = 0

    def put(rel: str, data: bytes, mode: int = 0o644) -> None:
        nonlocal total
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, mode)
        total += len(data)

    for i in range(int(1500 * scale)):  # source-like text: ~55 MB
        put(f"src/pkg{i % 40}/mod{i}.py", text_blob(rng, rng.randint(4_000, 70_000)))
    for i in range(int(60 * scale)):  # binaries: ~75 MB
        put(f"usr/lib/lib{i}.so", binary_blob(rng, rng.randint(300_000, 2_200_000)), 0o755)
    for i in range(int(40 * scale)):  # already-compressed assets: ~45 MB
        put(f"assets/img{i}.jpg", rng.randbytes(rng.randint(200_000, 2_000_000)))
    for i in range(int(6000 * scale)):  # tiny files: ~4 MB
        put(f"etc/conf.d/{i % 100}/f{i}.conf", text_blob(rng, rng.randint(50, 1_200)))
    for i in range(int(200 * scale)):
        (root / f"empty/d{i}").mkdir(parents=True, exist_ok=True)
    os.symlink("usr/lib", root / "lib")
    return total


def make_big(path: Path, size: int, seed: int = 7) -> None:
    """One ``size``-byte file cut from a 32 MiB pool of text, binary and random data in 4 KiB pieces at
    random offsets: compressible about 2x like the tree, yet with no long-range repeats that would
    favour zstd's larger window over gzip's 32 KiB."""
    rng = random.Random(seed)
    kinds = (text_blob, binary_blob, binary_blob, lambda r, n: r.randbytes(n))
    pool = b"".join(kinds[i % len(kinds)](rng, 1 << 20) for i in range(32))
    piece, mib = 4096, 1 << 20
    with open(path, "wb") as f:
        left = size
        while left:
            offsets = [rng.randrange(len(pool) - piece) for _ in range(mib // piece)]
            block = b"".join(pool[o:o + piece] for o in offsets)
            f.write(block[:left])
            left -= min(left, mib)


if __name__ == "__main__":
    # tree.py DIR [SCALE]  |  tree.py big FILE MIB
    if sys.argv[1] == "big":
        make_big(Path(sys.argv[2]), int(sys.argv[3]) << 20)
    else:
        target = Path(sys.argv[1])
        target.mkdir(parents=True, exist_ok=False)
        print(make_tree(target, float(sys.argv[2]) if len(sys.argv) > 2 else 1.0))
