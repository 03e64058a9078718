#!/usr/bin/env bash
# Make an arm64 debug tools tree in ROOT (it must not exist) for multi-platform debug images: the arm64
# busybox of make-base.sh (bin/ only) plus Debian's dropbear-bin:arm64 and the shared libraries it loads, taken
# from their arm64 .debs (kept in CACHE, default ~/.cache/regfp-test-tools, so later runs need no package
# registry). Check it with `qemu-aarch64-static -L ROOT ROOT/usr/sbin/dropbear -V`. About 3 MB.
set -euo pipefail
root="${1:?usage: make-tools.sh ROOT [CACHE]}"
cache="${2:-${XDG_CACHE_HOME:-$HOME/.cache}/regfp-test-tools}"
here="$(cd "$(dirname "$0")" && pwd)"
[ ! -e "$root" ] || { echo "make-tools.sh: $root exists" >&2; exit 1; }
packages="dropbear-bin libc6 libcrypt1 libtomcrypt1 libtommath1 libgmp10 zlib1g"
unpacked="$(mktemp -d)"
trap 'rm -rf "$unpacked"' EXIT
bash "$here/make-base.sh" "$unpacked/base" "$cache"
mkdir -p "$root"
cp -a "$unpacked/base/bin" "$root/bin"
for pkg in $packages; do
  deb="$(ls "$cache/${pkg}"_*_arm64.deb 2>/dev/null | head -1 || true)"
  if [ -z "$deb" ]; then
    tmp="$(mktemp -d)"  # apt-get download writes to the working directory; _apt may not reach $cache
    (cd "$tmp" && apt-get download -q "$pkg:arm64" >/dev/null 2>&1) || {
      rm -rf "$tmp"; echo "make-tools.sh: apt-get download $pkg:arm64 failed" >&2; exit 1; }
    mv "$tmp/${pkg}"_*_arm64.deb "$cache/"
    rm -rf "$tmp"
    deb="$(ls "$cache/${pkg}"_*_arm64.deb | head -1)"
  fi
  dpkg-deb -x "$deb" "$unpacked"
done
mkdir -p "$root/usr/sbin"
cp "$unpacked/usr/sbin/dropbear" "$root/usr/sbin/dropbear"
for lib in ld-linux-aarch64.so.1 libc.so.6 libcrypt.so.1 libtomcrypt.so.1 libtommath.so.1 libgmp.so.10 libz.so.1; do
  found="$(find "$unpacked" -name "$lib" | head -1)"
  [ -n "$found" ] || { echo "make-tools.sh: $lib not found in the arm64 packages" >&2; exit 1; }
  dest="$root/${found#"$unpacked"/}"
  # The program interpreter is looked up at the path written in the ELF header.
  [ "$lib" != ld-linux-aarch64.so.1 ] || dest="$root/lib/ld-linux-aarch64.so.1"
  mkdir -p "$(dirname "$dest")"
  cp "$(readlink -f "$found")" "$dest"
done
for applet in ps which sleep; do ln -s busybox "$root/bin/$applet"; done
