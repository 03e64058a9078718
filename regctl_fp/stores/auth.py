"""Registry authentication: ``WWW-Authenticate`` challenges, token scopes, the Bearer flow with a
token cache keyed by scope set, and the rule for where credentials may be sent. Credentials come from
the caller; nothing here reads files or the environment, and no secret ever goes into a message or a
``repr``: every secret an ``Authenticator`` may send is recorded for scrubbing (``redaction``).
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..redaction import remember_secret
from ..values import valueclass

PULL = ("pull",)
PUSH = ("pull", "push")


@dataclass(frozen=True)
class Credential:
    """What to authenticate with. ``identity_token`` is an OAuth2 refresh token (docker's
    ``identitytoken``); ``registry_token`` is a bearer token sent as it is."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)
    source: str = ""  # where it was found, for messages
    # When not empty, the only hosts it may be sent to, the token server's included (REGFP_REGISTRY).
    hosts: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, source={self.source!r})"

    @property
    def has_password(self) -> bool:
        return bool(self.username and self.password)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret this credential holds (for checks that they never leak)."""
        return tuple(s for s in (self.password, self.identity_token, self.registry_token) if s)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def remember(self) -> None:
        """Record every form of this credential that may go over the wire, for scrubbing output."""
        if self.password:
            remember_secret(self.password)
            remember_secret(self.basic_header().partition(" ")[2], scheme="Basic")
        remember_secret(self.identity_token)
        remember_secret(self.registry_token, scheme="Bearer")


def header_safe(token: str) -> bool:
    """Whether a token can be sent in an HTTP header as it is: visible ASCII only, no spaces."""
    return bool(token) and all("!" <= c <= "~" for c in token)


LOOPBACK = frozenset({"localhost", "127.0.0.1", "[::1]"})


def host_name(netloc: str) -> str:
    """``host[:port]`` without the port (``[::1]:5000`` -> ``[::1]``)."""
    if netloc.startswith("["):
        return netloc.split("]", 1)[0] + "]"
    return netloc.rsplit(":", 1)[0]


def plain_http_allowed(netloc: str, insecure: Iterable[str]) -> bool:
    """Whether ``netloc`` may be spoken to in plain HTTP: a loopback name, or a host the user named
    with ``--insecure-registry`` (with or without its port)."""
    listed = set(insecure)
    return netloc in listed or host_name(netloc) in listed or host_name(netloc) in LOOPBACK


def credential_refusal(url: str, credential: Credential | None, insecure: Iterable[str]) -> str | None:
    """Why ``credential`` must not be sent to ``url`` (a token server the registry named), or None.

    In clear text only to a host that may speak plain HTTP itself: a plain-HTTP registry, even on
    loopback, does not lend its allowance to the hosts it names. And only within the credential's
    hosts when it has a limit (``REGFP_REGISTRY``).
    """
    if credential is None or not credential.secrets:
        return None
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    source = f" from {credential.source}" if credential.source else ""
    if parts.scheme != "https" and not plain_http_allowed(netloc, insecure):
        return (f"the registry's token server {netloc} speaks plain HTTP; refusing to send it the credentials"
                f"{source} in clear text (pass --insecure-registry {netloc} if that network is trusted)")
    if credential.hosts and netloc not in credential.hosts:
        return (f"the registry's token server {netloc} is not in REGFP_REGISTRY; refusing to send it the "
                f"credentials{source} (add it to REGFP_REGISTRY if it is the registry's own)")
    return None


@valueclass
class Challenge:
    scheme: str  # lowercase: "basic" or "bearer"
    params: Mapping[str, str]

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.params.get("scope", "").split())


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN}=*)\s*(?:,|$)')
_SCHEME = re.compile(rf"\s*,?\s*({_TOKEN})(?:\s+|$)")


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Challenges from one or more ``WWW-Authenticate`` header values (RFC 7235 auth-params)."""
    found: list[Challenge] = []
    for value in values:
        pos = 0
        while pos < len(value):
            m = _SCHEME.match(value, pos)
            if not m:
                break
            scheme, pos = m.group(1).lower(), m.end()
            params: dict[str, str] = {}
            while pos < len(value):
                p = _PARAM.match(value, pos)
                if not p:
                    break
                raw = p.group(2)
                if raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                params[p.group(1).lower()] = raw
                pos = p.end()
            found.append(Challenge(scheme, params))
    return found


# -- scopes --------------------------------------------------------------------------------------------
def repo_scope(repository: str, actions: Iterable[str]) -> str:
    return f"repository:{repository}:{','.join(sorted(set(actions)))}"


def _split_scope(scope: str) -> tuple[str, set[str]]:
    resource, _, actions = scope.rpartition(":")
    if not resource:
        return scope, set()
    return resource, {a for a in actions.split(",") if a}


