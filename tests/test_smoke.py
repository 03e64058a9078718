"""End-to-end smoke: a dir: image into a layout, read back, verified by regfp and by umoci/skopeo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import need, regfp, regfp_json


def test_dir_to_layout_round_trip(busybox_rootfs: Path, tmp_path: Path, tool_env: dict[str, str]) -> None:
    out = tmp_path / "out"
    copied = regfp_json("copy", f"dir:{busybox_rootfs}", f"oci:{out}:base/busybox:1")
    assert copied["digest"].startswith("sha256:")
    shown = regfp_json("inspect", f"oci:{out}:base/busybox:1")
    assert shown["digest"] == copied["digest"]
    assert len(shown["layers"]) == 1
    assert regfp("verify", str(out)).returncode == 0
    skopeo = subprocess.run([need("skopeo"), "inspect", f"oci:{out}:base/busybox:1"], env=tool_env,
                            capture_output=True, text=True, check=True)
    assert json.loads(skopeo.stdout)["Digest"] == copied["digest"]
    listed = subprocess.run([need("umoci"), "ls", "--layout", str(out)], capture_output=True, text=True,
                            check=True)
    assert listed.stdout.split() == ["base/busybox:1"]
