"""Hostile inputs and a hostile environment for regfp's I/O: files that are not regular files, registry
bodies without end, redirect loops and trickling blobs, a full disk, a layout whose blob directory is
a link to somewhere else, and termination by SIGTERM. Each case runs the real CLI in a subprocess under
a timeout and a cap on its address space, and must end with a clear message and the right exit code:
no traceback, no hang, no unbounded memory."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import regfp
from pki import make_ca
from project import make_project

MEMORY_CAP = 600 << 20  # bytes of address space; regfp itself needs about 50 MB
NOW = "2026-06-10T12:00:00Z"


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_capped(*args: str, timeout: float = 30, env: dict[str, str] | None = None,
               cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI with its address space capped; a hang fails the test through ``timeout``."""
    return subprocess.run([sys.executable, "-m", "regctl_fp", *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_cap_memory, env=env, cwd=cwd, input=stdin)


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """Exit ``code``, an ``error:`` line that says each of ``needles``, and no traceback or internal error."""
    shown = f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert proc.returncode == code, shown
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, shown
    for needle in needles:
        assert needle in proc.stderr, shown


# -- 8. files that are not regular files --------------------------------------------------------------------
ENVIRONMENT = """\
rollouts: {channel: stable, keep: 3}
environments:
  - location: us-east
    environment: prod
    delta: 0
    files: {/etc/hello/config.yaml: files/prod.yaml}
    caCerts: [pki/corp-root.pem]
    identity: {ca: pki/id-ca.pem, key: pki/id-ca.key, ttl: 30d, trustDomain: test.example}
"""


def env_project(tmp: Path) -> Path:
    make_project(tmp)
    make_ca(tmp / "pki", "id-ca")
    make_ca(tmp / "pki", "corp-root")
    (tmp / "files").mkdir()
    (tmp / "files/prod.yaml").write_text("greeting: hello prod\n")
    recipe = tmp / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("output: {layout: out}\n", ENVIRONMENT + "output: {layout: out}\n"))
    return recipe


def _make_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _make_dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


