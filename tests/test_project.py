"""The project's promises about itself: README's commands are what CI runs, and they work with the Python
a fresh Debian 12 has (PEP 668: no pip outside a venv) as well as with any other python3 first on PATH."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

DEBIAN_PYTHON = Path("/usr/bin/python3")


def readme_command(label: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(label, 1)[1]
    return re.search(r"```sh\n(.+?)\n```", section, re.S).group(1).strip()  # type: ignore[union-attr]


def test_ci_runs_the_readme_test_command() -> None:
    command = readme_command("(b) run the test suite")
    assert command == ".venv/bin/python -m pytest -q"
    lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert command in lines
    # CI sets up with Debian's own python3 first on PATH: the tests run in the venv a fresh Debian gets.
    setup = 'env PATH="/usr/bin:/bin:$PATH" bash .ci/setup'
    assert setup in lines and lines.index(setup) < lines.index(command)


def test_readme_setup_command_uses_the_project_venv() -> None:
    command = readme_command("(a) set up and run the main job")
    steps = [step.strip() for step in command.split("&&")]
    # CI runs command (a) as README gives it (output aside), after the set-up, on Debian's python3.
    run = (ROOT / ".ci/run").read_text()
    assert all(f"{step} >/dev/null" in run for step in steps[1:]), steps
    assert steps[0] == "bash .ci/setup"
    assert all(step.startswith(".venv/bin/regfp ") for step in steps[1:]), steps
    setup = (ROOT / ".ci/setup").read_text()
    assert "bash .ci/make-venv test" in setup and "python3-venv" in setup
    commands = [line for line in setup.splitlines() if not line.lstrip().startswith("#")]
    assert not any(re.search(r"\bpip3? install", line) for line in commands)  # only into the venv (make-venv)


def clean_env(**extra: str) -> dict[str, str]:
    """The machine's environment without this test run's Python settings (PYTHONPATH points the suite at a
    worktree; a venv's variables would leak in)."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONNOUSERSITE"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYENV")}
    env.update(extra)
    return env


@pytest.mark.slow
def test_setup_makes_a_venv_with_debians_own_python(tmp_path: Path) -> None:
    """README's set-up on the Debian-python path, in a scratch clone (as CI's clean clone): the venv step of
    .ci/setup with PATH=/usr/bin:/bin, so Debian's python3 makes the venv; then the venv's regfp runs. The
    package's own dependencies only (no test extras), to keep it to ~20 s with pip's cache."""
    if not DEBIAN_PYTHON.exists():
        if os.environ.get("REGFP_REQUIRE_TOOLS"):
            pytest.fail("/usr/bin/python3 (Debian's python3) is required (see .ci/setup)")
        pytest.skip("no /usr/bin/python3 here")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout of the project")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True, timeout=120)
    assert not (clone / ".venv").exists()
    start = time.monotonic()
    made = subprocess.run(["bash", ".ci/make-venv", ""], cwd=clone, capture_output=True, text=True, timeout=900,
                          env=clean_env(PATH="/usr/bin:/bin"))
    took = time.monotonic() - start
    assert made.returncode == 0, made.stdout + made.stderr
    base = subprocess.run([str(clone / ".venv/bin/python"), "-c", "import sys; print(sys.base_prefix)"],
                          capture_output=True, text=True, check=True, env=clean_env()).stdout.strip()
    assert base == "/usr", base  # the venv is Debian's python3's, not the one running the tests
    version = subprocess.run([str(clone / ".venv/bin/regfp"), "--version"], capture_output=True, text=True,
                             env=clean_env(PATH="/usr/bin:/bin"), cwd=tmp_path, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("regfp "), version.stderr
    installed = subprocess.run([str(clone / ".venv/bin/python"), "-c", "import regctl_fp; print(regctl_fp.__file__)"],
                               capture_output=True, text=True, check=True, env=clean_env(), cwd=tmp_path).stdout
    assert installed.startswith(str(clone)), installed  # editable: the clone's code, not another copy
    print(f"venv with Debian's python3 made in {took:.1f} s", file=sys.stderr)