def merge_scopes(*groups: Iterable[str]) -> frozenset[str]:
    """One scope per resource, with the union of the actions asked for it."""
    actions: dict[str, set[str]] = {}
    for group in groups:
        for scope in group:
            resource, acts = _split_scope(scope)
            actions.setdefault(resource, set()).update(acts)
    return frozenset(f"{r}:{','.join(sorted(a))}" if a else r for r, a in actions.items())


def covers(have: frozenset[str], want: frozenset[str]) -> bool:
    granted: dict[str, set[str]] = {}
    for scope in have:
        resource, acts = _split_scope(scope)
        granted.setdefault(resource, set()).update(acts)
    for scope in want:
        resource, acts = _split_scope(scope)
        if resource not in granted or not acts <= granted[resource]:
            return False
    return True


# -- the flow ------------------------------------------------------------------------------------------
@valueclass
class Token:
    value: str = field(repr=False)
    expires_at: float  # on the authenticator's clock
    scopes: frozenset[str]


# (realm, service, scopes, credential) -> (token, lifetime in seconds, or None when unknown)
TokenFetcher = Callable[[str, str, frozenset[str], "Credential | None"], tuple[str, float | None]]

DEFAULT_LIFETIME = 60.0  # distribution's token spec: a token without expires_in lasts 60 s


class Authenticator:
    """Decides the ``Authorization`` header for a request needing ``scopes`` and reacts to 401s.

    Basic credentials are sent up front once the registry has asked for them. Bearer tokens are
    fetched per scope set, cached until shortly before they expire, and dropped when the registry
    rejects them, so a token that expires in the middle of a long push is replaced, not reused.
    """

    def __init__(self, credential: Credential | None, fetch: TokenFetcher, clock: Callable[[], float]) -> None:
        self.credential = credential
        if credential is not None:
            credential.remember()
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._fetching = threading.Lock()
        self.scheme: str | None = None
        self.realm = ""
        self.service = ""
        self._tokens: dict[frozenset[str], Token] = {}
        self.fetches = 0  # how many tokens were fetched (tests and stats)

    def learn(self, challenges: Iterable[Challenge]) -> None:
        """Remember how this registry authenticates (from a ``/v2/`` ping or a 401)."""
        for ch in challenges:
            if ch.scheme == "bearer" and ch.params.get("realm"):
                with self._lock:
                    self.scheme, self.realm = "bearer", ch.params["realm"]
                    self.service = ch.params.get("service", "")
                return
        for ch in challenges:
            if ch.scheme == "basic":
                with self._lock:
                    self.scheme = "basic"
                return

    def header(self, scopes: frozenset[str]) -> str | None:
        cred = self.credential
        if self.scheme == "basic":
            return cred.basic_header() if cred is not None and cred.has_password else None
        if self.scheme != "bearer":
            return None
        if cred is not None and cred.registry_token:
            return f"Bearer {cred.registry_token}"
        token = self._cached(scopes)
        if token is None:
            token = self._new_token(scopes)
        return f"Bearer {token.value}"

    def rejected(self, challenges: list[Challenge], scopes: frozenset[str], sent: str | None) -> frozenset[str] | None:
        """After a 401: the scopes to retry with, or None when another try cannot help."""
        self.learn(challenges)
        if self.scheme == "basic":
            if sent is None and self.credential is not None and self.credential.has_password:
                return scopes
            return None
        if self.scheme != "bearer" or (sent is not None and self.credential is not None
                                       and self.credential.registry_token):
            return None
        wanted = merge_scopes(scopes, *(ch.scopes for ch in challenges if ch.scheme == "bearer"))
        if sent is not None:
            self._drop(sent)
        return wanted

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()

    # -- internals -----------------------------------------------------------------------------------
    def _cached(self, scopes: frozenset[str]) -> Token | None:
        now = self._clock()
        with self._lock:
            for key, token in list(self._tokens.items()):
                if token.expires_at <= now:
                    del self._tokens[key]
                elif covers(key, scopes):
                    return token
        return None

    def _new_token(self, scopes: frozenset[str]) -> Token:
        with self._fetching:  # one fetch at a time: parallel uploads of one repository share a token
            token = self._cached(scopes)
            if token is not None:
                return token
            value, lifetime = self._fetch(self.realm, self.service, scopes, self.credential)
            remember_secret(value, scheme="Bearer")
            self.fetches += 1
            life = lifetime if lifetime and lifetime > 0 else DEFAULT_LIFETIME
            # Renew a little early so a token does not expire between our check and the registry's.
            margin = min(5.0, life / 4)
            token = Token(value, self._clock() + life - margin, scopes)
            with self._lock:
                self._tokens[scopes] = token
            return token

    def _drop(self, sent: str) -> None:
        value = sent.partition(" ")[2]
        with self._lock:
            for key, token in list(self._tokens.items()):
                if token.value == value:
                    del self._tokens[key]
