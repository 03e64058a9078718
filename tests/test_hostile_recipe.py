"""Hostile recipes, commits and charts: whiteout names, bad destinations and env names, deep nesting,
alias bombs, and configs too large to read back.

Each case runs the real CLI in a subprocess under a timeout and an address-space cap, and must end in
exit 2 with a message that says where (file:line for recipes), no traceback, and nothing written.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import resource
import subprocess
import sys
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from project import make_project

from regctl_fp.oci.config import ImageConfig
from regctl_fp.oci.image import Image
from regctl_fp.stores.base import write_image
from regctl_fp.stores.layout import LayoutStore

AS_CAP = 2 << 30  # bytes of address space: a hostile input must fail, not take the machine with it
RSS_LIMIT = 256 << 20  # bytes: what a refused input may cost (an interpreter with regfp loaded is ~60 MiB)
NOW = "2026-01-01T00:00:00Z"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    max_rss: int  # bytes


def run_capped(*args: str, cwd: Path | None = None, timeout: float = 120) -> Run:
    """The CLI in a subprocess with its address space capped; its peak RSS measured by wait4."""
    out = io.BytesIO()
    err = io.BytesIO()

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_CAP, AS_CAP))

    proc = subprocess.Popen([sys.executable, "-m", "regctl_fp", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=cap)
    readers = [threading.Thread(target=lambda s=s, b=b: b.write(s.read()))
               for s, b in ((proc.stdout, out), (proc.stderr, err))]
    for t in readers:
        t.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: Popen must not wait again
    for t in readers:
        t.join()
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    return Run(proc.returncode, out.getvalue().decode("utf-8", "replace"), err.getvalue().decode("utf-8", "replace"),
               usage.ru_maxrss * 1024)


def assert_refused(run: Run, where: str, words: str, out: Path) -> None:
    """Exit 2, the place and the reason in the message, no traceback, nothing in the output layout."""
    assert run.code == 2, f"exit {run.code}\n{run.stdout}\n{run.stderr}"
    assert where in run.stderr, run.stderr
    assert words in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
    assert not out.exists(), sorted(str(p) for p in out.rglob("*"))
    assert run.max_rss < RSS_LIMIT, f"peak RSS {run.max_rss >> 20} MiB"


def project(tmp: Path) -> Path:
    """The test project (a Git repository, dir: bases, a recipe writing to ``out``); the recipe's path."""
    make_project(tmp)
    return tmp / "recipe.yaml"


def edit(recipe: Path, old: str, new: str) -> None:
    text = recipe.read_text()
    assert old in text, old
    recipe.write_text(text.replace(old, new, 1))


