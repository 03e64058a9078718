"""Registry authentication against the real registry: Bearer tokens from our token server (per-repository
scopes, expiry in the middle of a push, refresh by the clock, a mount needing two scopes, OAuth2 refresh
tokens), htpasswd Basic auth over TLS, ``regfp login``; and where credentials come from, in docker's order.
No secret may appear in any output."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import time
import uuid
from pathlib import Path
from typing import BinaryIO

import pytest
from conftest import need, regfp, regfp_json
from registry_support import USERS, FaultProxy, TlsRegistry, TokenRegistry, blobs_of, make_image

from regctl_fp.errors import InvalidInput, RegfpError, RegistryError, redact_url
from regctl_fp.oci.descriptor import Descriptor
from regctl_fp.stores.auth import Challenge, Credential, covers, merge_scopes, parse_challenges
from regctl_fp.stores.credentials import find_credential, store_login
from regctl_fp.stores.layout import LayoutStore
from regctl_fp.stores.registry import RegistryStore
from regctl_fp.stores.transfer import copy_descriptor
from regctl_fp.stores.transport import ClientOptions, RegistryClient, RetryPolicy, Timing

pytest_plugins = ["registry_fixtures"]

ALICE = Credential(username="alice", password=USERS["alice"])
BOB = Credential(username="bob", password=USERS["bob"])
FAST = RetryPolicy(attempts=3, base_delay=0.01)


def client(host: str, cred: Credential | None, **kw: object) -> RegistryClient:
    return RegistryClient(host, cred, ClientOptions(plain_http=True, retry=FAST, **kw))  # type: ignore[arg-type]


def image(tmp_path: Path, **kw: object) -> tuple[LayoutStore, Descriptor]:
    store = LayoutStore.open_or_create(tmp_path / f"src-{uuid.uuid4().hex[:6]}")
    return store, make_image(store, "app:1", **kw)


def push(c: RegistryClient, src: LayoutStore, desc: Descriptor, repository: str, *, jobs: int = 4) -> None:
    store = RegistryStore(c).repository(repository)
    store.set_names({f"{repository}:1": copy_descriptor(src, store, desc, jobs=jobs)})


def scopes_asked(tokens: TokenRegistry, user: str | None) -> list[set[str]]:
    return [set(r.scopes) for r in tokens.tokens.requests if r.user == user]


# -- pure parts -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("header", "want"), [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/a:pull"',
     [Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                           "scope": "repository:library/a:pull"})]),
    ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
    ('Bearer realm="r",error="insufficient_scope",scope="repository:a:pull,push repository:b:pull"',
     [Challenge("bearer", {"realm": "r", "error": "insufficient_scope",
                           "scope": "repository:a:pull,push repository:b:pull"})]),
    ('Basic realm="a, \\"quoted\\"", Bearer realm=x', [Challenge("basic", {"realm": 'a, "quoted"'}),
                                                       Challenge("bearer", {"realm": "x"})]),
])
def test_parse_challenges(header: str, want: list[Challenge]) -> None:
    assert parse_challenges([header]) == want


def test_scope_sets_merge_and_cover() -> None:
    merged = merge_scopes({"repository:a:pull"}, {"repository:a:push", "repository:b:pull"})
    assert merged == {"repository:a:pull,push", "repository:b:pull"}
    assert covers(merged, frozenset({"repository:a:push"}))
    assert not covers(frozenset({"repository:a:pull"}), frozenset({"repository:a:pull,push"}))
    assert not covers(merged, frozenset({"repository:c:pull"}))
    assert parse_challenges(['Bearer realm="r",scope="repository:a:pull repository:b:pull"'])[0].scopes == {
        "repository:a:pull", "repository:b:pull"}


def test_urls_in_errors_lose_credentials_and_secret_query_parameters() -> None:
    url = "https://u:p4ss@h:5000/v2/r/blobs/uploads/x?_state=SIGNED&digest=sha256:ab&X-Amz-Signature=s3cr3t"
    assert redact_url(url) == "https://h:5000/v2/r/blobs/uploads/x?digest=sha256:ab"
    err = RegistryError("PUT", url, 500, "UNKNOWN")
    assert "p4ss" not in str(err) and "SIGNED" not in str(err) and "s3cr3t" not in str(err)
    assert "p4ss" not in repr(Credential(username="u", password="p4ss"))


# -- where credentials come from ------------------------------------------------------------------------
def write_helper(bin_dir: Path, name: str, answers: dict[str, dict[str, str]], log: Path) -> None:
    """A real docker credential helper (the protocol is a program on PATH): answers ``get`` from a
    table, records what ``store`` receives."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(f"""#!/usr/bin/env python3
