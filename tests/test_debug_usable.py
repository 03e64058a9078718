"""Debug images that stay usable: sshd outlives the app, a clear message when capabilities are missing,
a host key that is the same for the same debug target, and names that do not overwrite each other."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conftest import ROOT, need, regfp, regfp_json
from test_debug import CAPS, debug_project, free_port, keypair

# What umoci's generated bundle grants, and the one capability README says to add for the debug sshd.
UMOCI_DEFAULT = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
DOCUMENTED = [*UMOCI_DEFAULT, "CAP_SETGID"]


def set_app(tmp: Path, script: str) -> None:
    """The recipe's application becomes ``/bin/sh -c SCRIPT``."""
    recipe = tmp / "recipe.yaml"
    text = recipe.read_text()
    old = 'entrypoint: [/bin/sh, -c, "echo app-started; exec sleep 600"]'
    assert old in text
    recipe.write_text(text.replace(old, f"entrypoint: [/bin/sh, -c, {json.dumps(script)}]"))


@dataclass
class Running:
    cid: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while needle not in self.text():
            assert self.process.poll() is None or needle in self.text(), f"container ended:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {needle!r} after {seconds} s:\n{self.text()}"
            time.sleep(0.1)

    def wait_for_port(self, port: int, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            assert self.process.poll() is None, f"container ended:\n{self.text()}"
            assert time.monotonic() < deadline, self.text()
            time.sleep(0.1)


@contextmanager
def run_debug(tmp: Path, name: str, env: dict[str, str], caps: list[str] | None) -> Iterator[Running]:
    """The debug image under runc on the host network; ``caps`` replaces the bundle's capabilities
    (None keeps umoci's default bundle as generated). The container is always killed and deleted."""
    bundle = tmp / f"bundle-{abs(hash(name)) % 10**8}"
    subprocess.run([need("umoci"), "unpack", "--image", f"{tmp / 'out'}:{name}", str(bundle)], check=True,
                   capture_output=True, env=env)
    config = json.loads((bundle / "config.json").read_text())
    assert sorted(config["process"]["capabilities"]["effective"]) == UMOCI_DEFAULT  # what "minimal" means
    config["process"]["terminal"] = False
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
    if caps is not None:
        config["process"]["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
    (bundle / "config.json").write_text(json.dumps(config))
    cid = f"regfp-usable-{os.getpid()}-{bundle.name}"
    log = tmp / f"{bundle.name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([need("runc"), "run", cid], cwd=bundle, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        yield Running(cid, process, log)
    finally:
        subprocess.run(["runc", "kill", cid, "KILL"], capture_output=True)
        try:
            process.wait(timeout=30)
        finally:
            subprocess.run(["runc", "delete", "-f", cid], capture_output=True)


def ssh_checked(tmp: Path, key: Path, port: int, known_hosts_line: str, command: str,
                *options: str) -> subprocess.CompletedProcess[str]:
    """ssh that trusts only the printed known_hosts line (a changed host key fails the login)."""
    known = tmp / "known_hosts"
    known.write_text(known_hosts_line + "\n")
    return subprocess.run([need("ssh"), "-i", str(key), "-p", str(port), "-o", "BatchMode=yes",
                           "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
                           "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
                           "-o", "IdentitiesOnly=yes", *options, "root@127.0.0.1", command],
                          capture_output=True, text=True, timeout=30)


def test_sshd_outlives_an_application_that_exits_at_once(tmp_path: Path, tool_env: dict[str, str]) -> None:
    debug_project(tmp_path)
    set_app(tmp_path, "echo app-started; exit 3")
    key, pub = keypair(tmp_path, "dev")
    port = free_port()
    made = regfp_json("debug-image", str(tmp_path / "recipe.yaml"), "--ssh-key", str(pub), "--port", str(port))
    assert made["knownHosts"] == f"[127.0.0.1]:{port} {made['hostKey']}"
    with run_debug(tmp_path, made["name"], tool_env, CAPS) as box:
        box.wait_for("the application exited with status 3")
        time.sleep(3)  # the old entrypoint exec'd the app: the container was gone by now
        assert box.process.poll() is None, box.text()
        box.wait_for_port(port)
        login = ssh_checked(tmp_path, key, port, made["knownHosts"], "echo ok; id -u")
        assert login.returncode == 0, login.stderr + box.text()
        assert login.stdout.split() == ["ok", "0"]
        # SIGTERM to PID 1 still stops the container, with the app's status.
        subprocess.run([need("runc"), "kill", box.cid, "TERM"], check=True, capture_output=True)
        assert box.process.wait(timeout=20) == 3
    assert "app-started" in box.text()


def test_sigterm_is_forwarded_to_the_running_application(tmp_path: Path, tool_env: dict[str, str]) -> None:
    debug_project(tmp_path)
    set_app(tmp_path, "trap 'echo app-got-term; exit 7' TERM; echo app-started; while :; do sleep 0.2; done")
    _, pub = keypair(tmp_path, "dev")
    port = free_port()
    made = regfp_json("debug-image", str(tmp_path / "recipe.yaml"), "--ssh-key", str(pub), "--port", str(port))
    with run_debug(tmp_path, made["name"], tool_env, CAPS) as box:
        box.wait_for("app-started")
        box.wait_for_port(port)
        subprocess.run([need("runc"), "kill", box.cid, "TERM"], check=True, capture_output=True)
        assert box.process.wait(timeout=20) == 7
    assert "app-got-term" in box.text()
    assert "sshd stays up" not in box.text()  # a stop is not a crash: nothing is kept up


def test_sshd_only_image_runs_and_stops(tmp_path: Path, tool_env: dict[str, str]) -> None:
    debug_project(tmp_path)
    key, pub = keypair(tmp_path, "dev")
    port = free_port()
    made = regfp_json("debug-image", str(tmp_path / "recipe.yaml"), "--ssh-key", str(pub), "--port", str(port),
                      "--sshd-only")
    with run_debug(tmp_path, made["name"], tool_env, DOCUMENTED) as box:
        box.wait_for_port(port)
        login = ssh_checked(tmp_path, key, port, made["knownHosts"], "ps")
        assert login.returncode == 0, login.stderr + box.text()
        assert "app-started" not in box.text()
        subprocess.run([need("runc"), "kill", box.cid, "TERM"], check=True, capture_output=True)
        box.process.wait(timeout=20)


def test_minimal_bundle_names_the_missing_capabilities(tmp_path: Path, tool_env: dict[str, str]) -> None:
    debug_project(tmp_path)
    _, pub = keypair(tmp_path, "dev")
    made = regfp_json("debug-image", str(tmp_path / "recipe.yaml"), "--ssh-key", str(pub),
                      "--port", str(free_port()))
    with run_debug(tmp_path, made["name"], tool_env, None) as box:
        code = box.process.wait(timeout=20)  # the old entrypoint ran the app (sleep 600) with a useless sshd
    assert code == 1
    log = box.text()
    assert "cannot start sshd: the container lacks CAP_SETGID" in log and "--cap-add SETGID" in log
    assert "app-started" not in log


def test_documented_capabilities_are_enough(tmp_path: Path, tool_env: dict[str, str]) -> None:
    debug_project(tmp_path)
    set_app(tmp_path, "echo app-started; exit 0")
    key, pub = keypair(tmp_path, "dev")
    port = free_port()
    made = regfp_json("debug-image", str(tmp_path / "recipe.yaml"), "--ssh-key", str(pub), "--port", str(port))
    with run_debug(tmp_path, made["name"], tool_env, DOCUMENTED) as box:
        box.wait_for("the application exited with status 0")
        box.wait_for_port(port)
        login = ssh_checked(tmp_path, key, port, made["knownHosts"], "echo ok")
        assert login.returncode == 0 and login.stdout == "ok\n", login.stderr + box.text()
        # An interactive session (a pty) needs nothing more.
        tty = ssh_checked(tmp_path, key, port, made["knownHosts"], "tty", "-tt")
        assert tty.returncode == 0 and "/dev/pts/" in tty.stdout, tty.stderr + box.text()


def _sha(tmp: Path) -> str:
    return subprocess.run(["git", "-C", str(tmp / "src"), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_host_key_is_the_same_for_the_same_target_and_distinct_otherwise(tmp_path: Path) -> None:
    debug_project(tmp_path)
    _, pub = keypair(tmp_path, "dev")
    _, other = keypair(tmp_path, "colleague")
    recipe = str(tmp_path / "recipe.yaml")
    first = regfp_json("debug-image", recipe, "--ssh-key", str(pub), "--now", "2026-06-01T00:00:00Z")
    again = regfp_json("debug-image", recipe, "--ssh-key", str(pub), "--now", "2026-06-02T00:00:00Z",
                       "--port", "2200")
    assert again["digest"] != first["digest"]  # a new expiry: a new image, for the same target
    assert again["hostKey"] == first["hostKey"]
    assert again["knownHosts"] == f"[127.0.0.1]:2200 {first['hostKey']}"
    colleague = regfp_json("debug-image", recipe, "--ssh-key", str(other), "--now", "2026-06-01T00:00:00Z")
    assert colleague["hostKey"] != first["hostKey"]
    current = regfp_json("debug-image", recipe, "--ssh-key", str(pub), "--channel", "current",
                         "--now", "2026-06-01T00:00:00Z")
    assert current["parent"] != first["parent"] and current["hostKey"] != first["hostKey"]
    # The text output carries the same line, ready for ~/.ssh/known_hosts; the private key never shows.
    text = regfp("debug-image", recipe, "--ssh-key", str(pub), "--now", "2026-06-01T00:00:00Z").stdout
    assert f"[127.0.0.1]:2222 {first['hostKey']}" in text
    assert "PRIVATE" not in text and "seed" not in text


def test_host_key_seed_is_private_and_per_user(tmp_path: Path) -> None:
    debug_project(tmp_path)
    _, pub = keypair(tmp_path, "dev")
    recipe = str(tmp_path / "recipe.yaml")
    env_a = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "a"))
    env_b = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "b"))
    a = json.loads(regfp("debug-image", recipe, "--ssh-key", str(pub), "--json", env=env_a).stdout)
    seed = tmp_path / "a/regfp/debug-host-seed"
    assert seed.stat().st_mode & 0o777 == 0o600 and seed.stat().st_size == 32
    assert (tmp_path / "a/regfp").stat().st_mode & 0o077 == 0
    b = json.loads(regfp("debug-image", recipe, "--ssh-key", str(pub), "--json", env=env_b).stdout)
    assert a["hostKey"] != b["hostKey"]  # public inputs alone do not give the private key
    seed.chmod(0o644)
    refused = regfp("debug-image", recipe, "--ssh-key", str(pub), env=env_a, check=False)
    assert refused.returncode == 2 and "readable by others" in refused.stderr and "Traceback" not in refused.stderr


