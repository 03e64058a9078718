"""The HTTP side of the distribution API for one registry host: TLS, timeouts, retries with backoff
and jitter (connection errors, 5xx, 429 with ``Retry-After``), authentication, and errors that name
the method, the URL without secrets, the status and the registry's error code.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from .. import __version__
from ..errors import InvalidInput, RegistryError
from ..redaction import scrub
from ..regularfile import PEM_LIMIT, read_regular
from ..values import valueclass
from . import http_client as http
from .auth import Authenticator, Credential, credential_refusal, header_safe, parse_challenges
from .bounded import ERROR_BODY_LIMIT, Rate, read_body

if TYPE_CHECKING:
    import ssl

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

Body = bytes | Callable[[], Iterable[bytes]] | None


@valueclass
class RetryPolicy:
    attempts: int = 5  # tries per request, the first included
    base_delay: float = 0.25  # seconds; doubled per try, capped at max_delay, then jittered
    max_delay: float = 8.0
    max_retry_after: float = 120.0  # a longer Retry-After fails at once instead of hanging

    def backoff(self, attempt: int, rand: float) -> float:
        cap = min(self.max_delay, self.base_delay * 2.0 ** attempt)
        return cap / 2 + cap / 2 * rand  # "equal jitter": never zero, spread over the second half


@valueclass
class Timing:
    """Clocks, sleep and the jitter source, injectable so tests can observe and control them."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = random.random


@valueclass
class ClientOptions:
    plain_http: bool = False  # only for localhost, 127.0.0.1 or hosts the user named insecure
    insecure_hosts: tuple[str, ...] = ()  # --insecure-registry: also where a token server may be plain HTTP
    ca_files: tuple[str, ...] = ()  # trusted in addition to the system store
    connect_timeout: float = 15.0
    read_timeout: float = 60.0  # between two reads of a response; a stall longer than this is retried
    rate: Rate = field(default_factory=Rate)  # the slowest whole transfer (a blob, a body) waited for
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timing: Timing = field(default_factory=Timing)
    max_connections: int = 32  # a registry-to-registry copy holds two per blob in flight
    user_agent: str = f"regfp/{__version__}"


@dataclass
class Stats:
    """What went over the wire (for tests, benchmarks and ``--json`` reports)."""

    requests: dict[str, int] = field(default_factory=dict)  # by method
    retries: int = 0
    uploaded: int = 0  # blob bytes sent
    mounted: int = 0
    skipped: int = 0  # blobs found already present
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, method: str) -> None:
        with self._lock:
            self.requests[method] = self.requests.get(method, 0) + 1

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)


