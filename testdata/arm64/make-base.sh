#!/usr/bin/env bash
# Make an arm64 busybox root filesystem in ROOTFS (it must not exist) from Debian's busybox-static:arm64,
# for multi-platform tests and the demo: bin/busybox (aarch64, static), a few applet links, and an
# /etc/os-release naming the platform. The .deb is kept in CACHE (default ~/.cache/regfp-test-tools) so
# later runs need no package registry. Run the binaries with `qemu-aarch64-static ROOTFS/bin/busybox`
# (no binfmt_misc here, so runc cannot start them). Needs `dpkg --add-architecture arm64 && apt-get
# update` once (.ci/setup does it).
set -euo pipefail
rootfs="${1:?usage: make-base.sh ROOTFS [CACHE]}"
cache="${2:-${XDG_CACHE_HOME:-$HOME/.cache}/regfp-test-tools}"  # the tests' TOOLS_CACHE
[ ! -e "$rootfs" ] || { echo "make-base.sh: $rootfs exists" >&2; exit 1; }
mkdir -p "$cache"
deb="$(ls "$cache"/busybox-static_*_arm64.deb 2>/dev/null | head -1 || true)"
if [ -z "$deb" ]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || {
    echo "make-base.sh: arm64 is not a dpkg architecture here (dpkg --add-architecture arm64 && apt-get update)" >&2
    exit 1; }
  # apt-get download writes to the working directory; the _apt user may not reach $cache, hence a tmp dir.
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -q busybox-static:arm64 >/dev/null 2>&1) || {
    echo "make-base.sh: apt-get download busybox-static:arm64 failed" >&2; exit 1; }
  mv "$tmp"/busybox-static_*_arm64.deb "$cache/"
  deb="$(ls "$cache"/busybox-static_*_arm64.deb | head -1)"
fi
unpacked="$(mktemp -d)"
dpkg-deb -x "$deb" "$unpacked"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp"
cp "$unpacked/bin/busybox" "$rootfs/bin/busybox"
rm -rf "$unpacked"
chmod 0755 "$rootfs/bin/busybox"
chmod 1777 "$rootfs/tmp"
for applet in sh env cat ls id echo true uname; do ln -s busybox "$rootfs/bin/$applet"; done
printf 'ID=busybox\nNAME="BusyBox arm64 test base"\n' > "$rootfs/etc/os-release"