import json, sys
answers = {json.dumps(answers)}
data = sys.stdin.read().strip()
if sys.argv[1] == "get":
    if data not in answers:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps(answers[data]))
elif sys.argv[1] == "store":
    open({str(log)!r}, "a").write(data + "\\n")
""")
    script.chmod(0o755)


def test_credentials_follow_dockers_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bin_dir = tmp_path / "bin"
    log = tmp_path / "helper.log"
    write_helper(bin_dir, "regfptest", {"helped.example": {"Username": "h", "Secret": "from-helper"},
                                        "store.example": {"Username": "s", "Secret": "from-store"},
                                        "tok.example": {"Username": "<token>", "Secret": "refresh-1"}}, log)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    config = {"auths": {"https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:hubpw").decode()},
                        "https://plain.example/v1/": {"auth": base64.b64encode(b"p:plainpw").decode()},
                        "helped.example": {"auth": base64.b64encode(b"x:shadowed").decode()},
                        "id.example": {"identitytoken": "refresh-2"}},
              "credHelpers": {"helped.example": "regfptest"}}
    (home / ".docker").mkdir(parents=True)
    (home / ".docker/config.json").write_text(json.dumps(config))
    found = {h: find_credential(h, env, home) for h in ("registry-1.docker.io", "plain.example", "helped.example",
                                                        "id.example", "none.example")}
    assert (found["registry-1.docker.io"].username, found["registry-1.docker.io"].password) == ("hub", "hubpw")
    assert found["plain.example"].password == "plainpw"
    assert found["helped.example"].password == "from-helper"  # credHelpers beats auths
    assert found["id.example"].identity_token == "refresh-2" and not found["id.example"].password
    assert found["none.example"] is None
    # credsStore serves hosts without a credHelpers entry; "not found" there falls back to auths
    config["credsStore"] = "regfptest"
    (home / ".docker/config.json").write_text(json.dumps(config))
    assert find_credential("store.example", env, home).password == "from-store"
    assert find_credential("tok.example", env, home).identity_token == "refresh-1"
    assert find_credential("plain.example", env, home).password == "plainpw"
    # DOCKER_CONFIG moves the file; podman's auth file comes after it; explicit REGFP_* beat both
    podman = tmp_path / "auth.json"
    podman.write_text(json.dumps({"auths": {"pod.example": {"auth": base64.b64encode(b"pod:podpw").decode()}}}))
    env2 = {**env, "DOCKER_CONFIG": str(tmp_path / "empty"), "REGISTRY_AUTH_FILE": str(podman)}
    assert find_credential("pod.example", env2, home).password == "podpw"
    explicit = {**env2, "REGFP_USERNAME": "ci", "REGFP_PASSWORD": "cipw"}
    assert find_credential("pod.example", explicit, home).password == "cipw"
    assert find_credential("helped.example", {**env, "REGFP_USERNAME": "ci", "REGFP_PASSWORD": "cipw"},
                           home).password == "cipw"  # over a credential helper too
    assert find_credential("plain.example", {**explicit, "REGFP_REGISTRY": "ghcr.io"}, home) is None
    assert find_credential("pod.example", {**explicit, "REGFP_REGISTRY": "ghcr.io"}, home).password == "podpw"
    hub = find_credential("registry-1.docker.io", {**explicit, "REGFP_REGISTRY": "docker.io"}, home)
    assert hub.password == "cipw" and "auth.docker.io" in hub.hosts  # Docker Hub's token server is Hub's own
    # login goes to the configured store, as docker's does
    assert store_login("new.example", "u", "newpw", env, home) == "docker-credential-regfptest"
    assert json.loads(log.read_text()) == {"ServerURL": "new.example", "Username": "u", "Secret": "newpw"}


def test_a_broken_helper_is_named_without_secrets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker/config.json").write_text(json.dumps({"credHelpers": {"h.example": "absent"}}))
    with pytest.raises(RegfpError, match="docker-credential-absent not found"):
        find_credential("h.example", {"PATH": "/nonexistent"}, home)


@pytest.mark.parametrize(("config", "key"), [
    ({"credHelpers": ["h.example"]}, "credHelpers"),
    ({"credHelpers": {"h.example": 7}}, "credHelpers"),
    ({"credsStore": {"name": "x"}}, "credsStore"),
    ({"auths": "h.example"}, "auths"),
])
def test_a_config_json_with_a_wrong_type_is_refused_naming_the_key(tmp_path: Path, config: dict[str, object],
                                                                    key: str) -> None:
    """docker refuses such a file too; regfp says which key is wrong (exit 2), and login leaves the file alone
    rather than rewriting what it cannot read."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps(config))
    env = {"DOCKER_CONFIG": str(cfg), "PATH": "/nonexistent"}
    if key != "auths":  # lookups skip an auths that is not an object, as they skip any unusable entry
        with pytest.raises(InvalidInput, match=f"config.json: '{key}' must"):
            find_credential("h.example", env, tmp_path)
    with pytest.raises(InvalidInput, match=f"config.json: '{key}' must"):
        store_login("h.example", "me", "pw", env, tmp_path)
    assert json.loads((cfg / "config.json").read_text()) == config


