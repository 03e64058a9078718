"""Pytest fixtures running the real distribution registry on 127.0.0.1: a shared plain-HTTP one, fresh
ones on demand, htpasswd + TLS, token auth, and a fault-injecting proxy. Register them in a test module
with ``pytest_plugins = ["registry_fixtures"]``; the helpers themselves are in ``registry_support``.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import need
from registry_support import (
    POLICY,
    USERS,
    FaultProxy,
    Registry,
    TlsRegistry,
    TokenRegistry,
    TokenServer,
    self_signed,
)


# -- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP registry shared by the session: use a unique repository per test."""
    reg = Registry(tmp_path_factory.mktemp("registry")).start()
    yield reg
    reg.stop()


@pytest.fixture
def make_registry(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    """A factory of fresh registries (for tests where a shared one could hide a missing blob)."""
    started: list[Registry] = []

    def make(**kw: Any) -> Registry:
        reg = Registry(tmp_path / f"registry-{len(started)}", **kw).start()
        started.append(reg)
        return reg

    yield make
    for reg in started:
        reg.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRegistry]:
    """htpasswd (bcrypt, made by the real ``htpasswd``) over TLS with a self-signed certificate."""
    root = tmp_path_factory.mktemp("tls-registry")
    cert, key = self_signed(root / "tls")
    user, password = "ci-user", f"pw-{uuid.uuid4().hex}"
    line = subprocess.run([need("htpasswd"), "-Bbn", user, password], capture_output=True, text=True,
                          check=True).stdout.strip()
    (root / "htpasswd").write_text(line + "\n")
    cert_dir = root / "certs"
    cert_dir.mkdir()
    shutil.copy(cert, cert_dir / "ca.crt")
    reg = Registry(root / "reg", tls=(cert, key),
                   auth={"htpasswd": {"realm": "regfp-test", "path": str(root / "htpasswd")}}).start()
    yield TlsRegistry(reg, cert, cert_dir, user, password)
    reg.stop()


@pytest.fixture(scope="session")
def _token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    root = tmp_path_factory.mktemp("token-registry")
    tokens = TokenServer(root / "tokens", dict(USERS), {k: list(v) for k, v in POLICY.items()}).start()
    reg = Registry(root / "reg", auth=tokens.registry_auth()).start()
    yield TokenRegistry(reg, tokens)
    reg.stop()
    tokens.stop()


@pytest.fixture
def token_registry(_token_registry: TokenRegistry) -> Iterator[TokenRegistry]:
    """The session's token-auth registry, with the token server's knobs reset for each test."""
    t = _token_registry.tokens
    t.requests.clear()
    t.lifetime, t.claimed_lifetime = 300.0, 300.0
    t.policy = {k: list(v) for k, v in POLICY.items()}
    t.refresh_tokens.clear()
    yield _token_registry


@pytest.fixture
def fault_proxy(registry: Registry) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session registry."""
    proxy = FaultProxy(registry.host)
    yield proxy
    proxy.stop()