class RegistryClient:
    """Requests to one registry; thread-safe, so parallel blob transfers share connections and tokens."""

    def __init__(self, host: str, credential: Credential | None = None,
                 options: ClientOptions | None = None) -> None:
        self.host = host
        self.options = options or ClientOptions()
        self.scheme = "http" if self.options.plain_http else "https"
        self._http = self._new_http()
        self.auth = Authenticator(credential, self._fetch_token, self.options.timing.monotonic)
        self.stats = Stats()
        self.locations = BlobLocations()
        self._ready = False
        self._ready_lock = threading.Lock()

    def _new_http(self) -> http.Client:
        opts = self.options
        # Loading the system CA store costs ~60 ms: a plain-HTTP client makes no certificate checks at all.
        # No proxies or .netrc from the environment: they would bypass what the CLI decided.
        verify: ssl.SSLContext | bool = _ssl_context(opts.ca_files) if self.scheme == "https" else False
        return http.Client(verify=verify, connect_timeout=opts.connect_timeout, read_timeout=opts.read_timeout,
                           pool_timeout=opts.read_timeout, max_connections=opts.max_connections,
                           headers={"User-Agent": opts.user_agent})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.scheme}://{self.host}{path}"

    # -- the /v2/ ping: scheme and auth discovery ---------------------------------------------------
    def ping(self) -> None:
        """Check the registry answers the distribution API and learn how it authenticates."""
        with self._ready_lock:
            if self._ready:
                return
            resp = self._send_retrying("GET", self.url("/v2/"), {}, None, stream=False, follow=False)
            if (self.scheme == "http" and resp.status_code == 400
                    and b"HTTP request to an HTTPS server" in resp.content):
                # localhost served over TLS: docker tries HTTPS for such hosts too.
                self.scheme = "https"
                self._http.close()
                self._http = self._new_http()
                resp = self._send_retrying("GET", self.url("/v2/"), {}, None, stream=False, follow=False)
            if resp.status_code == 401:
                self.auth.learn(parse_challenges(resp.headers.get_list("www-authenticate")))
            elif resp.status_code != 200:
                raise _error(resp, "GET", self.url("/v2/"), "not a distribution registry (GET /v2/ failed)",
                             host=self.host)
            self._ready = True

    def check_login(self) -> None:
        """Authenticate with the credential once, raising if the registry refuses it."""
        self.ping()
        if self.auth.scheme is None:
            return
        resp = self.request("GET", "/v2/", scopes=frozenset())
        resp.close()
        if resp.status_code != 200:
            raise _error(resp, "GET", self.url("/v2/"), credential=self.auth.credential, host=self.host)

    # -- requests -------------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, scopes: frozenset[str], headers: Mapping[str, str] | None = None,
                body: Body = None, length: int | None = None, stream: bool = False, follow: bool = False,
                retry: bool = True) -> http.Response:
        """Send with authentication and retries; the caller checks the status (and closes a stream).

        ``body`` is bytes or a factory of byte iterables, called afresh for each try, so a streamed
        upload can be re-sent after a 401 without holding the blob in memory.
        """
        self.ping()
        url = self.url(path)
        hdrs = dict(headers or {})
        if length is not None:
            hdrs["Content-Length"] = str(length)
        # An upload location on another host (a storage backend) never sees the registry's credentials.
        ours = http.origin(url) == http.origin(self.url("/"))
        for _auth_round in range(3):
            sent = self.auth.header(scopes) if ours else None
            if sent is not None:
                hdrs["Authorization"] = sent
            else:
                hdrs.pop("Authorization", None)
            resp = self._send_retrying(method, url, hdrs, body, stream=stream, follow=follow, retry=retry)
            if resp.status_code != 401:
                return resp
            challenges = parse_challenges(resp.headers.get_list("www-authenticate"))
            new_scopes = self.auth.rejected(challenges, scopes, sent)
            if new_scopes is None:
                return resp
            resp.close()
            scopes = new_scopes
        return resp

    def fail(self, resp: http.Response, method: str, context: str = "") -> RegistryError:
        """The error for an unexpected response (its body is read, up to a limit, and closed)."""
        return _error(resp, method, str(resp.request.url), context, self.auth.credential, host=self.host)

    def _send_retrying(self, method: str, url: str, headers: Mapping[str, str], body: Body,
                       *, stream: bool, follow: bool, retry: bool = True) -> http.Response:
        policy = self.options.retry
        timing = self.options.timing
        attempts = policy.attempts if retry else 1
        for attempt in range(attempts):
            last = attempt + 1 >= attempts
            content = body() if callable(body) else body
            self.stats.count(method)
            try:
                # Always streamed: a body wanted whole is read here, within bounds (``read_body``).
                resp = self._http.send(method, url, headers=headers, content=content, follow_redirects=follow)
                if not stream:
                    read_body(resp, method, self.options.rate, timing.monotonic)
            except http.TooManyRedirects:
                raise RegistryError(method, url, None, None, f"more than {self._http.max_redirects} redirects "
                                                             "(a redirect loop?)") from None
            except http.TransportError as e:
                # A refused connection is retried once (a registry restarting), not for the whole budget.
                refused = isinstance(e, http.ConnectError) and attempt >= 1
                if last or refused or _not_transient(e):
                    raise RegistryError(method, url, None, None, _describe(e, attempt + 1)) from None
                self.stats.add("retries")
                timing.sleep(policy.backoff(attempt, timing.random()))
                continue
            if resp.status_code in RETRY_STATUS and not last:
                delay = _retry_after(resp, timing.wall())
                if delay is not None and delay > policy.max_retry_after:
                    return resp  # the caller reports it; waiting that long is not a retry
                resp.close()
                self.stats.add("retries")
                timing.sleep(delay if delay is not None else policy.backoff(attempt, timing.random()))
                continue
            return resp
        raise AssertionError("unreachable")

    # -- tokens ---------------------------------------------------------------------------------------
    def _fetch_token(self, realm: str, service: str, scopes: frozenset[str],
                     credential: Credential | None) -> tuple[str, float | None]:
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        refusal = credential_refusal(realm, credential, self.options.insecure_hosts)
        if refusal is not None:
            raise RegistryError("GET", realm, None, None, refusal)
        if credential is not None and credential.identity_token:
            # OAuth2 refresh-token grant, as docker does with an identity token.
            form = {"grant_type": "refresh_token", "refresh_token": credential.identity_token,
                    "client_id": "regfp", "access_type": "online"}
            if service:
                form["service"] = service
            if scopes:
                form["scope"] = " ".join(sorted(scopes))
            body = urlencode(form).encode()
            resp = self._send_retrying("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"},
                                       body, stream=False, follow=False)
        else:
            params.extend(("scope", s) for s in sorted(scopes))
            headers = {}
            if credential is not None and credential.has_password:
                headers["Authorization"] = credential.basic_header()
            url = http.add_params(realm, params)
            resp = self._send_retrying("GET", url, headers, None, stream=False, follow=True)
        if resp.status_code != 200:
            raise _error(resp, "GET" if credential is None or not credential.identity_token else "POST",
                         str(resp.request.url), "" if resp.status_code == 401 else "no token from the token server",
                         credential, host=self.host, by="the token server")
        try:
            doc = json.loads(resp.content)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError("GET", realm, resp.status_code, None, "the token server's answer holds no token")
        if not header_safe(token):
            raise RegistryError("GET", realm, resp.status_code, None, "the token server's answer holds a token "
                                "with characters an HTTP header cannot carry (spaces, controls, non-ASCII)")
        life = doc.get("expires_in")
        return token, float(life) if isinstance(life, (int, float)) and not isinstance(life, bool) else None