def line_of(recipe: Path, needle: str) -> int:
    for number, line in enumerate(recipe.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {recipe}")


# With rollouts, so that without the load-time checks the environment stage would run (after the others).
ENV_BLOCK = ("rollouts: {channel: stable}\nenvironments:\n  - {location: us, environment: prod, %s}\n"
             "output: {layout: out}\n")

# (id, text replaced in the project's recipe, its replacement, text of the line the error names, words)
BAD_RECIPES = [
    # 5: whiteout names in any destination the recipe writes
    ("files-whiteout", "output: {layout: out}\n", ENV_BLOCK % "files: {/.wh.etc: recipe.yaml}", "/.wh.etc",
     "reserved for OCI whiteouts"),
    ("files-nested-whiteout", "output: {layout: out}\n", ENV_BLOCK % "files: {/etc/.wh..wh..opq: recipe.yaml}",
     "/etc/.wh..wh..opq", "reserved for OCI whiteouts"),
    ("copy-to-whiteout", "copy: [{from: ., to: /app}]", "copy: [{from: main.txt, to: /etc/.wh.os-release}]",
     "copy:", "reserved for OCI whiteouts"),
    ("run-output-to-whiteout", "  workdir: /app\n",
     "  workdir: /app\n  run: {command: 'mkdir d', outputs: [{from: d, to: /.wh.etc}]}\n", "run:",
     "reserved for OCI whiteouts"),
    ("workdir-whiteout", "workdir: /app", "workdir: /app/.wh.x", "workdir:", "reserved for OCI whiteouts"),
    # 6: every destination checked when the recipe loads
    ("files-root", "output: {layout: out}\n", ENV_BLOCK % "files: {/: recipe.yaml}", "files:",
     "root directory"),
    ("files-nul", "output: {layout: out}\n", ENV_BLOCK % 'files: {"/etc/a\\0b": recipe.yaml}', "files:",
     "NUL"),
    ("files-empty-component", "output: {layout: out}\n", ENV_BLOCK % "files: {/etc//passwd: recipe.yaml}",
     "files:", "empty components"),
    ("files-trailing-slash", "output: {layout: out}\n", ENV_BLOCK % "files: {/etc/app/: recipe.yaml}",
     "files:", "empty components"),
    ("files-dot", "output: {layout: out}\n", ENV_BLOCK % "files: {/etc/./passwd: recipe.yaml}", "files:",
     "'.' components"),
    ("files-platform-json", "output: {layout: out}\n",
     ENV_BLOCK % "files: {/etc/regfp/platform.json: recipe.yaml}", "files:", "collides with /etc/regfp/platform.json"),
    ("files-parent-of-generated", "output: {layout: out}\n", ENV_BLOCK % "files: {/etc/regfp: recipe.yaml}",
     "files:", "collides with /etc/regfp/platform.json"),
    ("copy-to-empty-component", "copy: [{from: ., to: /app}]", "copy: [{from: ., to: /srv//app}]", "copy:",
     "empty components"),
    ("copy-to-dot", "copy: [{from: ., to: /app}]", "copy: [{from: ., to: /srv/./app}]", "copy:",
     "'.' components"),
    # 7: environment variable names and values
    ("env-name-with-equals", 'env: {PORT: "8080", GREETING: hi}', 'env: {"PATH=/evil:/usr/bin": x}', "env:",
     "not an environment variable name"),
    ("env-name-empty", 'env: {PORT: "8080", GREETING: hi}', 'env: {"": x}', "env:",
     "not an environment variable name"),
    ("env-name-space", 'env: {PORT: "8080", GREETING: hi}', 'env: {"MY VAR": x}', "env:",
     "not an environment variable name"),
    ("env-name-newline", 'env: {PORT: "8080", GREETING: hi}', 'env: {"A\\nB": x}', "env:",
     "not an environment variable name"),
    ("env-name-digit", 'env: {PORT: "8080", GREETING: hi}', 'env: {1X: x}', "env:",
     "not an environment variable name"),
    ("env-value-nul", 'env: {PORT: "8080", GREETING: hi}', 'env: {PORT: "80\\x0080"}', "env:", "NUL"),
    ("environment-env-name", "output: {layout: out}\n", ENV_BLOCK % 'env: {"PATH=/evil": x}', "location: us",
     "not an environment variable name"),
    ("environment-env-value-nul", "output: {layout: out}\n", ENV_BLOCK % 'env: {LOG: "a\\0b"}', "location: us",
     "NUL"),
    ("run-env-name", "  workdir: /app\n",
     "  workdir: /app\n  run: {command: 'mkdir d', env: {A=B: x}, outputs: [{from: d, to: /d}]}\n", "run:",
     "not an environment variable name"),
    ("run-env-value-nul", "  workdir: /app\n",
     "  workdir: /app\n  run: {command: 'mkdir d', env: {A: \"x\\0\"}, outputs: [{from: d, to: /d}]}\n", "run:",
     "NUL"),
]


@pytest.mark.parametrize(("old", "new", "line_text", "words"), [b[1:] for b in BAD_RECIPES],
                         ids=[b[0] for b in BAD_RECIPES])
def test_bad_destinations_and_env_names_are_refused_at_load(tmp_path: Path, old: str, new: str, line_text: str,
                                                            words: str) -> None:
    recipe = project(tmp_path)
    edit(recipe, old, new)
    line = line_of(recipe, line_text)
    run = run_capped("build", str(recipe), "--now", NOW, timeout=300)
    assert_refused(run, f"{recipe}:{line}:", words, tmp_path / "out")


def test_a_committed_whiteout_name_is_refused_naming_the_commit_path(tmp_path: Path) -> None:
    repo = make_project(tmp_path)
    repo.write("app/d/.wh.secret", "deletes /app/d/secret of the base when unpacked\n")
    sha = repo.commit("a whiteout in the tree")
    run = run_capped("build", str(tmp_path / "recipe.yaml"), "--now", NOW)
    assert_refused(run, f"{sha[:12]} in app: d/.wh.secret", "reserved for OCI whiteouts", tmp_path / "out")


def test_a_work_item_named_like_a_whiteout_never_reaches_a_layer(tmp_path: Path) -> None:
    """The layer writer's own check: whatever the source, a '.wh.' name is refused (here a work item,
    found when the work stage runs; earlier stages of the run may be written, but no work image)."""
    recipe = project(tmp_path)
    (tmp_path / "items").mkdir()
    (tmp_path / "items/.wh.job.txt").write_text("1\n")
    (tmp_path / "items/job.txt").write_text("2\n")
    edit(recipe, "output: {layout: out}\n", "work: [{name: jobs, root: items, items: ['*'], chunks: 1}]\n"
                                            "output: {layout: out}\n")
    run = run_capped("build", str(recipe), "--now", NOW)
    assert run.code == 2, run.stderr
    assert ".wh.job.txt" in run.stderr and "reserved for OCI whiteouts" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    index = json.loads((tmp_path / "out/index.json").read_text())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert not [n for n in names if n.startswith("work/")], names


# ---- 9: nesting depth -----------------------------------------------------------------------------

DEEP = {
    "flow-1000": "build: " + "[" * 1000 + "]" * 1000 + "\n",
    "flow-60000": "build: " + "[" * 60000 + "]" * 60000 + "\n",
    "mappings-60000": "build: " + "{a: " * 60000 + "1" + "}" * 60000 + "\n",
    "block-200": "build:\n" + "".join("  " * i + "-\n" for i in range(1, 200)),
    # Each anchor is shallow; the aliases stack them 30 levels at a time.
    "alias-chain": "".join(f"x{i}: &x{i} " + "[" * 30 + (f"*x{i - 1}" if i else "") + "]" * 30 + "\n"
                           for i in range(40)),
    "alias-cycle": "build: &a [*a]\n",
}


@pytest.mark.parametrize("body", list(DEEP.values()), ids=list(DEEP))
def test_deeply_nested_recipes_are_refused_with_a_line(tmp_path: Path, body: str) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("regfp: 1\nname: deep\n" + body)
    run = run_capped("plan", str(recipe))
    assert_refused(run, f"{recipe}:", "", tmp_path / "out")
    assert any(words in run.stderr for words in ("nested more than", "refers to a node that contains it"))
    assert f"{recipe}:1:" not in run.stderr  # the line where it happens, not the document's start


def chart_archive(directory: Path, chart_yaml: str) -> Path:
    """A chart archive laid out as ``helm package`` does: ``<name>/Chart.yaml`` first."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in {"deep/Chart.yaml": chart_yaml.encode(), "deep/values.yaml": b"{}\n"}.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "deep-0.1.0.tgz"
    out.write_bytes(gzip.compress(buf.getvalue(), mtime=1_700_000_000))
    return out


CHART_HEAD = "apiVersion: v2\nname: deep\nversion: 0.1.0\n"
LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10) if i else ', '.join(['lol'] * 10)}]\n"
                 for i in range(9))
HOSTILE_CHARTS = {
    "nested-1000": (CHART_HEAD + "annotations: " + "[" * 1000 + "]" * 1000 + "\n", "nested more than"),
    "nested-60000": (CHART_HEAD + "annotations: " + "[" * 60000 + "]" * 60000 + "\n", "nested more than"),
    # import-values is kept as any JSON: expanded, the billion laughs would be a 30 GB config.
    "billion-laughs": (CHART_HEAD + LAUGHS + "dependencies: [{name: d, repository: r, import-values: *l8}]\n",
                       "too large once its aliases are expanded"),
}


@pytest.mark.parametrize(("chart_yaml", "words"), list(HOSTILE_CHARTS.values()), ids=list(HOSTILE_CHARTS))
def test_hostile_chart_yaml_is_refused_with_a_line(tmp_path: Path, chart_yaml: str, words: str) -> None:
    chart = chart_archive(tmp_path / "pkg", chart_yaml)
    run = run_capped("data", "push", str(chart), "--to", f"oci:{tmp_path}/out:charts/deep:0.1.0")
    assert_refused(run, f"{chart}: Chart.yaml:", words, tmp_path / "out")
    assert re.search(r"Chart\.yaml:[1-9][0-9]*: ", run.stderr), run.stderr


# ---- 10: alias amplification, and nothing written that regfp could not read back ----------------

def test_an_aliased_scalar_cannot_blow_up_the_config(tmp_path: Path) -> None:
    """The issue's case: a 705 KB recipe whose 400 KB anchored scalar is reused as 26 labels."""
    recipe = project(tmp_path)
    labels = ["    l00: &big " + "x" * 400_000] + [f"    l{i:02d}: *big" for i in range(1, 26)]
    labels.append("    padding: " + "p" * 300_000)
    edit(recipe, "  ports: [\"8080\"]\n", "  ports: [\"8080\"]\n  labels:\n" + "\n".join(labels) + "\n")
    assert 700_000 < recipe.stat().st_size < 720_000
    run = run_capped("build", str(recipe), "--now", NOW)
    assert_refused(run, f"{recipe}:", "too large once its aliases are expanded", tmp_path / "out")
    line = int(run.stderr.split(f"{recipe}:")[1].split(":")[0])
    assert recipe.read_text().splitlines()[line - 1].lstrip().startswith("l"), line  # one of the labels


def test_a_config_too_large_to_read_back_is_never_written(tmp_path: Path) -> None:
    """A base with a 6 MiB config plus 3 MiB of recipe labels would make a 9 MiB config, over the
    8 MiB regfp reads configs with: refused before the image is stored or named."""
    recipe = project(tmp_path)
    base = LayoutStore.open_or_create(tmp_path / "base")
    config = ImageConfig.new(os="linux", architecture="amd64").with_labels({"big": "b" * (6 << 20)})
    desc = write_image(base, Image(config=config, layers=()))
    base.set_names({"os/big:1": desc})
    labels = ["    l0: &chunk " + "x" * 750_000] + [f"    l{i}: *chunk" for i in range(1, 4)]
    edit(recipe, "  ports: [\"8080\"]\n", "  ports: [\"8080\"]\n  labels:\n" + "\n".join(labels) + "\n")
    edit(recipe, "base: stable", f"base: \"oci:{tmp_path}/base:os/big:1\"")
    run = run_capped("build", str(recipe), "--now", NOW)
    assert run.code == 2, f"exit {run.code}\n{run.stderr}"
    assert "image config" in run.stderr and f"over the {8 << 20}-byte limit" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    index = tmp_path / "out/index.json"
    assert not index.exists() or json.loads(index.read_text())["manifests"] == []
    assert run.max_rss < 512 << 20  # the big config is held a few times over, never expanded further
