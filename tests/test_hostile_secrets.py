"""Secrets against hostile servers and on disk (issue 15, "Secrets"): a registry or token server that
echoes the Authorization header in its error body, stored tokens with illegal header characters, blobs
that hold private keys, and where credentials may be sent (REGFP_REGISTRY, plain HTTP, the token realm).

The hostile servers are small stdlib HTTP servers on the loopback interface (a real registry does not
echo credentials); everything else runs against the real distribution registry and the real CLI.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus

import pytest
from conftest import need
from registry_support import USERS, Registry, TlsRegistry, TokenRegistry, stop_serving
from registry_support import serve as serve_http

from regctl_fp.redaction import MASK, remember_secret, scrub
from regctl_fp.stores.auth import Credential, credential_refusal

pytest_plugins = ["registry_fixtures"]

TIMEOUT = 120  # seconds for one CLI run; a hang is a failure, not a stuck suite
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cli(*args: str, env: dict[str, str], umask: int | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, under a timeout (and a umask, when given)."""
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "regctl_fp", *args], env=env, input=input, capture_output=True,
                          text=True, timeout=TIMEOUT, preexec_fn=preexec)


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """An environment with no ambient credentials: its own HOME, no DOCKER_CONFIG or podman auth file."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REGFP_") and k not in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR")}
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    env.update(extra)
    return env


def docker_config(tmp: Path, auths: dict[str, Any], **more: Any) -> Path:
    directory = tmp / f"docker-{uuid.uuid4().hex[:6]}"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"auths": auths, **more}))
    return directory


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both and "internal error" not in both and "LocalProtocolError" not in both, both


# -- a hostile registry ----------------------------------------------------------------------------------
class EchoRegistry:
    """Refuses every authenticated request with an error body that echoes the Authorization header it
    got (in the code and the message), as some registries and proxies do. ``scheme`` is how it
    challenges: "basic", or "bearer" with its own token endpoint at ``/token`` that issues
    ``self.token`` for a Basic login (or, with ``echo_token_server``, refuses it, echoing it too).
    With ``serve``, authenticated requests get a valid image instead, whose manifest annotation holds
    the Authorization header: an echo in a successful answer."""

    def __init__(self, scheme: str, *, echo_token_server: bool = False, serve: bool = False,
                 bind: str = "127.0.0.1") -> None:
        self.scheme = scheme
        self.echo_token_server = echo_token_server
        self.serve = serve
        self.token = f"tok-{uuid.uuid4().hex}"
        self.seen: list[tuple[str, str, str]] = []  # method, path, Authorization
        self.forms: list[dict[str, list[str]]] = []
        self._server = serve_http(self._handler(), bind)
        self.bind = bind
        self.port = self._server.server_address[1]

    @property
    def host(self) -> str:
        return f"{self.bind}:{self.port}"

    def stop(self) -> None:
        stop_serving(self._server)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        reg = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _echo(self, status: int, what: str, headers: dict[str, str] | None = None) -> None:
                self._reply(status, {"errors": [{"code": f"DENIED({what})", "message": f"denied for {what}",
                                                 "detail": what}]}, headers)

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("latin-1") if length else ""
                auth = self.headers.get("Authorization", "")
                reg.seen.append((self.command, self.path, auth))
                if self.path.startswith("/token"):
                    if self.command == "POST":
                        reg.forms.append(parse_qs(body))
                        self._echo(401, body)  # the whole form, refresh token and all
                    elif reg.echo_token_server and auth:
                        self._echo(401, auth)
                    else:
                        self._reply(200, {"token": reg.token, "expires_in": 300})
                    return
                if not auth:
                    challenge = ('Basic realm="echo"' if reg.scheme == "basic" else
                                 f'Bearer realm="http://{reg.host}/token",service="echo"')
                    self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "log in"}]},
                                {"WWW-Authenticate": challenge})
                    return
                if reg.serve:
                    self._image(auth)
                elif self.command == "HEAD":  # no body to echo in: say too little, so the client GETs
                    self._reply(200, {})
                elif reg.scheme == "basic":
                    self._echo(401, auth, {"WWW-Authenticate": 'Basic realm="echo"'})
                else:
                    self._echo(403, auth)

            def _image(self, auth: str) -> None:
                config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                                     "rootfs": {"type": "layers", "diff_ids": []}}).encode()
                manifest = json.dumps({
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                    "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
                    "annotations": {"org.opencontainers.image.description": f"built for {auth}"}}).encode()
                body, kind = (config, OCI_CONFIG) if "/blobs/" in self.path else (manifest, OCI_MANIFEST)
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Docker-Content-Digest", sha256(body))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _any

        return Handler


@pytest.fixture
def echo_registry() -> Iterator[Any]:
    started: list[EchoRegistry] = []

    def make(scheme: str, **kw: Any) -> EchoRegistry:
        reg = EchoRegistry(scheme, **kw)
        started.append(reg)
        return reg

    yield make
    for reg in started:
        reg.stop()


# -- 1. credentials echoed by the server never reach the output -------------------------------------------
def test_a_remembered_secret_is_scrubbed_in_every_form_it_travels_in() -> None:
    secret = f"s3/{uuid.uuid4().hex[:8]}+\"é"
    remember_secret(secret)
    remember_secret("abc", scheme="Basic")  # too short to scrub on its own, but not as a header value
    for form in (secret, json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret),
                 repr(secret.encode())[2:-1]):
        assert scrub(f"<{form}>") == f"<{MASK}>", form
    assert scrub("denied for Basic abc; abc stays") == f"denied for {MASK}; abc stays"


CASES = ["basic password", "bearer token", "token server echo", "identity token", "registry token"]


@pytest.mark.parametrize("json_out", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("case", CASES)
def test_echoed_credentials_are_scrubbed_from_every_output(case: str, json_out: bool, echo_registry: Any,
                                                           tmp_path: Path) -> None:
    password = f"pw-{uuid.uuid4().hex[:12]}"
    pair = base64.b64encode(f"ci-user:{password}".encode()).decode()
    identity = f"id/{uuid.uuid4().hex[:10]}+x=="  # characters that change under URL encoding
    registry_token = f"reg-{uuid.uuid4().hex}"
    reg = echo_registry("basic" if case == "basic password" else "bearer",
                        echo_token_server=case == "token server echo")
    env = clean_env(tmp_path)
    if case == "identity token":
        env["DOCKER_CONFIG"] = str(docker_config(tmp_path, {reg.host: {"identitytoken": identity}}))
    elif case == "registry token":
        env["DOCKER_CONFIG"] = str(docker_config(tmp_path, {reg.host: {"registrytoken": registry_token}}))
    else:
        env.update(REGFP_USERNAME="ci-user", REGFP_PASSWORD=password)
    proc = cli("inspect", f"{reg.host}/acme/app:1", *(["--json"] if json_out else []), env=env)
    sent = " ".join(a for _, _, a in reg.seen) + json.dumps(reg.forms)
    secrets = {"basic password": [password, pair], "bearer token": [password, pair, reg.token],
               "token server echo": [password, pair], "identity token": [identity, quote_plus(identity),
                                                                         quote(identity, safe="")],
               "registry token": [registry_token]}[case]
    assert any(s in sent for s in secrets), "the server never saw the credential: the test proves nothing"
    assert proc.returncode == 1, proc.stdout + proc.stderr
    no_traceback(proc)
    for secret in secrets:
        assert secret not in proc.stdout and secret not in proc.stderr, (secret, proc.stdout + proc.stderr)
    shown = json.loads(proc.stdout)["error"]["message"] if json_out else proc.stderr
    assert "denied for" in shown and "***" in shown  # the echo is shown, with the secret masked


@pytest.mark.parametrize("json_out", [False, True], ids=["text", "json"])
def test_a_secret_echoed_in_a_successful_answer_is_scrubbed_too(json_out: bool, echo_registry: Any,
                                                                tmp_path: Path) -> None:
    password = f"pw-{uuid.uuid4().hex[:12]}"
    pair = base64.b64encode(f"ci-user:{password}".encode()).decode()
    reg = echo_registry("basic", serve=True)
    env = clean_env(tmp_path, REGFP_USERNAME="ci-user", REGFP_PASSWORD=password)
    proc = cli("inspect", f"{reg.host}/acme/app:1", *(["--json"] if json_out else []), env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"Basic {pair}" in [a for _, _, a in reg.seen]
    assert pair not in proc.stdout + proc.stderr and password not in proc.stdout + proc.stderr
    if json_out:
        assert json.loads(proc.stdout)["annotations"]["org.opencontainers.image.description"] == "built for ***"
    else:
        assert "built for ***" in proc.stdout


# -- 2. stored tokens with characters a header cannot carry ------------------------------------------------
@pytest.mark.parametrize("key", ["registrytoken", "identitytoken"])
def test_a_stored_token_with_a_trailing_newline_is_normalized(key: str, echo_registry: Any, tmp_path: Path) -> None:
    reg = echo_registry("bearer")
    value = f"stored-{uuid.uuid4().hex}"
    env = clean_env(tmp_path, DOCKER_CONFIG=str(docker_config(tmp_path, {reg.host: {key: value + "\n"}})))
    proc = cli("inspect", f"{reg.host}/acme/app:1", "--json", env=env)
    assert proc.returncode == 1  # the hostile registry refuses everything; the point is what was sent
    no_traceback(proc)
    assert value not in proc.stdout + proc.stderr
    if key == "registrytoken":
        assert ("GET", "/v2/acme/app/manifests/1", f"Bearer {value}") in reg.seen
    else:
        assert [f["refresh_token"] for f in reg.forms] == [[value]]


def test_a_token_server_answering_a_token_a_header_cannot_carry_is_refused(echo_registry: Any,
                                                                          tmp_path: Path) -> None:
    reg = echo_registry("bearer")
    reg.token += "\r\nX-Injected: 1"
    env = clean_env(tmp_path, REGFP_USERNAME="ci-user", REGFP_PASSWORD=f"pw-{uuid.uuid4().hex[:12]}")
    proc = cli("inspect", f"{reg.host}/acme/app:1", env=env)
    assert proc.returncode == 1
    no_traceback(proc)
    assert "token server's answer holds a token with characters" in proc.stderr
    assert reg.token.split()[0] not in proc.stderr
    assert [p for _, p, a in reg.seen if a.startswith("Bearer")] == []


@pytest.mark.parametrize("bad", ["tok en", "tok\x01en", "tok\nen", "tök"])
def test_a_malformed_stored_token_is_refused_naming_file_and_key(bad: str, echo_registry: Any,
                                                                 tmp_path: Path) -> None:
    reg = echo_registry("bearer")
    value = f"x{uuid.uuid4().hex[:8]}{bad}{uuid.uuid4().hex[:8]}"
    config = docker_config(tmp_path, {reg.host: {"registrytoken": value}})
    proc = cli("inspect", f"{reg.host}/acme/app:1", env=clean_env(tmp_path, DOCKER_CONFIG=str(config)))
    assert proc.returncode == 2, proc.stderr
    no_traceback(proc)
    assert str(config / "config.json") in proc.stderr and "registrytoken" in proc.stderr and reg.host in proc.stderr
    for part in value.split(bad):
        assert part not in proc.stdout + proc.stderr
    assert [p for _, p, a in reg.seen if a] == []  # nothing was sent with it


# -- 3. private keys on disk -------------------------------------------------------------------------------
@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory other users can traverse (pytest's tmp_path is 0700, which would hide everything)."""
    path = Path(tempfile.mkdtemp(prefix="regfp-modes-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def nobody_can_read(path: Path) -> bool:
    proc = subprocess.run([need("setpriv"), "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           "cat", str(path)], capture_output=True, timeout=30)
    return proc.returncode == 0


def layer_blobs(layout: Path, name: str) -> tuple[list[Path], Path]:
    """The layer blob files of ``name`` and its config blob file."""
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == name)
    blob = layout / "blobs/sha256"
    manifest = json.loads((blob / desc["digest"].split(":")[1]).read_text())
    return ([blob / layer["digest"].split(":")[1] for layer in manifest["layers"]],
            blob / manifest["config"]["digest"].split(":")[1])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_identity_layer_of_an_environment_is_private(tmp_path: Path, world_dir: Path) -> None:
    from test_environment import NOW, env_project

    env_project(tmp_path)
    out = world_dir / "out"
    env = clean_env(tmp_path)
    built = cli("build", str(tmp_path / "recipe.yaml"), "--out", str(out), "--now", NOW, "--json", env=env,
                umask=0o022)
    assert built.returncode == 0, built.stderr
    layers, config = layer_blobs(out, "us-east.prod/app/hello:live")
    base, identity = layers[0], layers[-1]
    assert mode(base) == 0o644 and nobody_can_read(base)  # the check can see a readable blob
    assert mode(identity) == 0o600 and not nobody_can_read(identity)
    assert mode(config) == 0o600  # the config of an image with a key is private too
    # Copied into another layout (as a pull or a remote cache hit does), the key stays private.
    copied = cli("copy", f"oci:{out}:us-east.prod/app/hello:live", f"oci:{world_dir / 'copy'}:x", env=env,
                 umask=0o022)
    assert copied.returncode == 0, copied.stderr
    layers2, _ = layer_blobs(world_dir / "copy", "x")
    assert layers2[-1].name == identity.name and not nobody_can_read(layers2[-1])
    assert {mode(p) for p in layers2} == {0o600}
    # Temp files of the writers are gone, and none was ever left readable.
    leftovers = [p for d in (out, world_dir / "copy") for p in (d / ".regfp/tmp").iterdir()]
    assert leftovers == []


def test_the_host_key_layer_of_a_debug_image_is_private(tmp_path: Path, world_dir: Path) -> None:
    from test_debug import debug_project, keypair

    debug_project(tmp_path)
    _, pub = keypair(tmp_path, "dev")
    out = world_dir / "out"
    proc = cli("debug-image", str(tmp_path / "recipe.yaml"), "--ssh-key", str(pub), "--out", str(out), "--json",
               env=clean_env(tmp_path), umask=0o000)
    assert proc.returncode == 0, proc.stderr
    layers, _ = layer_blobs(out, json.loads(proc.stdout)["name"])
    assert nobody_can_read(layers[0])
    assert mode(layers[-1]) == 0o600 and not nobody_can_read(layers[-1])


# -- 4. where credentials may go ---------------------------------------------------------------------------

@pytest.mark.parametrize(("realm", "insecure", "hosts", "allowed"), [
    ("https://auth.example/token", (), frozenset(), True),
    ("http://auth.example/token", (), frozenset(), False),
    ("http://auth.example:8080/token", ("auth.example",), frozenset(), True),  # named insecure, any port
    ("http://auth.example:8080/token", ("auth.example:9090",), frozenset(), False),
    ("http://127.0.0.1:5001/token", (), frozenset(), True),  # loopback by name
    ("http://localhost/token", (), frozenset(), True),
    ("http://[::1]:5001/token", (), frozenset(), True),
    ("http://127.0.0.2:5001/token", (), frozenset(), False),  # loopback to the kernel, another host by name
    ("http://user@evil.example/token", (), frozenset(), False),
    ("https://ghcr.io/token", (), frozenset({"ghcr.io"}), True),
    ("https://auth.example/token", (), frozenset({"ghcr.io"}), False),  # outside REGFP_REGISTRY
])
def test_where_credentials_may_go(realm: str, insecure: tuple[str, ...], hosts: frozenset[str],
                                  allowed: bool) -> None:
    cred = Credential(username="u", password="secret-pw", source="REGFP_USERNAME/REGFP_PASSWORD", hosts=hosts)
    refusal = credential_refusal(realm, cred, insecure)
    assert (refusal is None) == allowed, refusal
    if refusal is not None:
        assert "secret-pw" not in refusal and "REGFP_USERNAME/REGFP_PASSWORD" in refusal
    assert credential_refusal(realm, None, insecure) is None  # anonymous: nothing to protect
def alice_env(tmp: Path, **extra: str) -> dict[str, str]:
    return clean_env(tmp, REGFP_USERNAME="alice", REGFP_PASSWORD=USERS["alice"], **extra)


def alice_logins(tokens: TokenRegistry) -> int:
    return sum(1 for r in tokens.tokens.requests if r.user == "alice")


def test_regfp_registry_limits_the_token_realm_too(token_registry: TokenRegistry, busybox_rootfs: Path,
                                                   tmp_path: Path) -> None:
    host = token_registry.registry.host
    realm = f"127.0.0.1:{token_registry.tokens.port}"
    target = f"{host}/acme/{uuid.uuid4().hex[:8]}:1"
    before = alice_logins(token_registry)
    refused = cli("copy", f"dir:{busybox_rootfs}", target, env=alice_env(tmp_path, REGFP_REGISTRY=host))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    no_traceback(refused)
    assert "REGFP_REGISTRY" in refused.stderr and realm in refused.stderr
    assert USERS["alice"] not in refused.stdout + refused.stderr
    assert alice_logins(token_registry) == before  # the token server never saw alice's password
    allowed = cli("copy", f"dir:{busybox_rootfs}", target, env=alice_env(tmp_path, REGFP_REGISTRY=f"{host},{realm}"))
    assert allowed.returncode == 0, allowed.stderr
    assert alice_logins(token_registry) > before


class Relay:
    """A token realm on another host (127.0.0.2: loopback to the kernel, another host by name) that
    records what it receives and forwards it to the real token server."""

    def __init__(self, upstream_port: int) -> None:
        self.seen: list[str] = []  # Authorization headers
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                relay.seen.append(self.headers.get("Authorization", ""))
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "accept")}
                conn.request("GET", self.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                self.send_response(resp.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                conn.close()

        self._server = serve_http(Handler, "127.0.0.2")
        self.host = f"127.0.0.2:{self._server.server_address[1]}"

    def stop(self) -> None:
        stop_serving(self._server)


def test_a_plain_http_registry_cannot_send_the_password_to_a_realm_on_another_host(
        token_registry: TokenRegistry, make_registry: Any, busybox_rootfs: Path, tmp_path: Path) -> None:
    tokens = token_registry.tokens
    relay = Relay(tokens.port)
    try:
        auth = tokens.registry_auth()
        auth["token"]["realm"] = f"http://{relay.host}/token"
        reg: Registry = make_registry(auth=auth)
        target = f"{reg.host}/acme/{uuid.uuid4().hex[:8]}:1"
        refused = cli("copy", f"dir:{busybox_rootfs}", target, env=alice_env(tmp_path))
        assert refused.returncode == 1, refused.stdout + refused.stderr
        no_traceback(refused)
        assert relay.host in refused.stderr and "--insecure-registry" in refused.stderr
        assert USERS["alice"] not in refused.stdout + refused.stderr
        assert [a for a in relay.seen if a] == []  # no credentials went to the other host
        allowed = cli("copy", "--insecure-registry", relay.host, f"dir:{busybox_rootfs}", target,
                      env=alice_env(tmp_path))
        assert allowed.returncode == 0, allowed.stderr
        assert any(a.startswith("Basic ") for a in relay.seen)
    finally:
        relay.stop()


def test_explicit_credentials_win_over_a_stale_config_json(token_registry: TokenRegistry, busybox_rootfs: Path,
                                                           tmp_path: Path) -> None:
    host = token_registry.registry.host
    stale = base64.b64encode(b"alice:stale-pw-0c1d").decode()
    config = docker_config(tmp_path, {host: {"auth": stale}})
    target = f"{host}/acme/{uuid.uuid4().hex[:8]}:1"
    ok = cli("copy", f"dir:{busybox_rootfs}", target, env=alice_env(tmp_path, DOCKER_CONFIG=str(config)))
    assert ok.returncode == 0, ok.stderr
    # Without the environment's credentials the file's are used, and the refusal says where they came from.
    refused = cli("inspect", target, env=clean_env(tmp_path, DOCKER_CONFIG=str(config)))
    assert refused.returncode == 1 and str(config / "config.json") in refused.stderr
    assert "stale-pw-0c1d" not in refused.stderr and stale not in refused.stderr


def write_helper(directory: Path, name: str, username: str, secret: str) -> Path:
    """A real docker credential helper program that answers ``get`` for any server."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / f"docker-credential-{name}"
    script.write_text(f"#!{sys.executable}\nimport json, sys\nsys.stdin.read()\n"
                      f"print(json.dumps({{'Username': {username!r}, 'Secret': {secret!r}}}))\n")
    script.chmod(0o755)
    return directory


@pytest.mark.parametrize("source", ["environment", "config file", "credential helper"])
def test_a_refused_login_names_the_source_of_its_credentials(source: str, token_registry: TokenRegistry,
                                                             tmp_path: Path) -> None:
    host = token_registry.registry.host
    wrong = f"wrong-{uuid.uuid4().hex[:8]}"
    if source == "environment":
        env, named = clean_env(tmp_path, REGFP_USERNAME="alice", REGFP_PASSWORD=wrong), "REGFP_USERNAME"
    elif source == "config file":
        config = docker_config(tmp_path, {host: {"auth": base64.b64encode(f"alice:{wrong}".encode()).decode()}})
        env, named = clean_env(tmp_path, DOCKER_CONFIG=str(config)), str(config / "config.json")
    else:
        helpers = write_helper(tmp_path / "bin", "regfptest", "alice", wrong)
        config = docker_config(tmp_path, {}, credHelpers={host: "regfptest"})
        env = clean_env(tmp_path, DOCKER_CONFIG=str(config), PATH=f"{helpers}:{os.environ['PATH']}")
        named = "docker-credential-regfptest"
    for args in ((), ("--json",)):
        proc = cli("inspect", f"{host}/acme/app:1", *args, env=env)
        assert proc.returncode == 1
        no_traceback(proc)
        shown = json.loads(proc.stdout)["error"]["message"] if args else proc.stderr
        assert "refused" in shown and named in shown, shown
        assert wrong not in proc.stdout + proc.stderr


def test_a_refused_basic_login_names_the_environment(tls_registry: TlsRegistry, tmp_path: Path) -> None:
    env = clean_env(tmp_path, REGFP_USERNAME=tls_registry.user, REGFP_PASSWORD="nope-5e0b7a")
    proc = cli("inspect", "--ca-file", str(tls_registry.ca), f"{tls_registry.registry.host}/tls/x:1", env=env)
    assert proc.returncode == 1 and "refused" in proc.stderr
    assert "REGFP_USERNAME/REGFP_PASSWORD" in proc.stderr and "nope-5e0b7a" not in proc.stderr
