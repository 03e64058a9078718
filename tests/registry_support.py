"""Real registries for tests: the distribution registry (`docker-registry`) on 127.0.0.1 with its own
config and storage (plain HTTP, htpasswd + TLS, or token auth), a token server of our own (JWT, ES256),
a fault-injecting HTTP proxy for the faults a real registry will not produce on demand, and small
image builders. The pytest fixtures around them are in ``registry_fixtures``.
"""

from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import hashlib
import http.client
import ipaddress
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from conftest import need

REGISTRY = "docker-registry"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}


# -- the registry process -------------------------------------------------------------------------------
def serve(handler: type[BaseHTTPRequestHandler], bind: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A threaded HTTP server for a test's stub on a free port of ``bind``, serving from a daemon thread
    (``server.server_address[1]`` is its port; ``stop_serving`` ends it)."""
    server = ThreadingHTTPServer((bind, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop_serving(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


class Registry:
    """One ``docker-registry serve`` process with its own config, storage directory and log."""

    def __init__(self, root: Path, *, auth: dict[str, Any] | None = None, tls: tuple[Path, Path] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.storage = root / "storage"
        self.log = root / "registry.log"
        root.mkdir(parents=True, exist_ok=True)
        http_cfg: dict[str, Any] = {"addr": "127.0.0.1:0", "secret": "regfp-test-secret"}
        if tls is not None:
            http_cfg["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": http_cfg,
        }
        if auth is not None:
            config["auth"] = auth
        self.config = root / "config.yml"
        self.config.write_text(json.dumps(config))  # JSON is YAML
        self.scheme = "https" if tls else "http"
        self._env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> Registry:
        binary = need(REGISTRY)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([binary, "serve", str(self.config)], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, env={**os.environ, **(self._env or {})})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", self.log.read_bytes())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited {self.proc.returncode}:\n{self.log.read_text()}")
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"docker-registry did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def blob_data(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (to corrupt it in tests)."""
        alg, hexd = digest.split(":")
        return self.storage / "docker/registry/v2/blobs" / alg / hexd[:2] / hexd / "data"

    def tag_exists(self, repo: str, tag: str) -> bool:
        return (self.storage / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag
                / "current/link").is_file()

    def tag_target(self, repo: str, tag: str) -> str | None:
        link = (self.storage / "docker/registry/v2/repositories" / repo / "_manifests/tags" / tag / "current/link")
        return link.read_text().strip() if link.is_file() else None

    def has_layer_link(self, repo: str, digest: str) -> bool:
        alg, hexd = digest.split(":")
        return (self.storage / "docker/registry/v2/repositories" / repo / "_layers" / alg / hexd / "link").is_file()


# -- TLS material ---------------------------------------------------------------------------------------
def self_signed(directory: Path, name: str = "registry") -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1 and localhost (also usable as its own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"regfp test {name}")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# -- a token server (Docker Hub / GHCR style Bearer auth) ------------------------------------------------
Policy = dict[str | None, list[tuple[str, set[str]]]]  # user (None: anonymous) -> [(repo glob, actions)]


@dataclass
class TokenRequest:
    method: str
    user: str | None
    scopes: list[str]
    granted: list[dict[str, Any]]


class TokenServer:
    """Issues ES256 JWTs that the distribution registry accepts (``kid`` = libtrust key id of a key whose
    certificate is in the registry's root bundle). ``policy`` grants actions per user and repository.

    ``lifetime`` is how long a token really lasts for the registry (it adds 60 s of slack past ``exp``,
    which is taken into account here); ``claimed_lifetime`` is the ``expires_in`` told to the client.
    """

    SLACK = 60

    def __init__(self, root: Path, users: dict[str, str], policy: Policy, service: str = "regfp-test-registry",
                 issuer: str = "regfp-test-issuer") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        root.mkdir(parents=True, exist_ok=True)
        self.users = users
        self.policy = policy
        self.service = service
        self.issuer = issuer
        self.refresh_tokens: dict[str, str] = {}  # identity token -> user
        self.lifetime = 300.0
        self.claimed_lifetime: float | None = 300.0
        self.requests: list[TokenRequest] = []
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regfp test token signer")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self._key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=2)).sign(self._key, hashes.SHA256()))
        self.bundle = root / "token-bundle.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        spki = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        b32 = base64.b32encode(hashlib.sha256(spki).digest()[:30]).decode().rstrip("=")
        self.kid = ":".join(b32[i:i + 4] for i in range(0, 48, 4))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict[str, Any]:
        return {"token": {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": str(self.bundle)}}

    def start(self) -> TokenServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        stop_serving(self._server)

    def grant(self, user: str | None, scope: str) -> dict[str, Any] | None:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name:
            return None
        allowed: set[str] = set()
        for pattern, acts in self.policy.get(user, []) + (self.policy.get(None, []) if user else []):
            if fnmatch.fnmatchcase(name, pattern):
                allowed |= acts
        granted = sorted(set(actions.split(",")) & allowed)
        return {"type": "repository", "name": name, "actions": granted} if granted else None

    def mint(self, user: str | None, scopes: list[str]) -> tuple[str, list[dict[str, Any]]]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = [g for g in (self.grant(user, s) for s in scopes) if g is not None]
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service, "iat": now - 1, "nbf": now - 1,
                  "exp": now + int(self.lifetime) - self.SLACK, "jti": uuid.uuid4().hex, "access": access}
        header = {"typ": "JWT", "alg": "ES256", "kid": self.kid}
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        der = self._key.sign(signing.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}", access

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                scopes = [s for v in query.get("scope", []) for s in v.split(" ") if s]
                user: str | None = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if server.users.get(name) != password:
                        self._reply(401, {"details": "bad credentials"})
                        return
                    user = name
                self._issue("GET", user, scopes)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                user = server.refresh_tokens.get((form.get("refresh_token") or [""])[0])
                if form.get("grant_type") != ["refresh_token"] or user is None:
                    self._reply(401, {"error": "invalid_grant"})
                    return
                scopes = [s for v in form.get("scope", []) for s in v.split(" ") if s]
                self._issue("POST", user, scopes)

            def _issue(self, method: str, user: str | None, scopes: list[str]) -> None:
                token, access = server.mint(user, scopes)
                server.requests.append(TokenRequest(method, user, scopes, access))
                doc: dict[str, Any] = {"token": token, "access_token": token,
                                       "issued_at": dt.datetime.now(dt.UTC).isoformat()}
                if server.claimed_lifetime is not None:
                    doc["expires_in"] = server.claimed_lifetime
                self._reply(200, doc)

        return Handler


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# -- the fault-injecting proxy ---------------------------------------------------------------------------
@dataclass
class Fault:
    """What to do to requests matching ``method`` and the ``path`` regex: let ``skip`` matches through,
    then affect the next ``times`` ones (-1: all).

    Actions: ``status`` (answer ``status`` with ``headers`` and error ``code`` without asking the registry),
    ``reset_request`` (reset the connection after ``after`` bytes of the request body),
    ``reset_response`` (reset after ``after`` bytes of the response body), ``close_response`` (close
    the connection cleanly there),
    ``stall`` (hold the response ``seconds`` before its headers, or after ``after`` body bytes).
    """

    action: str
    method: str | None = None
    path: str = ".*"
    skip: int = 0
    times: int = 1
    status: int = 500
    code: str = "UNKNOWN"
    headers: dict[str, str] = field(default_factory=dict)
    after: int | None = None
    seconds: float = 0.0
    min_body: int = 0  # only requests whose body is at least this long
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str, length: int = 0) -> bool:
        if self.method is not None and self.method != method:
            return False
        if not re.search(self.path, path) or length < self.min_body:
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.times >= 0 and self.fired >= self.times):
            return False
        self.fired += 1
        return True


