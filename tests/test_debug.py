"""Ad-hoc debug images: tools, root, dropbear with the developer's key, a dev identity; never promoted."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BUSYBOX, need, regfp, regfp_json
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from pki import make_ca
from project import make_project

CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
        "CAP_AUDIT_WRITE"]


def make_tools(root: Path) -> Path:
    """busybox-static and Debian's dropbear with the libraries ldd lists, as a plain directory."""
    dropbear = need("dropbear") if shutil.which("dropbear") else "/usr/sbin/dropbear"
    if not Path(dropbear).exists():
        pytest.skip("dropbear not installed") if not os.environ.get("REGFP_REQUIRE_TOOLS") else pytest.fail(
            "dropbear-bin is required")
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for applet in ("ps", "id", "which", "cat", "ls", "sleep", "netstat", "sh"):
        os.symlink("busybox", root / "bin" / applet)
    (root / "usr/sbin").mkdir(parents=True)
    shutil.copy2(dropbear, root / "usr/sbin/dropbear")
    libs = subprocess.run(["ldd", dropbear], capture_output=True, text=True, check=True).stdout
    for path in re.findall(r"(/\S+\.so[.\d]*)", libs):
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), target)
    return root


DEBUG = """\
rollouts: {{channel: stable, keep: 3}}
environments:
  - {{location: us-east, environment: prod, identity: {{ca: pki/prod-ca.pem, key: pki/prod-ca.key,
      trustDomain: prod.example}}}}
  - {{location: eu-west, environment: dev, identity: {{ca: pki/dev-ca.pem, key: pki/dev-ca.key,
      trustDomain: dev.example}}}}
debug: {{tools: "dir:tools", environment: dev, ttl: 8h}}
"""


def debug_project(tmp: Path) -> None:
    make_project(tmp, runnable=True)
    make_ca(tmp / "pki", "prod-ca")
    make_ca(tmp / "pki", "dev-ca")
    make_tools(tmp / "tools")
    recipe = tmp / "recipe.yaml"
    text = recipe.read_text().replace("entrypoint: [/bin/sh, /app/run.sh]",
                                      'entrypoint: [/bin/sh, -c, "echo app-started; exec sleep 600"]')
    recipe.write_text(text.replace("output: {layout: out}\n", DEBUG.format() + "output: {layout: out}\n"))


