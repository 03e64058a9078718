#!/usr/bin/env bash
# The arm64 bases of the two-platform demo (recipes/multiarch/multiarch.yaml): for each demo OS N in 1
# and 3, an arm64 image of Debian's busybox-static:arm64 (make-base.sh) with testdata/bases/os-N's files on top,
# stored as bases/os-N:arm64 in LAYOUT (default out/), its config declaring linux/arm64. The amd64
# side of each channel is the plain tree testdata/bases/os-N. .ci/setup runs this; about 2 s, 2 MB.
set -euo pipefail
layout="${1:-out}"
cache="${2:-}"  # make-base.sh's .deb cache (default: the tests' tools cache)
here="$(cd "$(dirname "$0")" && pwd)"
# regfp from PATH, else the project's own venv (REGFP overrides both).
regfp="${REGFP:-$(command -v regfp || echo "$here/../../.venv/bin/regfp")}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for n in 1 3; do
  root="$work/os-$n"
  bash "$here/make-base.sh" "$root" "$cache"
  cp -R "$here/../bases/os-$n/." "$root/"   # the demo OS's files (os-release, CA bundle) over busybox's
  "$regfp" copy --platform linux/arm64 "dir:$root" "oci:$layout:bases/os-$n:arm64"
done
