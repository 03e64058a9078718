"""Progress on a terminal, silence on a pipe: a long directory scan shows a spinner and a file count."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

FILES = 3000


def make_tree(root: Path) -> Path:
    for d in range(30):
        sub = root / f"d{d:02}"
        sub.mkdir(parents=True)
        for f in range(FILES // 30):
            (sub / f"f{f:03}").write_text(f"{d}-{f}\n")
    return root


def regfp_env(tmp: Path) -> dict[str, str]:
    # A fresh cache, so the tree is scanned (not found in the dir: image cache), and a terminal type.
    return dict(os.environ, XDG_CACHE_HOME=str(tmp / "cache"), TERM="xterm-256color", COLUMNS="200")


def run_on_pty(args: list[str], env: dict[str, str], seconds: float = 120) -> tuple[int, str, str]:
    """The CLI with stderr on a pseudo-terminal (what the user sees) and stdout on a pipe."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "regctl_fp", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not data:
                break
            seen += data
        stdout = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stdout.decode(), seen.decode("utf-8", "replace")


def test_scan_shows_a_spinner_and_count_on_a_terminal(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    code, stdout, terminal = run_on_pty(["copy", f"dir:{tree}", f"oci:{tmp_path / 'out'}:t"], regfp_env(tmp_path))
    assert code == 0, terminal
    assert stdout.startswith(f"oci:{tmp_path / 'out'}:t sha256:")  # the result still goes to stdout
    assert f"scanning {tree}" in terminal
    assert f"checking {tree} for changes" in terminal  # the cache's own pass over the tree
    assert f"{FILES:,} files" in terminal  # the final count stays shown when the scan ends
    assert any(frame in terminal for frame in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"), terminal  # rich's "dots" spinner


def test_scan_prints_nothing_on_a_pipe(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    proc = subprocess.run([sys.executable, "-m", "regctl_fp", "copy", f"dir:{tree}", f"oci:{tmp_path / 'out'}:t"],
                          capture_output=True, text=True, env=regfp_env(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "files" not in proc.stdout and "scanning" not in proc.stdout
