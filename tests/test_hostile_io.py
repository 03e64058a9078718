"""Hostile inputs and a hostile environment for regfp's I/O: files that are not regular files, registry
bodies without end, redirect loops and trickling blobs, a full disk, a layout whose blob directory is
a link to somewhere else, and termination by SIGTERM. Each case runs the real CLI in a subprocess under
a timeout and a cap on its address space, and must end with a clear message and the right exit code:
no traceback, no hang, no unbounded memory."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from conftest import regfp
from pki import make_ca
from project import make_project
from registry_support import Registry, serve, stop_serving

pytest_plugins = ["registry_fixtures"]

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


@pytest.mark.parametrize(("command", "source"), [
    (command, source) for command in ("plan", "build")
    for source in ("files/prod.yaml", "pki/corp-root.pem", "pki/id-ca.pem", "pki/id-ca.key")
    if (command, source) != ("plan", "pki/id-ca.key")  # planning never reads the CA key
])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_environment_input_that_is_not_a_regular_file(tmp_path: Path, command: str, source: str,
                                                      kind: str) -> None:
    recipe = env_project(tmp_path)
    (_make_fifo if kind == "fifo" else _make_dev_zero)(tmp_path / source)
    args = [command, str(recipe)] + (["--now", NOW] if command == "build" else [])
    proc = run_capped(*args)
    if source == "pki/id-ca.pem":
        # The CA is read (as a regular file) to be fingerprinted while planning.
        assert_clean_failure(proc, 2, f"{recipe}:", "a FIFO" if kind == "fifo" else "a device", "identity.ca")
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
    """--ssh-key of debug-image, --ca of verify and --ca-file for registries are read whole too."""
    layout, name, _ = _layout_with_image(tmp_path)
    fifo = tmp_path / "key.pub"
    os.mkfifo(fifo)
    assert_clean_failure(run_capped("debug-image", str(tmp_path / "recipe.yaml"), "--ssh-key", str(fifo)), 2,
                         "a FIFO")
    assert_clean_failure(run_capped("verify", f"oci:{layout}:{name}", "--ca", str(fifo)), 2, "a FIFO")
    assert_clean_failure(run_capped("inspect", "127.0.0.1:1/repo:1", "--ca-file", str(fifo)), 2, "a FIFO")


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


# -- 11. and 12. a hostile registry ------------------------------------------------------------------------
Reply = Callable[[BaseHTTPRequestHandler], None]


class HostileRegistry:
    """A stdlib HTTP server on 127.0.0.1 that answers each path (longest matching prefix) its own way."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply] = {}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                path = self.path.split("?")[0]
                match = max((p for p in routes if path.startswith(p)), key=len, default=None)
                try:
                    if match is None:
                        send(self, 404, b'{"errors": [{"code": "NAME_UNKNOWN", "message": "no"}]}')
                    else:
                        routes[match](self)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_HEAD = do_POST = do_PUT = _any

        self._server = serve(Handler)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        stop_serving(self._server)


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    server = HostileRegistry()
    yield server
    server.stop()


def send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    for k, v in {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}.items():
        h.send_header(k, v)
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def endless(status: int, size: int = 100 << 20, prefix: bytes = b'{"token": "',
            headers: dict[str, str] | None = None) -> Reply:
    """An answer of ``size`` bytes (100 MB), sent in 1 MiB writes."""
    def reply(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for k, v in {"Content-Type": "application/json", "Content-Length": str(size), **(headers or {})}.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(prefix)
        block = b"a" * (1 << 20)
        left = size - len(prefix)
        while left > 0:
            h.wfile.write(block[:left])
            left -= len(block)
    return reply


@functools.cache
def GZIP_BOMB() -> bytes:
    """200 MB of JSON in under 1 MB of gzip."""
    z = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1 << 20)
    return b"".join([z.compress(b"{"), *(z.compress(block) for _ in range(200)), z.compress(b"}"), z.flush()])


def bearer(realm_host: str) -> Reply:
    return lambda h: send(h, 401, b"{}", {"WWW-Authenticate": f'Bearer realm="http://{realm_host}/token",service="s"'})


def ok_v2(h: BaseHTTPRequestHandler) -> None:
    send(h, 200, b"{}")