def test_login_file_is_private_and_keeps_other_entries(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"auths": {"other.example": {"auth": "eDp5"}}, "psFormat": "x"}))
    where = store_login("registry-1.docker.io", "me", "pw", {"DOCKER_CONFIG": str(cfg)}, tmp_path)
    doc = json.loads((cfg / "config.json").read_text())
    assert where == str(cfg / "config.json") and doc["psFormat"] == "x" and "other.example" in doc["auths"]
    assert base64.b64decode(doc["auths"]["https://index.docker.io/v1/"]["auth"]) == b"me:pw"
    assert stat.S_IMODE((cfg / "config.json").stat().st_mode) == 0o600


# -- Bearer tokens ---------------------------------------------------------------------------------------
def test_token_scopes_are_per_repository(token_registry: TokenRegistry, tmp_path: Path) -> None:
    host = token_registry.registry.host
    src, desc = image(tmp_path, layers=3)
    mine, theirs = f"acme/{uuid.uuid4().hex[:8]}", f"base/{uuid.uuid4().hex[:8]}"
    with client(host, ALICE) as c:
        push(c, src, desc, mine)
        assert c.auth.fetches <= 2  # one pull token, one pull+push token, shared by parallel uploads
        with pytest.raises(RegistryError) as info:
            push(c, src, desc, theirs)
    assert info.value.status == 401 and "not allowed" in str(info.value)
    assert {f"repository:{mine}:pull,push"} in scopes_asked(token_registry, "alice")
    asked = [r for r in token_registry.tokens.requests if f"repository:{theirs}:pull,push" in r.scopes]
    granted = [g["actions"] for r in asked for g in r.granted if g["name"] == theirs]
    assert asked and granted == [["pull"]] * len(asked)  # push to base/* was asked for and never granted
    # anonymous: may pull public/*, nothing else
    token_registry.tokens.policy["alice"].append(("public/*", {"pull", "push"}))
    public = f"public/{uuid.uuid4().hex[:8]}"
    with client(host, ALICE) as c:
        push(c, src, desc, public)
    with client(host, None) as c:
        assert RegistryStore(c).repository(public).resolve(f"{public}:1").digest == desc.digest
        with pytest.raises(RegistryError) as info:
            RegistryStore(c).repository(mine).resolve(f"{mine}:1")
    assert info.value.status == 401


def test_a_token_that_expires_in_the_middle_of_a_push_is_replaced(token_registry: TokenRegistry,
                                                                  tmp_path: Path) -> None:
    tokens = token_registry.tokens
    tokens.lifetime, tokens.claimed_lifetime = 2, 300  # the client believes 300 s; the registry says 1-2 s
    src, desc = image(tmp_path, layers=3)
    second = sorted(blobs_of(src, desc), key=lambda d: -d.size)[1]

    class SlowSource:
        """The layout, but the second blob takes a while to produce (as a layer built on the fly does)."""

        slept = False

        def __getattr__(self, name: str) -> object:
            return getattr(src, name)

        def open_blob(self, d: Descriptor) -> BinaryIO:
            if d.digest == second.digest and not SlowSource.slept:
                SlowSource.slept = True
                time.sleep(2.2)
            return src.open_blob(d)

    repository = f"acme/{uuid.uuid4().hex[:8]}"
    host = token_registry.registry.host
    proxy = FaultProxy(host)  # no faults: it sees the registry's 401 for the expired token
    try:
        with client(proxy.host, ALICE) as c:
            store = RegistryStore(c).repository(repository)
            copied = copy_descriptor(SlowSource(), store, desc, jobs=1)  # type: ignore[arg-type]
            store.set_names({f"{repository}:1": copied})
    finally:
        proxy.stop()
    assert SlowSource.slept
    assert [s.method for s in proxy.seen if s.status == 401 and s.path != "/v2/"] != []
    push_tokens = [r for r in tokens.requests if f"repository:{repository}:pull,push" in r.scopes]
    assert len(push_tokens) >= 2  # the expired one was dropped and a new one fetched mid-push
    with client(host, ALICE) as c, LayoutStore.open_or_create(tmp_path / "out") as out:
        got = RegistryStore(c).repository(repository)
        out.set_names({"x": copy_descriptor(got, out, got.resolve(f"{repository}:1"))})


