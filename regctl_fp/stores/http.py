"""A small synchronous HTTP/1.1 client on the standard library's ``http.client``: what a registry client
needs (a thread-safe keep-alive pool, connect/read/pool timeouts, streamed bodies both ways, redirects)
and nothing else, so the registry path starts in a few milliseconds.

Chosen on measurements (this machine, byte-compiled, median of 10 fresh interpreters): importing
httpx costs ~90-190 ms (httpcore, h11, anyio, certifi, its own CLI's click and rich unless kept out),
urllib3 ~100 ms, ``http.client`` with ``ssl`` ~40 ms. Failures are raised as the ``TransportError``
classes below, one per way a request can fail, so the retry policy above this module decides what is
worth another try. Bodies are never decoded (``Accept-Encoding: identity``): blobs are hashed as
stored. A response read whole (not streamed) is refused past ``BODY_LIMIT`` bytes.
"""

from __future__ import annotations

import http.client
import json
import select
import ssl
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

CHUNK = 1 << 20  # the most one read of a streamed body returns
BODY_LIMIT = 64 << 20  # bytes of a response read whole: error documents, token answers, tag lists
MAX_REDIRECTS = 20
REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


# -- errors ---------------------------------------------------------------------------------------------
class TransportError(Exception):
    """The request did not get a whole answer: no connection, a timeout, a broken stream."""


class ConnectError(TransportError):
    pass


class ConnectTimeout(TransportError):
    pass


class ReadError(TransportError):
    pass


class ReadTimeout(TransportError):
    pass


class WriteError(TransportError):
    pass


class WriteTimeout(TransportError):
    pass


class PoolTimeout(TransportError):
    pass


class RemoteProtocolError(TransportError):
    """The server broke HTTP: closed early, a malformed status line or headers, endless redirects."""


class UnsupportedProtocol(TransportError):
    """A URL this client cannot send (not http or https, or not a valid URL): never worth a retry."""


class StreamError(Exception):
    """A streamed body used the wrong way (read after it was closed)."""


class ResponseNotRead(StreamError):
    """``content`` of a streamed response that was not read."""


# -- URLs -----------------------------------------------------------------------------------------------
def netloc(url: str) -> str:
    """``host[:port]`` of ``url``, lower case, without the scheme's default port."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    return host if port is None or DEFAULT_PORTS.get(parts.scheme) == port else f"{host}:{port}"


def add_params(url: str, params: Iterable[tuple[str, str]]) -> str:
    """``url`` with ``params`` appended to its query (what it had stays first)."""
    encoded = urlencode(list(params), quote_via=quote)
    if not encoded:
        return url
    base, _, fragment = url.partition("#")
    joined = f"{base}{'&' if '?' in base else '?'}{encoded}"
    return f"{joined}#{fragment}" if fragment else joined


# -- messages -------------------------------------------------------------------------------------------
class Headers:
    """Response headers: case-insensitive, in order, repeated names kept (``get_list``)."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = [(k.lower(), v) for k, v in items]

    def get(self, name: str, default: Any = None) -> Any:
        name = name.lower()
        values = [v for k, v in self._items if k == name]
        return ", ".join(values) if values else default

    def get_list(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self._items if k == name]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return str(value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k == name.lower() for k, _ in self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)


class Request:
    def __init__(self, method: str, url: str) -> None:
        self.method = method
        self.url = url