@pytest.mark.parametrize("case", ["token", "token-refused", "v2-ok", "v2-error", "v2-gzip-bomb"])
def test_registry_answers_without_end(hostile: HostileRegistry, case: str) -> None:
    """Success answers read whole are refused above 16 MiB; error answers are read only for their message.
    The error answers are 400 MB: read whole, they would not fit under the memory cap."""
    routes = {
        "token": {"/v2/": bearer(hostile.host), "/token": endless(200)},
        "token-refused": {"/v2/": bearer(hostile.host), "/token": endless(401, 400 << 20)},
        "v2-ok": {"/v2/": endless(200, prefix=b"{")},
        "v2-error": {"/v2/": endless(400, 400 << 20, prefix=b"{")},
        "v2-gzip-bomb": {"/v2/": lambda h: send(h, 200, GZIP_BOMB(), {"Content-Encoding": "gzip"})},
    }[case]
    hostile.routes.update(routes)
    started = time.monotonic()
    proc = run_capped("inspect", f"{hostile.host}/repo:1", "--json")
    needle = {"v2-error": "not a distribution registry", "token-refused": "authentication required"}.get(
        case, "larger than 16 MiB")
    assert_clean_failure(proc, 1, needle)
    assert json.loads(proc.stdout)["error"]["exitCode"] == 1
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("command", ["inspect", "verify", "gc", "copy"])
def test_layout_index_of_a_gigabyte(tmp_path: Path, command: str) -> None:
    layout = tmp_path / "layout"
    (layout / "blobs/sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    with open(layout / "index.json", "wb") as f:  # sparse: 1 GB that takes no disk
        f.write(b'{"schemaVersion": 2, "manifests": [')
        f.truncate(1 << 30)
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a").write_text("a\n")
    args = {"inspect": ["inspect", f"oci:{layout}:x"], "verify": ["verify", str(layout)], "gc": ["gc", str(layout)],
            "copy": ["copy", f"dir:{tmp_path / 'src'}", f"oci:{layout}:x"]}[command]
    assert_clean_failure(run_capped(*args), 1, "index.json", "over the limit")


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def serve_image(hostile: HostileRegistry, config: bytes, config_reply: Reply,
                layers: list[dict[str, object]] | None = None) -> None:
    """``repo:1``, a manifest whose config blob (of ``config``'s digest and size) is answered by ``config_reply``."""
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers or [], "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
        "digest": f"sha256:{hashlib.sha256(config).hexdigest()}"}}).encode()
    headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": f"sha256:{hashlib.sha256(manifest).hexdigest()}"}
    hostile.routes["/v2/"] = ok_v2
    hostile.routes["/v2/repo/manifests/"] = lambda h: send(h, 200, manifest, headers)
    hostile.routes["/v2/repo/blobs/sha256:"] = config_reply


def trickle(body: bytes, every: float = 0.5) -> Reply:
    """``body``, one byte every ``every`` seconds."""
    def reply(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Content-Type", "application/octet-stream")
        h.end_headers()
        for i in range(len(body)):
            h.wfile.write(body[i:i + 1])
            h.wfile.flush()
            time.sleep(every)
    return reply


def test_blob_redirect_loop(hostile: HostileRegistry, tmp_path: Path) -> None:
    def loop(h: BaseHTTPRequestHandler) -> None:
        send(h, 307, b"", {"Location": h.path})

    serve_image(hostile, b"{}", loop)
    proc = run_capped("copy", f"{hostile.host}/repo:1", f"oci:{tmp_path / 'out'}:x")
    assert_clean_failure(proc, 1, "redirect loop", "/v2/repo/blobs/sha256:")


@pytest.mark.parametrize("what", ["blob", "token"])
def test_trickling_transfer_times_out(hostile: HostileRegistry, tmp_path: Path, what: str) -> None:
    """1 byte every 0.5 s never trips the read timeout; the overall deadline (here 1 s + 1 s per 1000
    bytes: 4 s for the 3000-byte blob) does."""
    config = json.dumps({"pad": "x" * 3000})[:3000].encode()
    if what == "blob":
        serve_image(hostile, config, trickle(config))
    else:
        hostile.routes["/v2/"] = bearer(hostile.host)
        hostile.routes["/token"] = trickle(b'{"token": "' + b"t" * 3000 + b'"}')
    env = dict(os.environ, REGFP_MIN_RATE="1000", REGFP_TRANSFER_GRACE="1")
    started = time.monotonic()
    proc = run_capped("copy", f"{hostile.host}/repo:1", f"oci:{tmp_path / 'out'}:x", env=env)
    took = time.monotonic() - started
    assert_clean_failure(proc, 1, "too slow")
    assert 1 < took < 20, took
    if what == "blob":
        assert "4 s allowed" in proc.stderr and "REGFP_MIN_RATE" in proc.stderr


def test_transfer_rate_settings_are_checked(tmp_path: Path) -> None:
    env = dict(os.environ, REGFP_MIN_RATE="fast")
    assert_clean_failure(run_capped("inspect", "127.0.0.1:1/repo:1", env=env), 2, "REGFP_MIN_RATE")


# -- 13. a full disk -----------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root to mount), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        if os.environ.get("REGFP_REQUIRE_TOOLS"):
            pytest.fail(f"cannot mount a tmpfs: {proc.stderr}")
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("where", ["base", "source", "source-last-write"])
def test_disk_full_during_a_build(tmp_path: Path, small_disk: Path, where: str) -> None:
    """Incompressible data that does not fit, in the base directory or in the Git source; in the last case
    it fits but for its last write, where a short write could go unnoticed."""
    repo = make_project(tmp_path)
    data = os.urandom((2 << 20) - (60 << 10) if where == "source-last-write" else 3 << 20)
    if where == "base":
        (tmp_path / "bases/os-1/big.bin").write_bytes(data)
    else:
        repo.write("app/big.bin", data)
        repo.commit("big")
    recipe = tmp_path / "recipe.yaml"
    layout = small_disk / "out"
    recipe.write_text(recipe.read_text().replace("output: {layout: out}", f"output: {{layout: {layout}}}"))
    proc = run_capped("build", str(recipe), "--now", NOW, "--json")
    assert_clean_failure(proc, 1, f"OCI layout {layout}", "No space left on device")
    assert "cannot read" not in proc.stderr
    assert json.loads(proc.stdout)["error"]["exitCode"] == 1
    assert not [p for p in (layout / ".regfp/tmp").iterdir()], "temp files left behind"
    verified = run_capped("verify", str(layout))
    assert verified.returncode == 0, verified.stderr


def test_disk_full_while_spooling_a_push(tmp_path: Path, small_disk: Path, registry: Registry) -> None:
    """A layer made on the fly for a registry is spooled to TMPDIR first; that disk filling up is said so."""
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree/big.bin").write_bytes(os.urandom(3 << 20))
    env = dict(os.environ, TMPDIR=str(small_disk), XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = run_capped("copy", f"dir:{tmp_path / 'tree'}", f"{registry.host}/full/spool:1", env=env)
    assert_clean_failure(proc, 1, str(small_disk), "No space left on device")
    assert "cannot read" not in proc.stderr
    assert not list(small_disk.iterdir())


# -- 15. SIGTERM, and temp files of writers that were killed --------------------------------------------
def serve_trickling_layers(hostile: HostileRegistry, layers: int) -> None:
    """``repo:1`` with a config served at once and ``layers`` layers that trickle (one byte per 0.5 s)."""
    config = b'{"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}'
    blobs = [os.urandom(4096) for _ in range(layers)]
    desc = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": len(b),
             "digest": f"sha256:{hashlib.sha256(b).hexdigest()}"} for b in blobs]
    serve_image(hostile, config, lambda h: send(h, 200, config), layers=desc)
    for d, b in zip(desc, blobs, strict=True):
        hostile.routes[f"/v2/repo/blobs/{d['digest']}"] = trickle(b)


