"""podman pulls (and runs) what regfp pushed to the real registry: an independent client end to end."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need, regfp_json

pytest_plugins = ["registry_fixtures"]


def podman(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The flags ENV-NOTES verified on these machines; --network none always (no bridge, no firewall rules).
    hard = str(resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    base = [need("podman"), "--storage-driver", "vfs", "--root", str(tmp / "root"), "--runroot",
            str(tmp / "runroot"), "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc"]
    if args[0] == "run":
        args = ("run", "--rm", "--network", "none", "--ulimit", f"nofile={hard}:{hard}",
                "--ulimit", "nproc=32768:32768", *args[1:])
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=180,
                          env={"HOME": str(tmp), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """podman refuses a run root longer than 50 characters; pytest's tmp_path is longer."""
    path = Path(tempfile.mkdtemp(prefix="regfp-pm-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_podman_pulls_and_runs_what_regfp_pushed(short_dir: Path, registry, busybox_rootfs: Path) -> None:  # type: ignore[no-untyped-def]
    tmp_path = short_dir
    ref = f"{registry.host}/podman/busybox:1"
    pushed = regfp_json("copy", f"dir:{busybox_rootfs}", ref)
    pulled = podman(tmp_path, "pull", "--tls-verify=false", ref)
    assert pulled.returncode == 0, pulled.stderr
    shown = podman(tmp_path, "image", "inspect", ref)
    assert json.loads(shown.stdout)[0]["Digest"] == pushed["digest"]
    ran = podman(tmp_path, "run", ref, "/bin/env")
    assert ran.returncode == 0, ran.stderr
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in ran.stdout