def _header_text(value: str) -> str:
    """http.client reads header bytes as latin-1; UTF-8 text (as httpx would show it) where it is that."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


class Response:
    """One answer. Streamed ones are read with ``iter_raw`` and must be closed; the connection goes back
    to the pool only when the body was read to its end."""

    def __init__(self, raw: http.client.HTTPResponse, request: Request, release: Any) -> None:
        self._raw = raw
        self.request = request
        self.status_code = raw.status
        self.headers = Headers((k, _header_text(v)) for k, v in raw.getheaders())
        self._release = release  # (reusable: bool) -> None, once
        self._content: bytes | None = None
        self._closed = False
        if request.method == "HEAD" or self.status_code in (204, 304) or raw.length == 0:
            self._content = b""
            self._finish(complete=True)

    @property
    def is_closed(self) -> bool:
        return self._closed

    def iter_raw(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The body as it arrives, in pieces of at most ``chunk_size`` bytes, never decoded."""
        if self._content is not None:
            if self._content:
                yield self._content
            return
        while True:
            chunk = self._read1(chunk_size)
            if not chunk:
                return
            yield chunk

    iter_bytes = iter_raw

    def _read1(self, n: int) -> bytes:
        if self._closed:
            raise StreamError("the response was closed before its body was read")
        raw = self._raw
        try:
            chunk = raw.read1(n)
        except TimeoutError:
            self._finish(complete=False)
            raise ReadTimeout("no data within the read timeout") from None
        except http.client.IncompleteRead as e:
            self._finish(complete=False)
            raise RemoteProtocolError(f"peer closed connection without sending complete message body ({e})") \
                from None
        except (http.client.HTTPException, ValueError) as e:  # a malformed chunk header
            self._finish(complete=False)
            raise RemoteProtocolError(f"malformed response body ({e})") from None
        except OSError as e:
            self._finish(complete=False)
            raise ReadError(str(e) or type(e).__name__) from None
        if chunk:
            return chunk
        if raw.length:  # the peer closed before Content-Length bytes came
            self._finish(complete=False)
            raise RemoteProtocolError(f"peer closed connection without sending complete message body "
                                      f"({raw.length} bytes missing)")
        self._finish(complete=True)
        return b""

    def read(self, limit: int = BODY_LIMIT) -> bytes:
        """The whole body (at most ``limit`` bytes, else ``ReadError``), kept as ``content``."""
        if self._content is None:
            parts: list[bytes] = []
            got = 0
            for chunk in self.iter_raw():
                got += len(chunk)
                if got > limit:
                    self.close()
                    raise ReadError(f"response body larger than {limit} bytes")
                parts.append(chunk)
            self._content = b"".join(parts)
        return self._content

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise ResponseNotRead("the body of a streamed response was not read")
        return self._content

    def json(self) -> Any:
        return json.loads(self.content)

    def close(self) -> None:
        if not self._closed:
            self._finish(complete=False)

    def _finish(self, *, complete: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self._raw.close()  # the response's own file; the socket stays open for the next request
        self._release(complete and not self._raw.will_close)


# -- the client -----------------------------------------------------------------------------------------
Key = tuple[str, str, int]


class Client:
    """Thread-safe: requests from several threads share the pool of keep-alive connections."""

    def __init__(self, *, verify: ssl.SSLContext | bool = True, connect_timeout: float = 15.0,
                 read_timeout: float = 60.0, pool_timeout: float = 60.0, max_connections: int = 32,
                 headers: Mapping[str, str] | None = None) -> None:
        self._verify = verify
        self._tls: ssl.SSLContext | None = verify if isinstance(verify, ssl.SSLContext) else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.pool_timeout = pool_timeout
        self.headers = dict(headers or {})
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._idle: dict[Key, list[http.client.HTTPConnection]] = {}
        self._closed = False

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
            self._closed = True
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
             content: bytes | Iterable[bytes] | None = None, stream: bool = False,
             follow_redirects: bool = False) -> Response:
        """Send one request (following redirects if asked); a response not ``stream``-ed is read whole."""
        hdrs = {**self.headers, **(headers or {})}
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._send_once(method, url, hdrs, content)
            location = resp.headers.get("location")
            if not follow_redirects or resp.status_code not in REDIRECTS or not location:
                if not stream:
                    resp.read()
                return resp
            try:
                resp.read(1 << 16)  # a short redirect body: read so the connection is kept
            except TransportError:
                pass
            next_url = urljoin(url, location)
            if netloc(next_url) != netloc(url) or urlsplit(next_url).scheme != urlsplit(url).scheme:
                hdrs = {k: v for k, v in hdrs.items() if k.lower() != "authorization"}  # another origin
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
                method = "GET" if method != "HEAD" else method
                content = None
                hdrs = {k: v for k, v in hdrs.items() if k.lower() not in ("content-length", "content-type")}
            url = next_url
        raise RemoteProtocolError(f"more than {MAX_REDIRECTS} redirects")

    def _send_once(self, method: str, url: str, headers: Mapping[str, str],
                   content: bytes | Iterable[bytes] | None) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise UnsupportedProtocol(f"request URL has an unsupported protocol {parts.scheme + '://'!r}")
        try:
            host = parts.hostname or ""
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError as e:
            raise UnsupportedProtocol(f"invalid URL ({e})") from None
        if not host:
            raise UnsupportedProtocol("invalid URL: no host")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if "accept-encoding" not in {k.lower() for k in headers}:
            headers = {**headers, "Accept-Encoding": "identity"}
        key = (parts.scheme, host, port)
        if not self._slots.acquire(timeout=self.pool_timeout):
            raise PoolTimeout("no free connection")
        released = False

        def release(conn: http.client.HTTPConnection, reusable: bool) -> None:
            nonlocal released
            if released:
                return
            released = True
            if reusable:
                with self._lock:
                    if not self._closed:
                        self._idle.setdefault(key, []).append(conn)
                        conn = None  # type: ignore[assignment]
            if conn is not None:
                conn.close()
            self._slots.release()

        try:
            conn, reused = self._connection(key)
        except BaseException:
            self._slots.release()
            raise
        try:
            raw = self._exchange(conn, method, target, headers, content, retry_stale=reused)
        except _Stale:
            conn.close()  # a kept-alive connection the server had closed: once more on a new one
            try:
                conn, _ = self._connection(key, fresh=True)
            except BaseException:
                self._slots.release()
                raise
            try:
                raw = self._exchange(conn, method, target, headers, content, retry_stale=False)
            except BaseException:
                release(conn, False)
                raise
        except BaseException:
            release(conn, False)
            raise
        return Response(raw, Request(method, url), lambda reusable: release(conn, reusable))

    def _connection(self, key: Key, *, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        if not fresh:
            while True:
                with self._lock:
                    idle = self._idle.get(key)
                    kept = idle.pop() if idle else None
                if kept is None:
                    break
                if _still_open(kept):
                    return kept, True
                kept.close()
        scheme, host, port = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            ctx = self._tls if self._tls is not None else (
                ssl.create_default_context() if self._verify else _unverified())
            conn = http.client.HTTPSConnection(host, port, timeout=self.connect_timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        try:
            conn.connect()
        except TimeoutError:
            conn.close()
            raise ConnectTimeout(f"connect to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as e:  # refused, unreachable, DNS, TLS handshake or certificate
            conn.close()
            raise ConnectError(str(e) or type(e).__name__) from None
        assert conn.sock is not None
        conn.sock.settimeout(self.read_timeout)
        return conn, False

    def _exchange(self, conn: http.client.HTTPConnection, method: str, target: str, headers: Mapping[str, str],
                  content: bytes | Iterable[bytes] | None, *, retry_stale: bool) -> http.client.HTTPResponse:
        body: bytes | _Body | None = content if content is None or isinstance(content, bytes) else _Body(content)
        replayable = not isinstance(body, _Body)
        write_error: TransportError | None = None
        try:
            conn.request(method, target, body=body, headers=dict(headers))
        except Exception as e:
            if isinstance(body, _Body) and body.failed:
                raise  # the body's source failed (a local read, a digest check): its own error, as it is
            if isinstance(e, http.client.InvalidURL | ValueError):  # control characters in target or header
                raise UnsupportedProtocol(f"cannot send this request ({e})") from None
            if isinstance(e, TimeoutError):
                write_error = WriteTimeout("write timeout")
            elif not isinstance(e, OSError):
                raise
            elif retry_stale and replayable and isinstance(e, BrokenPipeError | ConnectionResetError):
                raise _Stale() from None
            else:
                write_error = WriteError(str(e) or type(e).__name__)
        # The server may answer early and close (a refusal before the whole body came): that answer is
        # what counts; when there is none, the write error is the story.
        try:
            return conn.getresponse()
        except TimeoutError:
            raise write_error or ReadTimeout("no data within the read timeout") from None
        except http.client.RemoteDisconnected:
            if write_error is None and retry_stale and replayable:
                raise _Stale() from None
            raise write_error or RemoteProtocolError("server disconnected without sending a response") from None
        except http.client.HTTPException as e:  # a malformed status line, too many or too long headers
            raise write_error or RemoteProtocolError(f"malformed response ({type(e).__name__}: {e})") from None
        except OSError as e:
            if write_error is None and retry_stale and replayable and isinstance(e, ConnectionResetError):
                raise _Stale() from None
            raise write_error or ReadError(str(e) or type(e).__name__) from None


class _Body:
    """A streamed request body that remembers whether its source (not the network) failed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.failed = False

    def __iter__(self) -> Iterator[bytes]:
        it = iter(self._chunks)
        while True:
            try:
                chunk = next(it)
            except StopIteration:
                return
            except BaseException:
                self.failed = True
                raise
            yield chunk


class _Stale(Exception):
    pass


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection is usable while the server has sent nothing (no EOF, no data)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _unverified() -> ssl.SSLContext:
    """TLS without certificate checks: only where the caller chose ``verify=False`` (a plain-HTTP registry
    whose token server speaks HTTPS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


__all__ = ["Client", "ConnectError", "ConnectTimeout", "Headers", "PoolTimeout", "ReadError", "ReadTimeout",
           "RemoteProtocolError", "Response", "ResponseNotRead", "StreamError", "TransportError",
           "UnsupportedProtocol", "WriteError", "WriteTimeout", "add_params", "netloc"]
