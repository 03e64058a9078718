"""Environment variants: config, files, CA bundle, polyfills, platform info and identity certificates."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import need, regfp, run_image
from pki import make_ca, make_leaf
from project import make_project

from regctl_fp.imagefs import read_file
from regctl_fp.stages.environment import merge_polyfill_env
from regctl_fp.stores.base import read_image
from regctl_fp.stores.layout import LayoutStore

ENVIRONMENTS = """\
rollouts: {{channel: stable, keep: 3}}
environments:
  - location: us-east
    environment: prod
    delta: 0
    env: {{LOG_LEVEL: info, PATH: "/app/bin:/usr/bin:/bin"}}
    files: {{/etc/hello/config.yaml: {{src: files/prod.yaml, mode: "0640", owner: "0:1000"}}}}
    caCerts: [pki/corp-root.pem]
    polyfills: ["dir:apm"]
    identity: {{ca: {ca}, key: {key}, ttl: 30d, trustDomain: test.example, hosts: [api.prod.example]{extra}}}
  - location: eu-west
    environment: dev
    delta: 0
    env: {{LOG_LEVEL: debug}}
    identity: {{ca: {ca}, key: {key}, ttl: 30d, trustDomain: test.example{extra}}}
"""
NOW = "2026-06-10T12:00:00Z"


def env_project(tmp: Path, *, runnable: bool = False, ca: str = "pki/id-ca.pem", key: str = "pki/id-ca.key",
                extra: str = "") -> dict[str, object]:
    make_project(tmp, runnable=runnable)
    pki = tmp / "pki"
    id_cert, _, id_ca_key, id_ca = make_ca(pki, "id-ca")
    _, _, corp_key, corp_cert = make_ca(pki, "corp-root")
    distro_cert, _, _, _ = make_ca(pki, "distro-root")
    certs = tmp / "bases/os-1/etc/ssl/certs"
    certs.mkdir(parents=True)
    (certs / "ca-certificates.crt").write_bytes(distro_cert.read_bytes())
    (tmp / "files").mkdir()
    (tmp / "files/prod.yaml").write_text("greeting: hello prod\n")
    (tmp / "apm/opt/apm").mkdir(parents=True)
    (tmp / "apm/opt/apm/agent.sh").write_text("#!/bin/sh\necho apm\n")
    recipe = tmp / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace(
        "output: {layout: out}\n", ENVIRONMENTS.format(ca=ca, key=key, extra=extra) + "output: {layout: out}\n"))
    return {"id_ca": id_ca, "id_ca_key": id_ca_key, "id_cert": id_cert, "corp_key": corp_key,
            "corp_cert": corp_cert, "distro": distro_cert}


def build(tmp: Path, *args: str, check: bool = True, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return regfp("build", str(tmp / "recipe.yaml"), "--json", "--now", NOW, *args, check=check, env=env)


def env_image(layout: Path, label: str):  # type: ignore[no-untyped-def]
    store = LayoutStore.open(layout)
    return read_image(store, store.resolve(f"{label}/app/hello:live"))


def test_environment_image_contents(tmp_path: Path, tool_env: dict[str, str]) -> None:
    pki = env_project(tmp_path)
    result = json.loads(build(tmp_path).stdout)
    envs = {i["name"] for i in result["images"] if i["stage"] == "environment"}
    assert envs == {"us-east.prod/app/hello:live", "us-east.prod/app/hello:r1", "eu-west.dev/app/hello:live",
                    "eu-west.dev/app/hello:r1"}
    image = env_image(tmp_path / "out", "us-east.prod")
    env = image.config.env_map
    assert env["LOG_LEVEL"] == "info" and env["PORT"] == "8080" and env["PATH"] == "/app/bin:/usr/bin:/bin"
    assert image.config.labels["dev.regfp.environment"] == "prod"
    assert image.annotations["dev.regfp.contains-secret"] == "true"
    bundle = tmp_path / "bundle"
    subprocess.run([need("umoci"), "unpack", "--image", f"{tmp_path / 'out'}:us-east.prod/app/hello:live",
                    str(bundle)], check=True, capture_output=True, env=tool_env)
    root = bundle / "rootfs"
    # The CA bundle: the distribution's certificate plus the added root, and it really verifies.
    ca_bundle = (root / "etc/ssl/certs/ca-certificates.crt").read_bytes()
    assert pki["distro"].read_bytes().strip() in ca_bundle  # type: ignore[union-attr]
    leaf, _ = make_leaf(tmp_path, "service", pki["corp_key"], pki["corp_cert"])  # type: ignore[arg-type]
    openssl = need("openssl")
    ok = subprocess.run([openssl, "verify", "-CAfile", str(root / "etc/ssl/certs/ca-certificates.crt"), str(leaf)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    only_distro = subprocess.run([openssl, "verify", "-CAfile", str(pki["distro"]), str(leaf)], capture_output=True)
    assert only_distro.returncode != 0
    cfg = root / "etc/hello/config.yaml"
    assert cfg.read_text() == "greeting: hello prod\n"
    assert oct(cfg.stat().st_mode & 0o777) == "0o640" and (cfg.stat().st_uid, cfg.stat().st_gid) == (0, 1000)
    platform = json.loads((root / "etc/regfp/platform.json").read_text())
    sha = subprocess.run(["git", "-C", str(tmp_path / "src"), "rev-parse", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    assert platform == {"name": "hello", "location": "us-east", "environment": "prod", "release": "r1",
                        "revision": sha, "channel": "stable"}
    ident = root / "var/run/secrets/regfp/identity"
    key = ident / "tls.key"
    assert oct(key.stat().st_mode & 0o777) == "0o400" and key.stat().st_uid == 0  # the image user is root
    assert (root / "opt/apm/agent.sh").exists()  # the polyfill's layer
    assert {"tls.key", "tls.crt", "ca.crt"} <= {p.name for p in ident.iterdir()}


def test_merged_environment_under_runc(tmp_path: Path, tool_env: dict[str, str]) -> None:
    env_project(tmp_path, runnable=True)
    build(tmp_path)
    run = run_image(tmp_path / "out", "us-east.prod/app/hello:live", tmp_path / "bundle", tool_env,
                    ["/bin/sh", "-c", "cat /etc/regfp/platform.json; echo; env"])
    assert run.returncode == 0, run.stderr
    assert '"environment":"prod"' in run.stdout and '"location":"us-east"' in run.stdout
    assert "LOG_LEVEL=info" in run.stdout and "PORT=8080" in run.stdout and "GREETING=hi" in run.stdout


def _identity(layout: Path, label: str, tmp: Path) -> tuple[Path, Path]:
    image = env_image(layout, label)
    out = []
    for name in ("tls.crt", "tls.key"):
        found = read_file(image, f"var/run/secrets/regfp/identity/{name}")
        assert found is not None
        path = tmp / f"{label}-{name}"
        path.write_bytes(found.data)
        out.append(path)
    return out[0], out[1]


def test_mtls_with_the_issued_identities(tmp_path: Path) -> None:
    pki = env_project(tmp_path)
    build(tmp_path, "--now", "2026-11-20T00:00:00Z")
    build(tmp_path, "--out", str(tmp_path / "old"), "--now", "2020-01-05T00:00:00Z")
    prod = _identity(tmp_path / "out", "us-east.prod", tmp_path)
    dev = _identity(tmp_path / "out", "eu-west.dev", tmp_path)
    expired = _identity(tmp_path / "old", "us-east.prod", tmp_path / "old")
    server_cert, server_key = make_leaf(tmp_path, "server", pki["id_ca_key"], pki["id_ca"], ip="127.0.0.1")  # type: ignore[arg-type]
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server_cert, server_key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(pki["id_cert"])  # type: ignore[arg-type]
    wanted = ("URI", "spiffe://test.example/us-east/prod/hello")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(3):
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    sans = tls.getpeercert().get("subjectAltName", ())  # type: ignore[union-attr]
                    tls.sendall(b"welcome" if wanted in sans else b"denied")
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def client(cert: Path, key: Path) -> bytes:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(pki["id_cert"])  # type: ignore[arg-type]
        ctx.load_cert_chain(cert, key)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.recv(16)

    assert client(*prod) == b"welcome"
    assert client(*dev) == b"denied"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        assert client(*expired) == b""  # the server refuses the handshake: the certificate has expired
    thread.join(timeout=10)
    listener.close()


def test_identity_is_deterministic_and_reissued_per_slot(tmp_path: Path) -> None:
    """Validity windows come from the clock alone: time is cut into slots of two thirds of the TTL (20
    days for 30d; the slot of 2026-06-10 runs from 2026-05-27 to 2026-06-16), so any time in a slot gives
    the same certificate, and a new slot re-issues it."""
    env_project(tmp_path)
    first = json.loads(build(tmp_path, "--now", "2026-06-10T12:00:00Z").stdout)
    again = json.loads(build(tmp_path, "--out", str(tmp_path / "other"), "--now", "2026-06-11T00:00:00Z").stdout)

    def digests(report: dict[str, list[dict[str, str]]]) -> dict[str, str]:  # the ledger records cut times
        return {i["name"]: i["digest"] for i in report["images"] if not i["name"].endswith(":ledger")}

    assert digests(again) == digests(first)  # same window, same bytes
    image = env_image(tmp_path / "out", "us-east.prod")
    assert image.annotations["dev.regfp.identity-not-before"] == "2026-05-27T00:00:00Z"
    soon = json.loads(build(tmp_path, "--now", "2026-06-15T23:00:00Z").stdout)
    assert all(i["cached"] for i in soon["images"])
    late = json.loads(build(tmp_path, "--now", "2026-06-16T00:00:00Z").stdout)
    moved = {i["name"] for i in late["images"] if not i["cached"]}
    assert moved == {"us-east.prod/app/hello:live", "us-east.prod/app/hello:r1", "eu-west.dev/app/hello:live",
                     "eu-west.dev/app/hello:r1"}
    image = env_image(tmp_path / "out", "us-east.prod")
    assert image.annotations["dev.regfp.identity-not-after"] == "2026-07-16T00:00:00Z"


def test_verify_with_ca(tmp_path: Path) -> None:
    pki = env_project(tmp_path)
    build(tmp_path)
    ref = f"oci:{tmp_path / 'out'}:us-east.prod/app/hello:live"
    ok = regfp("verify", ref, "--ca", str(pki["id_cert"]), "--now", NOW)
    assert "identity spiffe://test.example/us-east/prod/hello" in ok.stdout
    wrong = regfp("verify", ref, "--ca", str(tmp_path / "pki/corp-root.pem"), "--now", NOW, check=False)
    assert wrong.returncode == 1 and "not issued by the given CA" in wrong.stderr
    late = regfp("verify", ref, "--ca", str(pki["id_cert"]), "--now", "2027-06-01T00:00:00Z", check=False)
    assert late.returncode == 1 and "not valid at 2027-06-01" in late.stderr
    plain = regfp("verify", f"oci:{tmp_path / 'out'}:build/src:"
                  + subprocess.run(["git", "-C", str(tmp_path / "src"), "rev-parse", "HEAD"], capture_output=True,
                                   text=True).stdout.strip(), "--ca", str(pki["id_cert"]), check=False)
    assert plain.returncode == 1 and "carries no identity" in plain.stderr


def test_no_private_key_material_anywhere(tmp_path: Path) -> None:
    pki = env_project(tmp_path)
    outputs = []
    proc = build(tmp_path)
    outputs += [proc.stdout, proc.stderr]
    for label in ("us-east.prod", "eu-west.dev"):
        shown = regfp("inspect", f"oci:{tmp_path / 'out'}:{label}/app/hello:live", "--json")
        outputs += [shown.stdout, shown.stderr]
    plan = regfp("plan", str(tmp_path / "recipe.yaml"), "--json")
    outputs += [plan.stdout, plan.stderr]
    _, leaf_key = _identity(tmp_path / "out", "us-east.prod", tmp_path)
    secrets = [b"PRIVATE KEY", *(line for line in (tmp_path / "pki/id-ca.key").read_bytes().splitlines()[1:-1]),
               *(line for line in leaf_key.read_bytes().splitlines()[1:-1])]
    index = (tmp_path / "out/index.json").read_bytes()
    blobs = tmp_path / "out/blobs/sha256"
    small = [p.read_bytes() for p in blobs.iterdir() if p.stat().st_size < 8192 and p.read_bytes()[:1] == b"{"]
    for text in [*(o.encode() for o in outputs), index, *small]:
        for secret in secrets:
            assert secret not in text
    assert pki  # the fixture built real keys


@pytest.mark.parametrize("case", ["mismatched key", "expired CA", "wrong password", "missing password",
                                  "unreadable key", "non-PEM CA cert", "private key as CA cert"])
def test_bad_identity_input_writes_nothing(tmp_path: Path, case: str) -> None:
    ca, key, extra = {
        "mismatched key": ("pki/id-ca.pem", "pki/corp-root.key", ""),
        "expired CA": ("pki/old-ca.pem", "pki/old-ca.key", ""),
        "wrong password": ("pki/locked-ca.pem", "pki/locked-ca.key", ", keyPasswordEnv: CA_PASS"),
        "missing password": ("pki/locked-ca.pem", "pki/locked-ca.key", ", keyPasswordEnv: CA_PASS"),
        "unreadable key": ("pki/id-ca.pem", "pki/nope.key", ""),
        "non-PEM CA cert": ("pki/garbage.pem", "pki/id-ca.key", ""),
        "private key as CA cert": ("pki/id-ca.key", "pki/id-ca.key", ""),
    }[case]
    env_project(tmp_path, ca=ca, key=key, extra=extra)
    pki = tmp_path / "pki"
    make_ca(pki, "old-ca", start=2015, end=2020)
    make_ca(pki, "locked-ca", password=b"correct horse")
    (pki / "garbage.pem").write_text("this is not a certificate\n")
    env = {k: v for k, v in os.environ.items() if k != "CA_PASS"}
    if case == "wrong password":
        env["CA_PASS"] = "battery staple"
    proc = build(tmp_path, check=False, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{tmp_path / 'recipe.yaml'}:" in proc.stderr and "Traceback" not in proc.stderr
    assert "correct horse" not in proc.stderr + proc.stdout and "battery staple" not in proc.stderr + proc.stdout
    assert not (tmp_path / "out").exists()


def test_good_encrypted_key_with_password_from_environment(tmp_path: Path) -> None:
    env_project(tmp_path, ca="pki/locked-ca.pem", key="pki/locked-ca.key", extra=", keyPasswordEnv: CA_PASS")
    make_ca(tmp_path / "pki", "locked-ca", password=b"correct horse")
    proc = build(tmp_path, env={**os.environ, "CA_PASS": "correct horse"})
    assert "correct horse" not in proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["images"]


def test_ca_certs_must_be_certificates(tmp_path: Path) -> None:
    env_project(tmp_path)
    (tmp_path / "pki/corp-root.pem").write_bytes((tmp_path / "pki/id-ca.key").read_bytes())
    proc = build(tmp_path, check=False)
    assert proc.returncode == 2 and "only CERTIFICATE blocks" in proc.stderr
    key_body = (tmp_path / "pki/id-ca.key").read_text().splitlines()[1]
    assert key_body not in proc.stderr + proc.stdout
    assert not (tmp_path / "out").exists()


def test_polyfill_env_rules() -> None:
    merged = merge_polyfill_env({"PATH": "/usr/bin:/bin", "JAVA_TOOL_OPTIONS": "-Xmx1g", "MODE": "app"},
                                {"PATH": "/opt/apm/bin:/usr/bin", "JAVA_TOOL_OPTIONS": "-javaagent:/apm.jar",
                                 "MODE": "agent", "APM_HOME": "/opt/apm"})
    assert merged == {"PATH": "/usr/bin:/bin:/opt/apm/bin", "JAVA_TOOL_OPTIONS": "-Xmx1g -javaagent:/apm.jar",
                      "MODE": "app", "APM_HOME": "/opt/apm"}
