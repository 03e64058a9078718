"""Registry credentials: ``REGFP_USERNAME``/``REGFP_PASSWORD`` given explicitly, else where docker and
podman keep them: ``config.json`` (``credHelpers``, ``credsStore``, ``auths``), podman's
``REGISTRY_AUTH_FILE``. The environment and home directory are explicit arguments: the CLI passes its
own. Every credential names its source, for messages; no message holds a secret.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import InvalidInput, RegfpError
from ..refs import DOCKER_HUB
from .auth import Credential, header_safe

DOCKER_HUB_KEY = "https://index.docker.io/v1/"  # docker's key for Docker Hub in config.json
HUB_ALIASES = frozenset({DOCKER_HUB, "docker.io", "index.docker.io"})
HUB_TOKEN_SERVER = "auth.docker.io"  # Docker Hub's token realm, part of Docker Hub for REGFP_REGISTRY
ENV_SOURCE = "REGFP_USERNAME/REGFP_PASSWORD"
HELPER_TIMEOUT = 60

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def docker_config_path(env: Mapping[str, str], home: Path) -> Path:
    directory = env.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else home / ".docker" / "config.json"


def find_credential(host: str, env: Mapping[str, str], home: Path, run: Runner = subprocess.run) -> Credential | None:
    """The credential for ``host``: ``REGFP_USERNAME``/``REGFP_PASSWORD`` when set (and ``host`` is within
    ``REGFP_REGISTRY``, if that is set), as skopeo's ``--creds`` beats its auth files; else docker's
    order: its config.json (credHelpers for the host, then credsStore, then ``auths``), then podman's
    auth file."""
    explicit = _from_env(host, env)
    if explicit is not None:
        return explicit
    config_path = docker_config_path(env, home)
    config = _read_json(config_path)
    helpers, creds_store = _helpers(config, config_path)
    helper = helpers.get(_key_in(helpers, host) or "")
    if helper:
        return _from_helper(helper, host, env, run, str(config_path))
    if creds_store:
        found = _from_helper(creds_store, host, env, run, str(config_path))
        if found is not None:
            return found
    found = _from_auths(config, host, str(config_path))
    if found is not None:
        return found
    for podman in _podman_files(env):
        found = _from_auths(_read_json(podman), host, str(podman))
        if found is not None:
            return found
    return None


def _from_env(host: str, env: Mapping[str, str]) -> Credential | None:
    """``REGFP_USERNAME``/``REGFP_PASSWORD``, limited (token server included) to ``REGFP_REGISTRY``'s hosts."""
    user, password = env.get("REGFP_USERNAME", ""), env.get("REGFP_PASSWORD", "")
    only = frozenset(h.strip() for h in env.get("REGFP_REGISTRY", "").split(",") if h.strip())
    if only & HUB_ALIASES:
        only |= HUB_ALIASES | {HUB_TOKEN_SERVER}
    if user and password and (not only or host in only):
        return Credential(username=user, password=password, source=ENV_SOURCE, hosts=only)
    return None


def store_login(host: str, username: str, password: str, env: Mapping[str, str], home: Path,
                run: Runner = subprocess.run) -> str:
    """Save a login where docker would: a credential helper if one is configured, else ``auths`` in
    config.json (mode 0600, replaced atomically). Returns where it went, for the message."""
    path = docker_config_path(env, home)
    config = _read_json(path)
    helpers, creds_store = _helpers(config, path)
    helper = helpers.get(_key_in(helpers, host) or "") or creds_store
    server = server_key(host)
    if helper:
        payload = json.dumps({"ServerURL": server, "Username": username, "Secret": password})
        proc = _run_helper(run, helper, "store", payload, env)
        if proc.returncode != 0:
            raise RegfpError(f"docker-credential-{helper} store failed (exit {proc.returncode})")
        return f"docker-credential-{helper}"
    auths = config.get("auths") or {}
    if not isinstance(auths, dict):
        raise InvalidInput(f"{path}: 'auths' must be a JSON object of registry -> login; fix it first")
    auths = dict(auths)
    key = _key_in(auths, host) or server
    auths[key] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode("ascii")}
    config["auths"] = auths
    _write_private(path, json.dumps(config, indent="\t").encode() + b"\n")
    return str(path)


def server_key(host: str) -> str:
    return DOCKER_HUB_KEY if host in HUB_ALIASES else host


# -- internals ------------------------------------------------------------------------------------------
def _hostname(key: str) -> str:
    """docker's ConvertToHostname: drop the scheme and any path."""
    for scheme in ("http://", "https://"):
        if key.startswith(scheme):
            key = key[len(scheme):]
    return key.split("/", 1)[0]