class BlobLocations:
    """Which repositories of this registry are known to hold a digest: the sources for mounts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._where: dict[str, set[str]] = {}

    def add(self, digest: str, repository: str) -> None:
        with self._lock:
            self._where.setdefault(digest, set()).add(repository)

    def has(self, digest: str, repository: str) -> bool:
        with self._lock:
            return repository in self._where.get(digest, ())

    def others(self, digest: str, repository: str) -> list[str]:
        with self._lock:
            return sorted(self._where.get(digest, set()) - {repository})

    def forget(self, digest: str, repository: str) -> None:
        with self._lock:
            self._where.get(digest, set()).discard(repository)


# -- helpers ------------------------------------------------------------------------------------------
def _ssl_context(ca_files: tuple[str, ...]) -> ssl.SSLContext:
    import ssl  # only for https: a plain-HTTP registry does without it

    ctx = ssl.create_default_context()
    for ca in ca_files:
        # Read here, as a regular file of bounded size: OpenSSL would block on a FIFO given as cafile.
        ctx.load_verify_locations(cadata=read_regular(ca, PEM_LIMIT, "CA certificate").decode("ascii", "replace"))
    return ctx


def _retry_after(resp: http.Response, now: float) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils  # only for a dated Retry-After: the email package costs start-up otherwise

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _not_transient(e: http.TransportError) -> bool:
    text = str(e)
    return "CERTIFICATE_VERIFY_FAILED" in text or "WRONG_VERSION_NUMBER" in text or isinstance(
        e, http.UnsupportedProtocol)


def _describe(e: http.TransportError, tries: int) -> str:
    text = str(e) or type(e).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (f"TLS certificate not trusted ({text}); pass --ca-file, or put the CA in "
                "/etc/docker/certs.d/HOST/ca.crt")
    if "WRONG_VERSION_NUMBER" in text:
        return "the registry does not speak TLS here; for a plain-HTTP registry pass --insecure-registry HOST"
    kind = {http.ConnectTimeout: "connect timeout", http.ReadTimeout: "no data within the read timeout",
            http.WriteTimeout: "write timeout", http.PoolTimeout: "no free connection",
            http.ConnectError: "cannot connect", http.ReadError: "connection broken while reading",
            http.WriteError: "connection broken while sending",
            http.RemoteProtocolError: "connection closed by the registry"}.get(type(e), type(e).__name__)
    after = f" (after {tries} tries)" if tries > 1 else ""
    return f"{kind}: {text}{after}"


# What registries say on any 401 (distribution, Docker Hub, GHCR): the hint below says it better.
_GENERIC_401 = frozenset({"authentication required", "unauthorized", "unauthorized: authentication required",
                          "access to the requested resource is not authorized"})


def _error(resp: http.Response, method: str, url: str, context: str = "",
           credential: Credential | None = None, *, host: str = "", by: str = "the registry") -> RegistryError:
    """The RegistryError for a failed response. A 401 says once what went wrong: the credentials that
    were refused (by whom), or that there were none and how to give some for this host."""
    code, message = None, ""
    raw = b""
    try:
        raw = resp.content
    except http.ResponseNotRead:
        try:
            for chunk in resp.iter_bytes():
                raw += chunk
                if len(raw) > ERROR_BODY_LIMIT:
                    break
        except http.HTTPError:
            pass
    finally:
        resp.close()
    try:
        errors = json.loads(raw).get("errors") if raw else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = str(errors[0].get("code") or "") or None
            message = str(errors[0].get("message") or "")
    except (ValueError, AttributeError):
        pass
    if resp.status_code == 401 and not code:
        code = "UNAUTHORIZED"
    if resp.status_code == 401 and message.strip().rstrip(".").lower() in _GENERIC_401:
        message = ""
    detail = "; ".join(x for x in (context, message) if x)
    if resp.status_code == 401:
        errors = {ch.params.get("error") for ch in parse_challenges(resp.headers.get_list("www-authenticate"))}
        if "insufficient_scope" in errors:
            hint = "not allowed: the token server did not grant the access this needs"
        elif credential is not None and credential.secrets:
            hint = (f"{by} refused {_whose(credential)}"
                    + (f" (credentials from {credential.source})" if credential.source else "")
                    + "; wrong user name or password?")
        else:
            where = host or "HOST"
            hint = (f"authentication required: run 'regfp login {where}' or set REGFP_USERNAME/REGFP_PASSWORD")
        detail = "; ".join(x for x in (detail, hint) if x)
    if resp.status_code == 429:
        detail = "; ".join(x for x in (detail, "rate limited") if x)
    # Scrubbed before it is cut short, so no part of an echoed secret survives the cut.
    detail = scrub(detail)
    if credential is not None:
        for secret in credential.secrets:
            detail = detail.replace(secret, "***")
    return RegistryError(method, url, resp.status_code, code, detail[:500])


def _whose(credential: Credential) -> str:
    if credential.username and not credential.identity_token:
        return repr(credential.username)
    return f"the {'identity token' if credential.identity_token else 'token'}" + (
        f" of {credential.username!r}" if credential.username else "")


def next_link(resp: http.Response) -> str | None:
    """The ``rel="next"`` target of a paginated answer's ``Link`` header (tags, catalog, referrers)."""
    link = resp.headers.get("link", "")
    if 'rel="next"' not in link:
        return None
    return link.split(";")[0].strip().strip("<>") or None


def read_limited(resp: http.Response, limit: int) -> bytes:
    """A streamed answer's raw body, refused once it passes ``limit`` bytes."""
    parts: list[bytes] = []
    got = 0
    for chunk in resp.iter_raw():
        got += len(chunk)
        if got > limit:
            raise InvalidInput(f"manifest larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)