def temps(layout: Path) -> list[Path]:
    tmp = layout / ".regfp/tmp"
    return sorted(tmp.iterdir()) if tmp.is_dir() else []


def wait_for_temps(layout: Path, count: int, proc: subprocess.Popen[str]) -> list[Path]:
    deadline = time.monotonic() + 20
    while len(found := temps(layout)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no {count} temp files in {layout}: {found}"
        time.sleep(0.05)
    return found


def start_copy(hostile: HostileRegistry, layout: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "regctl_fp", "copy", f"{hostile.host}/repo:1", f"oci:{layout}:x",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_cap_memory)


def test_sigterm_is_an_interrupt(hostile: HostileRegistry, tmp_path: Path) -> None:
    """Three blobs copied in parallel, each trickling: SIGTERM stops all three at once, removes their temp
    files and exits 143 with a JSON error, as Ctrl-C does with 130."""
    serve_trickling_layers(hostile, 3)
    layout = tmp_path / "out"
    proc = start_copy(hostile, layout, "--json")
    try:
        wait_for_temps(layout, 3, proc)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - signalled < 10
    assert proc.returncode == 143, err
    assert json.loads(out)["error"] == {"message": "terminated (SIGTERM)", "type": "Terminated", "exitCode": 143}
    assert "Traceback" not in err and "terminated" in err
    assert temps(layout) == []


def test_temp_files_of_a_killed_writer_go_with_the_next_writer(hostile: HostileRegistry, tmp_path: Path) -> None:
    serve_trickling_layers(hostile, 2)
    layout = tmp_path / "out"
    killed = start_copy(hostile, layout)
    try:
        left = wait_for_temps(layout, 2, killed)
    finally:
        killed.kill()
        killed.communicate(timeout=30)
    assert temps(layout) == left
    # A writer that is alive, in the middle of a blob: its temp file must survive the sweep.
    live = subprocess.Popen([sys.executable, "-c", "import sys\n"
                             "from regctl_fp.stores.layout import LayoutStore\n"
                             "sink = LayoutStore.open_or_create(sys.argv[1]).blob_sink()\n"
                             "sink.write(b'half a blob')\n"
                             "print('writing', flush=True)\n"
                             "sys.stdin.read()\n"
                             "sink.abort()\n", str(layout)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout is not None and live.stdout.readline() == "writing\n"
        alive = [p for p in temps(layout) if p not in left]
        assert len(alive) == 1
        (tmp_path / "src").mkdir()
        (tmp_path / "src/a").write_text("a\n")
        regfp("copy", f"dir:{tmp_path / 'src'}", f"oci:{layout}:y", env=dict(
            os.environ, XDG_CACHE_HOME=str(tmp_path / "cache")))
        assert temps(layout) == alive
    finally:
        live.communicate("", timeout=30)
    assert temps(layout) == []