def test_sshd_only_has_its_own_name(tmp_path: Path) -> None:
    debug_project(tmp_path)
    _, pub = keypair(tmp_path, "dev")
    recipe = str(tmp_path / "recipe.yaml")
    full = regfp_json("debug-image", recipe, "--ssh-key", str(pub))
    sshd = regfp_json("debug-image", recipe, "--ssh-key", str(pub), "--sshd-only")
    sha = _sha(tmp_path)
    assert full["name"] == f"ad-hoc/src/{sha}:stable"
    assert sshd["name"] == f"ad-hoc/src/{sha}:stable-sshd"
    layout = tmp_path / "out"
    assert regfp_json("inspect", f"oci:{layout}:{full['name']}")["digest"] == full["digest"]
    assert regfp_json("inspect", f"oci:{layout}:{sshd['name']}")["digest"] == sshd["digest"]
    assert full["digest"] != sshd["digest"]


def test_missing_tools_image_names_the_key_and_how_to_make_it(tmp_path: Path) -> None:
    debug_project(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace('tools: "dir:tools"', 'tools: "oci:out:tools/debug:1"'))
    _, pub = keypair(tmp_path, "dev")
    proc = regfp("debug-image", str(recipe), "--ssh-key", str(pub), check=False)
    assert proc.returncode == 2, proc.stderr
    line = next(i for i, t in enumerate(recipe.read_text().splitlines(), 1) if t.startswith("debug:"))
    assert f"{recipe}:{line}:" in proc.stderr and "debug.tools" in proc.stderr
    assert "Traceback" not in proc.stderr
    hinted = re.search(r"`bash (testdata/debug-tools/make-tools.sh [^`]+)`", proc.stderr)
    assert hinted is not None, proc.stderr
    assert hinted.group(1) == f"testdata/debug-tools/make-tools.sh {tmp_path / 'out'} tools/debug:1"

    # The hinted command, as a user runs it from regfp's checkout, makes a tools image the recipe accepts.
    if not Path("/usr/sbin/dropbear").exists():
        need("dropbear")  # skips (or fails under REGFP_REQUIRE_TOOLS) without dropbear-bin
    need("busybox")
    shim = tmp_path / "bin/regfp"
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m regctl_fp \"$@\"\n")
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{shim.parent}:{os.environ['PATH']}")
    subprocess.run(["bash", *hinted.group(1).split()], cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=120)
    made = regfp_json("debug-image", str(recipe), "--ssh-key", str(pub))
    assert made["name"].startswith("ad-hoc/src/")


def test_demo_set_up_makes_the_demo_tools_image() -> None:
    demo = (ROOT / "recipes/app.yaml").read_text()
    assert 'tools: "oci:../out:tools/debug:1"' in demo  # what make-tools.sh makes by default, in out/
    setup = (ROOT / ".ci/setup").read_text().splitlines()
    assert "bash testdata/debug-tools/make-tools.sh out >/dev/null" in setup