@dataclass
class Seen:
    method: str
    path: str
    time: float
    status: int | None = None
    fault: str | None = None
    range: str | None = None
    body: int = 0


class _Reset(Exception):
    pass


class FaultProxy:
    """An HTTP/1.1 proxy in front of a registry that passes requests through (streaming bodies) unless a
    fault matches. Every request is logged in ``seen``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = serve(self._handler())
        self.port = self._server.server_address[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.seen.clear()

    def stop(self) -> None:
        stop_serving(self._server)

    def _match(self, method: str, path: str, length: int) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path, length):
                    return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (TimeoutError, _Reset, ConnectionError):
                    self.close_connection = True

            def __getattr__(self, name: str) -> Callable[[], None]:
                if name.startswith("do_"):
                    return self._proxy
                raise AttributeError(name)

            def _rst(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                raise _Reset()

            def _proxy(self) -> None:
                method, path = self.command, self.path
                seen = Seen(method, path, time.monotonic(), range=self.headers.get("Range"))
                with proxy._lock:
                    proxy.seen.append(seen)
                length = int(self.headers.get("Content-Length") or 0)
                fault = proxy._match(method, path, length)
                seen.fault = fault.action if fault else None
                if fault is not None and fault.action == "status":
                    _drain(self.rfile, length)
                    body = json.dumps({"errors": [{"code": fault.code, "message": "injected fault"}]}).encode()
                    self.send_response(fault.status)
                    for k, v in fault.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if method != "HEAD":
                        self.wfile.write(body)
                    seen.status = fault.status
                    return
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    upstream.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                    for k, v in self.headers.items():
                        if k.lower() not in HOP_BY_HOP:
                            upstream.putheader(k, v)
                    upstream.endheaders()
                    sent = 0
                    while sent < length:
                        want = min(1 << 16, length - sent)
                        if fault is not None and fault.action == "reset_request" and fault.after is not None:
                            if sent >= fault.after:
                                self._rst()
                            want = min(want, fault.after - sent)
                        chunk = self.rfile.read(want)
                        if not chunk:
                            raise _Reset()
                        upstream.send(chunk)
                        sent += len(chunk)
                    seen.body = sent
                    if fault is not None and fault.action == "reset_request":
                        self._rst()
                    resp = upstream.getresponse()
                    if fault is not None and fault.action == "stall" and fault.after is None:
                        time.sleep(fault.seconds)
                    self.send_response_only(resp.status, resp.reason)
                    chunked = resp.getheader("Transfer-Encoding", "").lower() == "chunked"
                    payload = resp.read() if chunked else None
                    for k, v in resp.getheaders():
                        if k.lower() not in HOP_BY_HOP and not (chunked and k.lower() == "content-length"):
                            self.send_header(k, v)
                    if payload is not None:
                        self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    seen.status = resp.status
                    if method == "HEAD":
                        return
                    if payload is not None:
                        self.wfile.write(payload)
                        return
                    out = 0
                    while True:
                        chunk = resp.read(1 << 16)
                        if not chunk:
                            break
                        if fault is not None and fault.after is not None and out + len(chunk) > fault.after:
                            head = fault.after - out
                            self.wfile.write(chunk[:head])
                            self.wfile.flush()
                            if fault.action == "reset_response":
                                self._rst()
                            if fault.action == "close_response":
                                self.connection.shutdown(socket.SHUT_RDWR)
                                self.close_connection = True
                                raise _Reset()
                            if fault.action == "stall":
                                time.sleep(fault.seconds)
                                self.wfile.write(chunk[head:])
                                out += len(chunk)
                                fault = None
                                continue
                        self.wfile.write(chunk)
                        out += len(chunk)
                    self.wfile.flush()
                finally:
                    upstream.close()

        return Handler


def _drain(rfile: Any, length: int) -> None:
    while length > 0:
        chunk = rfile.read(min(1 << 16, length))
        if not chunk:
            return
        length -= len(chunk)


@dataclass
class TlsRegistry:
    registry: Registry
    ca: Path
    cert_dir: Path  # for skopeo's --cert-dir / --dest-cert-dir
    user: str
    password: str


@dataclass
class TokenRegistry:
    registry: Registry
    tokens: TokenServer


USERS = {"alice": "alice-secret-8c1f", "bob": "bob-secret-77aa"}
POLICY: Policy = {
    None: [("public/*", {"pull"})],
    "alice": [("acme/*", {"pull", "push"}), ("base/*", {"pull"})],
    "bob": [("base/*", {"pull", "push"})],
}


# -- images for registry tests ---------------------------------------------------------------------------
def random_bytes(seed: str, size: int) -> bytes:
    """Incompressible bytes unique to ``seed``, so no two tests share a blob by accident."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest() * 1
        counter += 1
    return bytes(out[:size])