@pytest.mark.parametrize("command", ["plan", "build"])
@pytest.mark.parametrize("source", ["files/prod.yaml", "pki/corp-root.pem", "pki/id-ca.pem", "pki/id-ca.key"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_environment_input_that_is_not_a_regular_file(tmp_path: Path, command: str, source: str,
                                                      kind: str) -> None:
    recipe = env_project(tmp_path)
    (_make_fifo if kind == "fifo" else _make_dev_zero)(tmp_path / source)
    args = [command, str(recipe)] + (["--now", NOW] if command == "build" else [])
    proc = run_capped(*args)
    if command == "plan" and source.endswith(".key"):
        # Planning never reads the CA key (no secrets are needed to plan).
        assert proc.returncode == 0, proc.stderr
        return
    if source == "pki/id-ca.pem":
        # The CA is fingerprinted while planning, by a function that reports only "unreadable".
        assert_clean_failure(proc, 2, f"{recipe}:", "not a readable PEM certificate", "identity.ca")
    else:
        assert_clean_failure(proc, 2, f"{recipe}:", "a FIFO" if kind == "fifo" else "a device",
                             "only regular files")
    assert not (tmp_path / "out" / "index.json").exists() or "us-east.prod" not in (
        tmp_path / "out" / "index.json").read_text()


def test_recipe_that_is_a_fifo_or_a_device(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "recipe.yaml")
    assert_clean_failure(run_capped("plan", str(tmp_path / "recipe.yaml")), 2, "a FIFO")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    assert_clean_failure(run_capped("plan", str(tmp_path / "zero.yaml")), 2, "a device")


def _layout_with_image(tmp: Path) -> tuple[Path, str, str]:
    """A built layout, the name of one image in it and that image's manifest digest (hex)."""
    make_project(tmp)
    regfp("build", str(tmp / "recipe.yaml"), "--now", NOW)
    layout = tmp / "out"
    entry = min(json.loads((layout / "index.json").read_text())["manifests"],
                key=lambda m: m["annotations"]["org.opencontainers.image.ref.name"])
    return layout, entry["annotations"]["org.opencontainers.image.ref.name"], entry["digest"].split(":")[1]


def test_other_user_files_that_are_fifos(tmp_path: Path) -> None:
    """--ssh-key of debug-image and --ca of verify are read whole too."""
    layout, name, _ = _layout_with_image(tmp_path)
    fifo = tmp_path / "key.pub"
    os.mkfifo(fifo)
    assert_clean_failure(run_capped("debug-image", str(tmp_path / "recipe.yaml"), "--ssh-key", str(fifo)), 2,
                         "a FIFO")
    assert_clean_failure(run_capped("verify", f"oci:{layout}:{name}", "--ca", str(fifo)), 2, "a FIFO")


@pytest.mark.parametrize("command", ["verify", "verify-layout", "copy", "inspect"])
def test_layout_blob_that_is_a_fifo(tmp_path: Path, command: str) -> None:
    layout, name, manifest = _layout_with_image(tmp_path)
    blobs = layout / "blobs/sha256"
    # inspect reads only the manifest and config; the others read every layer too.
    layer = json.loads((blobs / manifest).read_text())["layers"][-1]["digest"].split(":")[1]
    blob = blobs / (manifest if command == "inspect" else layer)
    _make_fifo(blob)
    args = {"verify": ["verify", f"oci:{layout}:{name}"], "verify-layout": ["verify", str(layout)],
            "copy": ["copy", f"oci:{layout}:{name}", f"oci:{tmp_path / 'copy'}:x"],
            "inspect": ["inspect", f"oci:{layout}:{name}"]}[command]
    proc = run_capped(*args)
    assert_clean_failure(proc, 1, "a FIFO", blob.name[:12])


# -- 14. a layout whose blob directory is a link out of it ------------------------------------------------
def _outside_blobs(tmp: Path, layout: Path) -> tuple[Path, list[Path]]:
    """A directory outside the layout with digest-named files that no name of the layout reaches."""
    import hashlib

    outside = tmp / "elsewhere"
    outside.mkdir()
    files = []
    for i in range(3):
        data = f"someone else's file {i}\n".encode()
        path = outside / hashlib.sha256(data).hexdigest()
        path.write_bytes(data)
        files.append(path)
    return outside, files


@pytest.mark.parametrize("linked", ["blobs/sha256", "blobs", ".regfp/tmp"])
def test_gc_and_verify_stay_inside_the_layout(tmp_path: Path, linked: str) -> None:
    layout, _, _ = _layout_with_image(tmp_path)
    outside, files = _outside_blobs(tmp_path, layout)
    if linked == ".regfp/tmp":
        (layout / ".regfp/tmp").rmdir()
        (layout / ".regfp/tmp").symlink_to(outside)
    else:
        # The layout's blobs move out there too, so the layout still reads (its names all resolve).
        sha = layout / "blobs/sha256"
        for blob in sha.iterdir():
            blob.rename(outside / blob.name)
        sha.rmdir()
        if linked == "blobs":
            (layout / "blobs").rmdir()
            (outside / "sha256").mkdir()
            for f in [*outside.iterdir()]:
                if f.is_file():
                    f.rename(outside / "sha256" / f.name)
            files = [outside / "sha256" / f.name for f in files]
            (layout / "blobs").symlink_to(outside)
        else:
            sha.symlink_to(outside)
    proc = run_capped("gc", str(layout))
    assert_clean_failure(proc, 1, "symbolic link", linked)
    assert all(f.exists() for f in files)
    if linked != ".regfp/tmp":
        assert_clean_failure(run_capped("verify", str(layout)), 1, "symbolic link", linked)


def test_gc_removes_a_link_in_blobs_not_its_target(tmp_path: Path) -> None:
    layout, _, _ = _layout_with_image(tmp_path)
    _, files = _outside_blobs(tmp_path, layout)
    link = layout / "blobs/sha256" / files[0].name
    link.symlink_to(files[0])
    verified = run_capped("verify", str(layout), "--json")
    assert verified.returncode == 1 and "symbolic link" in verified.stdout, verified.stdout
    report = json.loads(run_capped("gc", str(layout), "--json").stdout)
    assert [r["digest"] for r in report["removed"]] == [f"sha256:{files[0].name}"]
    assert not link.exists() and not link.is_symlink()
    assert all(f.exists() for f in files)


# -- 15. gc --dry-run says what gc removes -----------------------------------------------------------------
def test_gc_dry_run_reports_exactly_what_gc_removes(tmp_path: Path) -> None:
    from test_debug import debug_project, keypair

    debug_project(tmp_path)
    _, pub = keypair(tmp_path, "dev")
    regfp("debug-image", str(tmp_path / "recipe.yaml"), "--ssh-key", str(pub), "--now", "2026-06-01T00:00:00Z",
          "--ttl", "2h")
    layout = tmp_path / "out"
    (layout / ".regfp/tmp/blob.left-by-a-crash").write_bytes(b"x" * 100)
    later = ["--expired", "--now", "2026-06-01T03:00:00Z", "--json"]
    dry = json.loads(regfp("gc", str(layout), "--dry-run", *later).stdout)
    before = {p.name for p in (layout / "blobs/sha256").iterdir()}
    assert dry["expiredNames"] and dry["removed"] and dry["tempFiles"] == 1
    real = json.loads(regfp("gc", str(layout), *later).stdout)
    after = {p.name for p in (layout / "blobs/sha256").iterdir()}
    assert real["expiredNames"] == dry["expiredNames"]
    assert {r["digest"] for r in dry["removed"]} == {r["digest"] for r in real["removed"]}
    assert {f"sha256:{h}" for h in before - after} == {r["digest"] for r in real["removed"]}
    assert (dry["freed"], dry["kept"], dry["tempFiles"]) == (real["freed"], real["kept"], real["tempFiles"])
