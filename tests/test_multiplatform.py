"""Multi-platform recipes (issue 18): one recipe, linux/amd64 and linux/arm64, the build an image index."""

from __future__ import annotations

from pathlib import Path

from conftest import elf_machine, run_arm64


def test_arm64_base_is_aarch64_busybox_that_runs_under_qemu(arm64_rootfs: Path) -> None:
    assert elf_machine(arm64_rootfs / "bin/busybox") == "aarch64"
    assert "BusyBox arm64 test base" in run_arm64(arm64_rootfs, "/bin/busybox", "cat", "/etc/os-release")
    assert run_arm64(arm64_rootfs, "/bin/busybox", "uname", "-m").strip() == "aarch64"