def test_tokens_are_renewed_by_the_clock_without_a_401(token_registry: TokenRegistry, tmp_path: Path) -> None:
    token_registry.tokens.claimed_lifetime = 30
    now = [1000.0]
    timing = Timing(monotonic=lambda: now[0])
    proxy = FaultProxy(token_registry.registry.host)  # no faults: it only counts the 401s
    try:
        src1, d1 = image(tmp_path, layers=1)
        src2, d2 = image(tmp_path, layers=1)
        repository = f"acme/{uuid.uuid4().hex[:8]}"
        with client(proxy.host, ALICE, timing=timing) as c:
            push(c, src1, d1, repository)
            fetched = c.auth.fetches
            push(c, src2, d2, repository)
            assert c.auth.fetches == fetched  # still fresh: reused
            now[0] += 60
            push(c, src2, d2, repository)
            assert c.auth.fetches > fetched
        unauthorized = [s for s in proxy.seen if s.status == 401 and s.path != "/v2/"]
        assert unauthorized == []
    finally:
        proxy.stop()


def test_a_mount_asks_for_two_scopes_in_one_token(token_registry: TokenRegistry, tmp_path: Path) -> None:
    host = token_registry.registry.host
    src, desc = image(tmp_path, layers=2)
    base, app = f"base/{uuid.uuid4().hex[:8]}", f"acme/{uuid.uuid4().hex[:8]}"
    with client(host, BOB) as c:
        push(c, src, desc, base)  # bob may push base/*; alice may only pull it
    with client(host, ALICE) as c:
        source = RegistryStore(c).repository(base)
        target = RegistryStore(c).repository(app)
        target.set_names({f"{app}:1": copy_descriptor(source, target, source.resolve(f"{base}:1"), jobs=4)})
        assert c.stats.mounted == 3 and c.stats.uploaded == 0
    both = {f"repository:{app}:pull,push", f"repository:{base}:pull"}
    assert both in scopes_asked(token_registry, "alice")
    grant = next(r.granted for r in token_registry.tokens.requests if set(r.scopes) == both)
    assert sorted((g["name"], g["actions"]) for g in grant) == [(app, ["pull", "push"]), (base, ["pull"])]
    assert token_registry.registry.has_layer_link(app, blobs_of(src, desc)[1].digest.text)


def test_an_identity_token_is_exchanged_with_oauth2(token_registry: TokenRegistry, tmp_path: Path) -> None:
    host = token_registry.registry.host
    src, desc = image(tmp_path, layers=1)
    repository = f"acme/{uuid.uuid4().hex[:8]}"
    token_registry.tokens.refresh_tokens["refresh-7f3a"] = "alice"
    with client(host, Credential(identity_token="refresh-7f3a")) as c:
        push(c, src, desc, repository)
    assert {r.method for r in token_registry.tokens.requests} == {"POST"}


def test_cli_with_token_auth_and_no_secret_in_output(token_registry: TokenRegistry, busybox_rootfs: Path,
                                                     tmp_path: Path) -> None:
    host = token_registry.registry.host
    env = {**os.environ, "HOME": str(tmp_path / "home"), "REGFP_USERNAME": "alice", "REGFP_PASSWORD": USERS["alice"]}
    target = f"{host}/acme/{uuid.uuid4().hex[:8]}:1"
    pushed = regfp_json("copy", f"dir:{busybox_rootfs}", target, env=env)
    assert regfp_json("inspect", target, env=env)["digest"] == pushed["digest"]
    denied = regfp("copy", target, f"{host}/base/x:1", env=env, check=False)
    assert denied.returncode == 1 and "HTTP 401" in denied.stderr and "not allowed" in denied.stderr
    wrong = {**env, "REGFP_PASSWORD": "wrong-pw-5d1e9c"}
    refused = regfp("inspect", target, env=wrong, check=False)
    assert refused.returncode == 1 and "token server refused" in refused.stderr and "'alice'" in refused.stderr
    for proc in (denied, refused):
        for secret in (USERS["alice"], "wrong-pw-5d1e9c"):
            assert secret not in proc.stdout + proc.stderr


