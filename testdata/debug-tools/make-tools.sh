#!/usr/bin/env bash
# Assemble a debug tools image from this machine's busybox-static and dropbear (Debian packages
# busybox-static and dropbear-bin) and store it as NAME (default tools/debug:1) in LAYOUT (default out/).
# .ci/setup runs it for the demo recipe, whose `debug.tools` points at out:tools/debug:1; then
# `regfp debug-image recipes/app.yaml --ssh-key ~/.ssh/id_ed25519.pub`. Takes about a second, 3 MB.
set -euo pipefail
layout="${1:-out}"
name="${2:-tools/debug:1}"
here="$(cd "$(dirname "$0")" && pwd)"
# regfp from PATH, else the project's own venv (REGFP overrides both).
regfp="${REGFP:-$(command -v regfp || echo "$here/../../.venv/bin/regfp")}"
for need in busybox /usr/sbin/dropbear ldd; do
  command -v "$need" >/dev/null || { echo "make-tools.sh: $need is missing (apt-get install busybox-static dropbear-bin)" >&2; exit 1; }
done
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/usr/sbin"
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in sh ps id which cat ls sleep netstat vi top env grep kill; do ln -s busybox "$root/bin/$applet"; done
cp /usr/sbin/dropbear "$root/usr/sbin/dropbear"
for lib in $(ldd /usr/sbin/dropbear | grep -o '/[^ ]*\.so[.0-9]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp "$(readlink -f "$lib")" "$root$lib"
done
"$regfp" copy "dir:$root" "oci:$layout:$name"