def make_image(store: Any, name: str, *, layers: int = 3, size: int = 48 << 10, seed: str | None = None,
               compression: str = "gzip", platform: tuple[str, str] = ("linux", "amd64")) -> Any:
    """A container image of ``layers`` layers of unique content, named ``name`` in the layout ``store``;
    returns the manifest descriptor."""
    from regctl_fp.layers import file_entry, write_layer
    from regctl_fp.oci.config import History, ImageConfig
    from regctl_fp.oci.image import Image, Layer
    from regctl_fp.stores.base import write_image

    seed = seed or uuid.uuid4().hex
    image = Image(config=ImageConfig.new(os=platform[0], architecture=platform[1], created="2024-01-01T00:00:00Z")
                  .with_container(Env=["PATH=/bin"], Cmd=["/bin/true"]))
    for i in range(layers):
        written = write_layer([file_entry(f"data/{i}.bin", random_bytes(f"{seed}/{i}", size + i * 1024))],
                              store.blob_sink(), mtime=0, compression=compression)
        desc = written.descriptor
        image = image.appended(Layer(desc, written.diff_id, (lambda d=desc: store.open_blob(d))),
                               History(created="2024-01-01T00:00:00Z", created_by=f"layer {i}"))
    manifest = write_image(store, image)
    store.set_names({name: manifest})
    return manifest


def blobs_of(store: Any, desc: Any) -> list[Any]:
    """Every config and layer descriptor below ``desc`` (through indexes)."""
    from regctl_fp.oci import mediatypes as mt
    from regctl_fp.oci.manifest import Index, Manifest

    data = store.get_manifest(desc)
    if desc.media_type in mt.INDEX_TYPES:
        return [b for child in Index.parse(data, desc.media_type).manifests for b in blobs_of(store, child)]
    m = Manifest.parse(data, desc.media_type)
    return [m.config, *m.layers]