# -- htpasswd + TLS --------------------------------------------------------------------------------------
def test_basic_auth_over_tls(tls_registry: TlsRegistry, busybox_rootfs: Path, tmp_path: Path) -> None:
    host = tls_registry.registry.host
    env = {**os.environ, "HOME": str(tmp_path / "home"), "REGFP_USERNAME": tls_registry.user,
           "REGFP_PASSWORD": tls_registry.password}
    target = f"{host}/tls/{uuid.uuid4().hex[:8]}:1"
    ca = ("--ca-file", str(tls_registry.ca))
    pushed = regfp_json("copy", *ca, f"dir:{busybox_rootfs}", target, env=env)
    pulled = regfp_json("copy", *ca, target, f"oci:{tmp_path}/out:x", env=env)
    assert pulled["digest"] == pushed["digest"]
    untrusted = regfp("inspect", target, env=env, check=False)
    assert untrusted.returncode == 1 and "certificate" in untrusted.stderr and "--ca-file" in untrusted.stderr
    anonymous = regfp("inspect", *ca, target, env={**os.environ, "HOME": str(tmp_path / "home")}, check=False)
    assert anonymous.returncode == 1 and "HTTP 401" in anonymous.stderr and "regfp login" in anonymous.stderr
    wrong = regfp("inspect", *ca, target, env={**env, "REGFP_PASSWORD": "nope-31f0"}, check=False)
    assert wrong.returncode == 1 and f"the registry refused {tls_registry.user!r}" in wrong.stderr
    for proc in (untrusted, anonymous, wrong):
        assert tls_registry.password not in proc.stdout + proc.stderr and "nope-31f0" not in proc.stderr


def test_login_then_copy_and_skopeo_reads_the_same_login(tls_registry: TlsRegistry, busybox_rootfs: Path,
                                                         tmp_path: Path, tool_env: dict[str, str]) -> None:
    host = tls_registry.registry.host
    env = {**tool_env}
    env.pop("REGFP_USERNAME", None)
    env.pop("REGFP_PASSWORD", None)
    ca = ("--ca-file", str(tls_registry.ca))
    bad = regfp("login", host, "-u", tls_registry.user, "--password-stdin", *ca, input="wrong-a8b2\n", env=env,
                check=False)
    assert bad.returncode == 1 and "wrong-a8b2" not in bad.stdout + bad.stderr
    config = Path(env["HOME"]) / ".docker/config.json"
    assert not config.exists()
    ok = regfp("login", host, "-u", tls_registry.user, "--password-stdin", *ca, input=tls_registry.password + "\n",
               env=env)
    assert "Login Succeeded" in ok.stdout and tls_registry.password not in ok.stdout + ok.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    target = f"{host}/login/{uuid.uuid4().hex[:8]}:1"
    pushed = regfp_json("copy", *ca, f"dir:{busybox_rootfs}", target, env=env)
    inspected = subprocess.run([need("skopeo"), "inspect", "--cert-dir", str(tls_registry.cert_dir),
                                f"docker://{target}"], env=env, capture_output=True, text=True)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == pushed["digest"]


def test_plain_http_only_where_allowed_and_cas_from_certs_d(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from regctl_fp.cli import registry_session as rc

    monkeypatch.setattr(rc, "CERTS_D", tmp_path / "certs.d")
    (tmp_path / "certs.d/reg.example:5000").mkdir(parents=True)
    (tmp_path / "certs.d/reg.example:5000/ca.crt").write_text("x")
    none = rc.Flags()
    assert rc.client_options("ghcr.io", none).plain_http is False
    assert rc.client_options("localhost:5000", none).plain_http is True
    assert rc.client_options("127.0.0.1:5000", none).plain_http is True
    assert rc.client_options("10.0.0.5:5000", none).plain_http is False
    assert rc.client_options("10.0.0.5:5000", rc.Flags(insecure=("10.0.0.5:5000",))).plain_http is True
    assert rc.client_options("reg.example", rc.Flags(insecure=("reg.example",))).plain_http is True
    assert rc.client_options("127.0.0.1:5000", rc.Flags(ca_file="/ca.pem")).plain_http is False  # TLS then
    with_dir = rc.client_options("reg.example:5000", rc.Flags(ca_file="/ca.pem"))
    assert with_dir.ca_files == ("/ca.pem", str(tmp_path / "certs.d/reg.example:5000/ca.crt"))


def test_credentials_never_go_to_a_plain_http_token_server_of_a_tls_registry() -> None:
    with RegistryClient("registry.example", ALICE, ClientOptions(retry=FAST)) as c:
        c.auth.learn(parse_challenges(['Bearer realm="http://auth.example/token",service="s"']))
        with pytest.raises(RegistryError, match="refusing") as info:
            c.auth.header(frozenset({"repository:a:pull"}))
    assert USERS["alice"] not in str(info.value) and c.stats.requests == {}
