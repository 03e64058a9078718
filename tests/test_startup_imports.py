"""Start-up: a command imports only what it uses. A warm no-op ``regfp build`` and a re-push with ``regfp
copy`` run in a subprocess whose ``sys.modules`` is written out at exit; the heavy libraries they do not
need (cryptography: only when an identity is issued; rich: only on a terminal; httpx and its stack:
never, regfp's HTTP client is on the standard library; zstandard: only for zstd layers; yaml: no recipe in
a copy) must be absent."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

from conftest import ROOT, regfp
from registry_support import Registry, make_image

from regctl_fp.stores.layout import LayoutStore

pytest_plugins = ["registry_fixtures"]

# Whatever the command: never rich off a terminal, never httpx or its stack (regfp's registry transport
# is ``stores.http_client``, on http.client: httpx alone cost ~0.2 s of start-up).
NEVER = {"rich", "rich.console"}
HTTP = {"httpx", "httpcore", "h11", "anyio"}

_DUMP = """
import atexit, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
sys.argv = ["regfp", *sys.argv[2:]]
from regctl_fp.cli import main
main()
"""


def modules_of(tmp_path: Path, *args: str, cwd: Path | None = None) -> tuple[set[str], str]:
    """The modules a ``regfp`` run (stdout and stderr pipes, not a terminal) had imported at exit, and
    its stdout."""
    out = tmp_path / f"modules-{uuid.uuid4().hex[:8]}.txt"
    proc = subprocess.run([sys.executable, "-c", _DUMP, str(out), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return set(out.read_text().split()), proc.stdout


def present(modules: set[str], names: set[str]) -> list[str]:
    return sorted(m for m in modules if m in names or any(m.startswith(n + ".") for n in names))


def test_a_warm_no_op_build_imports_no_cryptography_rich_httpx_or_zstandard(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    time.sleep(2.1)  # a dir: tree changed in the last 2 s is tarred again (racily clean): let the clone age
    recipe = repo / "recipes" / "app.yaml"
    first = json.loads(regfp("build", str(recipe), "--json").stdout)
    assert any(not i["cached"] for i in first["images"])  # the cold run made the identities (cryptography)
    index = repo / "out" / "index.json"
    before = index.stat()

    for args in (("--json",), ()):  # the JSON document and the plain lines
        modules, stdout = modules_of(tmp_path, "build", str(recipe), *args)
        assert present(modules, NEVER | HTTP | {"cryptography", "zstandard"}) == []
        assert "regctl_fp.engine.converge" in modules  # it did run the engine
        if args:
            assert all(i["cached"] for i in json.loads(stdout)["images"])
        else:
            assert stdout.splitlines() and all(line.startswith("cached  ") for line in stdout.splitlines())
    # A no-op writes nothing: index.json is the very file the cold run left (not rewritten).
    after = index.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_re_push_imports_no_recipe_identity_or_httpx_machinery(registry: Registry, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    with LayoutStore.open_or_create(layout) as store:
        digest = make_image(store, "app:1").digest
    target = f"{registry.host}/startup/{uuid.uuid4().hex[:8]}:1"
    regfp("copy", f"oci:{layout}:app:1", target)

    modules, stdout = modules_of(tmp_path, "copy", f"oci:{layout}:app:1", target)
    assert stdout.split() == [target, str(digest)]
    assert present(modules, NEVER | HTTP | {"cryptography", "yaml", "zstandard"}) == []
    # Nor http.client and the email package it needs, nor ssl for a plain-HTTP registry (~30 ms together).
    assert present(modules, {"http", "email", "ssl"}) == []
    assert "regctl_fp.stores.transport" in modules  # it did talk to the registry


def test_inspect_off_a_terminal_writes_plain_lines_without_rich(tmp_path: Path) -> None:
    """``inspect`` into a pipe: the JSON document, or aligned plain lines (labels padded, a layer table),
    and rich, which only styles a terminal's output, is never imported."""
    layout = tmp_path / "layout"
    with LayoutStore.open_or_create(layout) as store:
        digest = make_image(store, "app:1").digest
    for args in (("--json",), ()):
        modules, stdout = modules_of(tmp_path, "inspect", f"oci:{layout}:app:1", *args)
        assert present(modules, NEVER | HTTP | {"cryptography", "yaml", "zstandard"}) == []
        if args:
            assert json.loads(stdout)["digest"] == str(digest)
        else:
            lines = stdout.splitlines()
            assert f"Digest        {digest}" in lines
            assert lines[0].startswith("Reference     oci:") and not any(line != line.rstrip() for line in lines)


def test_the_process_ends_without_tearing_the_interpreter_down_and_loses_no_output(tmp_path: Path) -> None:
    """``regfp`` (``cli.run``) flushes its streams and ends the process: no interpreter teardown (~40 ms
    of garbage collection and exit hooks). Its output and exit code are whole all the same."""
    script = ("import atexit, sys\n"
              "atexit.register(lambda: sys.stderr.write('TEARDOWN\\n'))\n"
              "sys.argv = ['regfp', *sys.argv[1:]]\n"
              "from regctl_fp.cli import run\n"
              "run()\n")
    ok = subprocess.run([sys.executable, "-c", script, "schema"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "TEARDOWN" not in ok.stderr
    assert json.loads(ok.stdout)["title"]  # the whole document arrived, though nothing tore down
    bad = subprocess.run([sys.executable, "-c", script, "copy", "oci:/nonexistent:x", f"oci:{tmp_path}/o:x"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "TEARDOWN" not in bad.stderr