def _key_in(entries: Mapping[str, object], host: str) -> str | None:
    wanted = HUB_ALIASES if host in HUB_ALIASES else {host}
    if host in HUB_ALIASES and DOCKER_HUB_KEY in entries:
        return DOCKER_HUB_KEY
    for key in entries:
        if _hostname(key) in wanted:
            return key
    return None


def _read_json(path: Path) -> dict[str, object]:
    from ..regularfile import read_regular

    try:
        doc = json.loads(read_regular(path, 4 << 20, "credentials file"))
    except FileNotFoundError:
        return {}
    except InvalidInput as e:  # a FIFO, a device, or too large
        raise InvalidInput(f"unreadable credentials file {e.message}") from None
    except (OSError, ValueError) as e:
        raise InvalidInput(f"{path}: unreadable credentials file ({type(e).__name__})") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"{path}: a credentials file must hold a JSON object")
    return doc


def _helpers(config: Mapping[str, object], path: Path) -> tuple[dict[str, str], str | None]:
    """``credHelpers`` (registry -> helper name) and ``credsStore``; docker refuses a file where they
    have another type, and so does regfp, naming the key."""
    helpers = config.get("credHelpers") or {}
    if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
        raise InvalidInput(f"{path}: 'credHelpers' must map registries to credential helper names")
    store = config.get("credsStore") or None
    if store is not None and not isinstance(store, str):
        raise InvalidInput(f"{path}: 'credsStore' must be the name of a credential helper")
    return helpers, store


def _from_auths(config: Mapping[str, object], host: str, source: str) -> Credential | None:
    auths = config.get("auths") or {}
    if not isinstance(auths, dict):
        return None
    key = _key_in(auths, host)
    entry = auths.get(key) if key else None
    if not isinstance(entry, dict):
        return None
    where = f"{source} (auths entry {key})"
    if entry.get("identitytoken"):
        return Credential(username=str(entry.get("username") or ""),
                          identity_token=_token(entry["identitytoken"], f"{source}: auths[{key}].identitytoken"),
                          source=where)
    if entry.get("registrytoken"):
        return Credential(registry_token=_token(entry["registrytoken"], f"{source}: auths[{key}].registrytoken"),
                          source=where)
    user, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise InvalidInput(f"{source}: the 'auth' entry for {key} is not base64 of user:password")
    if user and password:
        return Credential(username=user, password=password, source=where)
    return None


def _token(value: object, shown: str) -> str:
    """A stored token as it can go over the wire: surrounding whitespace (a trailing newline from an
    editor or ``echo``) dropped; anything a header cannot carry is refused, naming ``shown`` (the file
    and key), never the value."""
    token = value.strip() if isinstance(value, str) else ""
    if not header_safe(token):
        raise InvalidInput(f"{shown}: not a usable token (it must be a string of visible ASCII characters, "
                           "without spaces or control characters); fix or remove that entry")
    return token


def _podman_files(env: Mapping[str, str]) -> list[Path]:
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    return files


def _run_helper(run: Runner, helper: str, verb: str, stdin: str,
                env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return run([f"docker-credential-{helper}", verb], input=stdin, capture_output=True, text=True,
                   env=dict(env), timeout=HELPER_TIMEOUT)
    except FileNotFoundError:
        raise RegfpError(f"credential helper docker-credential-{helper} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise RegfpError(f"credential helper docker-credential-{helper} did not answer in "
                         f"{HELPER_TIMEOUT} s") from None


def _from_helper(helper: str, host: str, env: Mapping[str, str], run: Runner, config: str) -> Credential | None:
    proc = _run_helper(run, helper, "get", server_key(host), env)
    if proc.returncode != 0:
        if "credentials not found" in (proc.stdout + proc.stderr).lower():
            return None
        # Helpers may echo what they were given; say only that it failed.
        raise RegfpError(f"docker-credential-{helper} get failed for {host} (exit {proc.returncode}; "
                         f"configured in {config})")
    try:
        doc = json.loads(proc.stdout)
        user, secret = str(doc.get("Username") or ""), str(doc.get("Secret") or "")
    except (ValueError, AttributeError):
        raise RegfpError(f"docker-credential-{helper} get answered something that is not JSON") from None
    if not secret:
        return None
    source = f"docker-credential-{helper} (named in {config})"
    if user == "<token>":  # docker's marker for an identity (refresh) token
        return Credential(identity_token=_token(secret, f"the answer of docker-credential-{helper} for {host}"),
                          source=source)
    return Credential(username=user, password=secret, source=source)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