def keypair(tmp: Path, name: str) -> tuple[Path, Path]:
    key = tmp / name
    subprocess.run([need("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key, Path(f"{key}.pub")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh(key: Path, port: int, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("ssh"), "-i", str(key), "-p", str(port), "-o", "BatchMode=yes",
                           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                           "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes", "root@127.0.0.1", command],
                          capture_output=True, text=True, timeout=30)


def test_debug_image_end_to_end(tmp_path: Path, tool_env: dict[str, str]) -> None:
    debug_project(tmp_path)
    key, pub = keypair(tmp_path, "dev")
    other, _ = keypair(tmp_path, "stranger")
    port = free_port()
    result = regfp_json("debug-image", str(tmp_path / "recipe.yaml"), "--ssh-key", str(pub), "--port", str(port))
    name = result["name"]
    sha = subprocess.run(["git", "-C", str(tmp_path / "src"), "rev-parse", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    assert name == f"ad-hoc/src/{sha}:stable"
    assert result["identity"] == "spiffe://dev.example/eu-west/dev/hello"
    shown = regfp_json("inspect", f"oci:{tmp_path / 'out'}:{name}")
    ann = shown["annotations"]
    assert ann["dev.regfp.debug"] == "true" and ann["dev.regfp.parent"] == result["parent"]
    assert ann["dev.regfp.expires"] == result["expires"]
    parent = regfp_json("inspect", f"oci:{tmp_path / 'out'}:patch/src/{sha}:stable")
    assert parent["digest"] == result["parent"]  # built on the patched release, not an environment image

    bundle = tmp_path / "bundle"
    subprocess.run([need("umoci"), "unpack", "--image", f"{tmp_path / 'out'}:{name}", str(bundle)], check=True,
                   capture_output=True, env=tool_env)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
    config["process"]["capabilities"] = {k: CAPS for k in ("bounding", "effective", "permitted")}
    (bundle / "config.json").write_text(json.dumps(config))
    cid = f"regfp-debug-{os.getpid()}"
    log = (tmp_path / "container.log").open("w")
    container = subprocess.Popen([need("runc"), "run", cid], cwd=bundle, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, (tmp_path / "container.log").read_text()
            time.sleep(0.1)
        good = ssh(key, port, "id -u; which ps; ps")
        assert good.returncode == 0, good.stderr
        lines = good.stdout.splitlines()
        assert lines[0] == "0" and lines[1] == "/bin/ps"
        assert "sleep 600" in good.stdout  # the application is running next to sshd
        denied = ssh(other, port, "id -u")
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
    finally:
        subprocess.run(["runc", "kill", cid, "KILL"], capture_output=True)
        container.wait(timeout=30)
        subprocess.run(["runc", "delete", "-f", cid], capture_output=True)
        log.close()
    assert "app-started" in (tmp_path / "container.log").read_text()

    # The identity is the dev environment's: it verifies against dev's CA, not prod's.
    ref = f"oci:{tmp_path / 'out'}:{name}"
    assert regfp("verify", ref, "--ca", str(tmp_path / "pki/dev-ca.pem")).returncode == 0
    prod = regfp("verify", ref, "--ca", str(tmp_path / "pki/prod-ca.pem"), check=False)
    assert prod.returncode == 1 and "not issued by the given CA" in prod.stderr


def test_debug_images_are_never_promoted_and_expire(tmp_path: Path) -> None:
    debug_project(tmp_path)
    _, pub = keypair(tmp_path, "dev")
    result = regfp_json("debug-image", str(tmp_path / "recipe.yaml"), "--ssh-key", str(pub),
                        "--now", "2026-06-01T00:00:00Z", "--ttl", "2h")
    src = f"oci:{tmp_path / 'out'}:{result['name']}"
    refused = regfp("copy", src, f"oci:{tmp_path / 'prod'}:app/hello:1", check=False)
    assert refused.returncode == 2 and "debug image" in refused.stderr
    assert not (tmp_path / "prod").exists()
    assert regfp("copy", src, f"oci:{tmp_path / 'devlayout'}:ad-hoc/hello:1").returncode == 0
    early = regfp_json("gc", str(tmp_path / "out"), "--expired", "--now", "2026-06-01T01:00:00Z")
    assert early["expiredNames"] == []
    late = regfp_json("gc", str(tmp_path / "out"), "--expired", "--now", "2026-06-01T03:00:00Z")
    assert late["expiredNames"] == [result["name"]] and late["removed"]
    names = json.loads((tmp_path / "out/index.json").read_text())["manifests"]
    assert not any(m["annotations"]["org.opencontainers.image.ref.name"].startswith("ad-hoc/") for m in names)
    assert regfp("verify", str(tmp_path / "out")).returncode == 0


def _write_key(path: Path, key: object, private: bool = False) -> Path:
    if private:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,  # type: ignore[attr-defined]
                                 serialization.NoEncryption())
    else:
        data = key.public_key().public_bytes(serialization.Encoding.OpenSSH,  # type: ignore[attr-defined]
                                             serialization.PublicFormat.OpenSSH)
    path.write_bytes(data)
    return path


@pytest.mark.filterwarnings("ignore:SSH DSA key support is deprecated")  # the test makes one on purpose
@pytest.mark.parametrize("case", ["private key", "DSA key", "RSA 1024", "garbage", "two keys"])
def test_bad_ssh_keys_are_refused(tmp_path: Path, case: str) -> None:
    debug_project(tmp_path)
    key_file = tmp_path / "key.pub"
    secret_line = ""
    if case == "private key":
        priv, _ = keypair(tmp_path, "mine")
        shutil.copy(priv, key_file)
        secret_line = priv.read_text().splitlines()[1]
    elif case == "DSA key":
        _write_key(key_file, dsa.generate_private_key(1024))
    elif case == "RSA 1024":
        _write_key(key_file, rsa.generate_private_key(65537, 1024))
    elif case == "garbage":
        key_file.write_text("ssh-ed25519 not-base64!! me@host\n")
    else:
        _, a = keypair(tmp_path, "a")
        _, b = keypair(tmp_path, "b")
        key_file.write_text(a.read_text() + b.read_text())
    proc = regfp("debug-image", str(tmp_path / "recipe.yaml"), "--ssh-key", str(key_file), check=False)
    assert proc.returncode == 2, proc.stderr
    expected = {"private key": "this is a private key", "DSA key": "DSA keys are refused",
                "RSA 1024": "too short", "garbage": "not an OpenSSH public key", "two keys": "exactly one"}[case]
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    if secret_line:
        assert secret_line not in proc.stderr + proc.stdout
    assert not (tmp_path / "out").exists()
