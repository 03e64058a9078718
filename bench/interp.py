"""The interpreter the benchmarks run regfp with: a virtual environment holding regfp's pinned
dependencies (``bench/work/venv``, made once), with this checkout's ``regctl_fp`` first on
``PYTHONPATH`` and byte-compiled, as a user's ``pip install .`` runs it.

Why not the interpreter running the benchmark: its site-packages may hold ``.pth`` files that run code
at every start (an editable install's import hook, a CA bundle hook), ~40 ms that no user of a regular
install pays, which would hide what start-up work is regfp's own. When the environment cannot be made
(no package index), the running interpreter is used and ``note`` says so.
"""

from __future__ import annotations

import compileall
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV = BENCH / "work" / "venv"


def _dependencies() -> list[str]:
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    return re.findall(r'"([^"]+)"', block.group(1)) if block else []


def python() -> tuple[str, str]:
    """(the interpreter for regfp commands, a note on what it is). Compiles regctl_fp first."""
    compileall.compile_dir(str(REPO / "regctl_fp"), quiet=1)
    exe = VENV / "bin" / "python"
    stamp = VENV / "regfp-deps.txt"
    deps = _dependencies()
    want = "\n".join(deps)
    if not (exe.exists() and stamp.exists() and stamp.read_text() == want):
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
            subprocess.run([str(exe), "-m", "pip", "install", "-q", "--disable-pip-version-check", *deps],
                           check=True, capture_output=True, timeout=600)
            stamp.write_text(want)
        except (OSError, subprocess.SubprocessError) as e:
            return sys.executable, f"no benchmark venv ({e}); regfp runs on {sys.executable} with its site-packages"
    return str(exe), f"regfp runs on {exe} (pinned dependencies only) with PYTHONPATH={REPO}, byte-compiled"


def env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with this checkout's regctl_fp first."""
    out = dict(os.environ if base is None else base)
    out["PYTHONPATH"] = str(REPO)
    return out


def write_json(path: Path | None, result: object) -> None:
    """A section's result as JSON at ``path`` (``--json``), if one was given."""
    if path is not None:
        import json

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
