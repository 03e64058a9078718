#!/usr/bin/env bash
# Assemble a debug tools image from this machine's busybox-static and dropbear (Debian packages
# busybox-static and dropbear-bin) and store it as tools/debug:1 in the given layout (default: out/).
# The demo recipe's `debug.tools` points at it; `regfp debug-image recipes/app.yaml --ssh-key ~/.ssh/id_ed25519.pub`.
set -euo pipefail
layout="${1:-out}"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/usr/sbin"
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in sh ps id which cat ls sleep netstat vi top env grep; do ln -s busybox "$root/bin/$applet"; done
cp /usr/sbin/dropbear "$root/usr/sbin/dropbear"
for lib in $(ldd /usr/sbin/dropbear | grep -o '/[^ ]*\.so[.0-9]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp "$(readlink -f "$lib")" "$root$lib"
done
regfp copy "dir:$root" "oci:$layout:tools/debug:1"
