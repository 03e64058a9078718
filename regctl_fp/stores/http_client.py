"""A small synchronous HTTP/1.1 client on the standard library (``socket``, ``ssl``; the messages
themselves in ``http_wire``): what the registry transport needs and nothing more, so the registry path
starts in a few milliseconds.

Chosen on measurements (this machine, byte-compiled, fresh interpreters): importing httpx costs
~200 ms (httpcore, h11, anyio, certifi, idna, zstandard for its decoder, its own CLI's click and rich),
``http.client`` ~40 ms (``email``, ``ssl``), this module ~5 ms (``ssl`` only for https); and reading a
blob in 1 MiB socket reads pulls ~3x faster over loopback than httpx's 64 KiB pieces.

What it does: a thread-safe pool of keep-alive connections per origin (an idle connection the server
has closed is noticed before use, and a request that finds it closed all the same is sent once more on
a new one when its body can be sent again); connect and read/write timeouts on every socket operation;
a limit on connections in use; bodies streamed both ways; redirects followed only when asked, at most
``MAX_REDIRECTS``, never to another scheme than http/https, and without the ``Authorization`` header once
they leave the origin it was meant for; a body that ends before its ``Content-Length`` (or its last
chunk) is an error, never a short success. ``iter_raw`` gives the bytes as sent; ``iter_bytes`` decodes
a gzip or deflate ``Content-Encoding`` in bounded pieces, so a small compressed answer cannot expand in
memory before the reader's own limit sees it. Limits on whole answers and on transfer time are the
caller's (``bounded``). Failures are the ``TransportError`` classes below, one per way a request fails,
so the retry policy above decides what is worth another try.
"""

from __future__ import annotations

import json
import select
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

from . import http_wire as wire

if TYPE_CHECKING:
    import ssl

CHUNK = 1 << 20  # the most one read of a streamed body returns
REDIRECT_BODY_LIMIT = 64 << 10  # a redirect's body is read (to keep the connection) only up to this
MAX_REDIRECTS = 20
REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


# -- errors ---------------------------------------------------------------------------------------------
class HTTPError(Exception):
    """Any failure of this client."""


class TransportError(HTTPError):
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
    """The server broke HTTP: it closed early, or sent a malformed status line, headers or chunk."""


class UnsupportedProtocol(TransportError):
    """A URL this client cannot send (not http or https, or not a valid URL): never worth a retry."""


class TooManyRedirects(HTTPError):
    pass


class DecodingError(HTTPError):
    """A ``Content-Encoding`` that is unknown or whose data is corrupt."""


class StreamError(HTTPError):
    """A streamed body used the wrong way (read after it was closed)."""


class ResponseNotRead(StreamError):
    """``content`` of a streamed response that was not read."""


# -- URLs -----------------------------------------------------------------------------------------------
def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, lower case, the port made explicit; what "another origin" means."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme)


def netloc(url: str) -> str:
    """``host[:port]`` of ``url``, lower case, without the scheme's default port."""
    scheme, host, port = origin(url)
    if ":" in host:
        host = f"[{host}]"
    return host if port is None or DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"


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
    """Header bytes are read as latin-1: shown as UTF-8 text where they are that."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


class Response:
    """One answer, its body streamed: read it with ``iter_raw``/``iter_bytes`` and close it. The
    connection goes back to the pool only when the body was read to its end."""

    def __init__(self, head: wire.Head, body: wire.Body, request: Request, release: Callable[[bool], None]) -> None:
        self._body = body
        self.request = request
        self.status_code = head.status
        self.headers = Headers((k, _header_text(v)) for k, v in head.headers)
        self._release = release  # (reusable) -> None, called once
        self._content: bytes | None = None
        self._closed = False
        if body.done:
            self._content = b""
            self._finish()

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_closed(self) -> bool:
        return self._closed

    def iter_raw(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The body as it arrives, in pieces of at most ``chunk_size`` bytes, never decoded."""
        if self._content is not None:
            if self._content:
                yield self._content
            return
        while chunk := self._read1(chunk_size):
            yield chunk

    def iter_bytes(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The body with its ``Content-Encoding`` (gzip, deflate) undone, in pieces of at most
        ``chunk_size`` bytes: however much a piece expands, it is handed over in bounded parts."""
        decoders = _decoders(self.headers.get("content-encoding", ""))
        if not decoders:
            yield from self.iter_raw(chunk_size)
            return
        for chunk in self.iter_raw(chunk_size):
            yield from _decode(decoders, 0, chunk, chunk_size)
        for i, d in enumerate(decoders):  # the decoders' tails, each passed through the ones after it
            try:
                tail = d.flush()
            except zlib.error as e:
                raise DecodingError(str(e)) from None
            if tail:
                yield from _decode(decoders, i + 1, tail, chunk_size)

    def _read1(self, n: int) -> bytes:
        if self._closed:
            raise StreamError("the response was closed before its body was read")
        try:
            chunk = self._body.read1(n)
        except TimeoutError:
            self._finish()
            raise ReadTimeout("no data within the read timeout") from None
        except wire.ProtocolError as e:  # cut short, a malformed chunk or too many trailer lines
            self._finish()
            raise RemoteProtocolError(str(e)) from None
        except OSError as e:
            self._finish()
            raise ReadError(str(e) or type(e).__name__) from None
        if not chunk:
            self._finish()
        return chunk

    def set_content(self, data: bytes) -> None:
        """Keep ``data`` as the body read whole (by a bounded reader): ``content`` and ``json`` use it."""
        self._content = data

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise ResponseNotRead("the body of a streamed response was not read")
        return self._content

    def json(self) -> Any:
        return json.loads(self.content)

    def close(self) -> None:
        self._finish()

    def _finish(self) -> None:
        """Hand the connection back: for another request if the body was read to its end, else closed."""
        if self._closed:
            return
        self._closed = True
        self._release(self._body.reusable)


def _decoders(encoding: str) -> list[Any]:
    """zlib decoders undoing ``encoding`` (the last one applied comes first); [] for none."""
    out: list[Any] = []
    for name in reversed([e.strip().lower() for e in encoding.split(",") if e.strip()]):
        if name in ("gzip", "x-gzip"):
            out.append(zlib.decompressobj(16 + zlib.MAX_WBITS))
        elif name == "deflate":
            out.append(_Deflate())
        elif name != "identity":
            raise DecodingError(f"unsupported Content-Encoding {name!r}")
    return out


def _decode(decoders: list[Any], start: int, data: bytes, limit: int) -> Iterator[bytes]:
    """``data`` through ``decoders[start:]``, handed on in pieces of at most ``limit`` bytes."""
    if start >= len(decoders):
        if data:
            yield data
        return
    d = decoders[start]
    try:
        while data:
            out = d.decompress(data, limit)
            data = d.unconsumed_tail
            if out:
                yield from _decode(decoders, start + 1, out, limit)
            elif not data:
                break
    except zlib.error as e:
        raise DecodingError(str(e)) from None


class _Deflate:
    """``deflate`` is meant to be zlib-wrapped; some servers send raw deflate: either is read."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj()
        self._first = True

    def decompress(self, data: bytes, limit: int) -> bytes:
        if self._first:
            self._first = False
            try:
                return self._d.decompress(data, limit)
            except zlib.error:
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._d.decompress(data, limit)

    @property
    def unconsumed_tail(self) -> bytes:
        return self._d.unconsumed_tail

    def flush(self) -> bytes:
        return self._d.flush()


# -- the client -----------------------------------------------------------------------------------------
Key = tuple[str, str, int]
Content = bytes | Iterable[bytes] | None


class Client:
    """Thread-safe: requests from several threads share the pool of keep-alive connections.

    ``verify``: an ``SSLContext`` for https URLs, or False for TLS without certificate checks (only
    where the caller chose it: a plain-HTTP registry whose token server speaks HTTPS).
    """

    def __init__(self, *, verify: ssl.SSLContext | bool = True, connect_timeout: float = 15.0,
                 read_timeout: float = 60.0, pool_timeout: float = 60.0, max_connections: int = 32,
                 headers: Mapping[str, str] | None = None, max_redirects: int = MAX_REDIRECTS) -> None:
        self._verify = verify
        self._tls: ssl.SSLContext | None = None if isinstance(verify, bool) else verify
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.pool_timeout = pool_timeout
        self.max_redirects = max_redirects
        self.headers = dict(headers or {})
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._idle: dict[Key, list[wire.Connection]] = {}
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

    def send(self, method: str, url: str, *, headers: Mapping[str, str] | None = None, content: Content = None,
             follow_redirects: bool = False) -> Response:
        """Send one request (following redirects if asked); the answer's body is streamed.

        A redirect that needs a streamed body sent again (307, 308) is not followed: it is the answer.
        """
        hdrs = {**self.headers, **(headers or {})}
        for _ in range(self.max_redirects + 1):
            resp = self._send_once(method, url, hdrs, content)
            location = resp.headers.get("location")
            if (not follow_redirects or resp.status_code not in REDIRECTS or not location
                    or (resp.status_code in (307, 308) and not isinstance(content, bytes | None))):
                return resp
            _drain(resp)
            next_url = urljoin(url, location)
            if origin(next_url) != origin(url):  # credentials are for the origin they were given for
                hdrs = {k: v for k, v in hdrs.items() if k.lower() != "authorization"}
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
                method = "GET" if method != "HEAD" else method
                content = None
                hdrs = {k: v for k, v in hdrs.items() if k.lower() not in ("content-length", "content-type")}
            url = next_url
        raise TooManyRedirects(f"more than {self.max_redirects} redirects")

    def _send_once(self, method: str, url: str, headers: Mapping[str, str], content: Content) -> Response:
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
        conn: wire.Connection | None = None
        try:
            conn, reused = self._connection(key)
            try:
                head, body = self._exchange(conn, method, target, headers, content, retry_stale=reused)
            except _Stale:
                conn.close()  # a kept-alive connection the server had closed: once more on a new one
                conn = None
                conn, _ = self._connection(key, fresh=True)
                head, body = self._exchange(conn, method, target, headers, content, retry_stale=False)
        except BaseException:
            if conn is not None:
                conn.close()
            self._slots.release()
            raise
        return Response(head, body, Request(method, url), _Release(self, key, conn))

    def _give_back(self, key: Key, conn: wire.Connection, reusable: bool) -> None:
        keep = False
        if reusable:
            with self._lock:
                if not self._closed:
                    self._idle.setdefault(key, []).append(conn)
                    keep = True
        if not keep:
            conn.close()
        self._slots.release()

    def _connection(self, key: Key, *, fresh: bool = False) -> tuple[wire.Connection, bool]:
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
        tls = None
        if scheme == "https":
            if self._tls is None:
                import ssl

                self._tls = ssl.create_default_context() if self._verify else _unverified()
            tls = self._tls
        conn = wire.Connection(scheme, host, port, connect_timeout=self.connect_timeout,
                               read_timeout=self.read_timeout, tls=tls)
        try:
            conn.connect()
        except TimeoutError:
            conn.close()
            raise ConnectTimeout(f"connect to {host}:{port} timed out") from None
        except (OSError, ValueError) as e:  # refused, DNS, TLS handshake or certificate (ssl.SSLError)
            conn.close()
            raise ConnectError(str(e) or type(e).__name__) from None
        return conn, False

    def _exchange(self, conn: wire.Connection, method: str, target: str, headers: Mapping[str, str],
                  content: Content, *, retry_stale: bool) -> tuple[wire.Head, wire.Body]:
        body: bytes | _Body | None = content if content is None or isinstance(content, bytes) else _Body(content)
        replayable = not isinstance(body, _Body)
        write_error: TransportError | None = None
        try:
            conn.send(method, target, dict(headers), body)
        except Exception as e:
            if isinstance(body, _Body) and body.failed:
                raise  # the body's source failed (a local read, a digest check): its own error, as it is
            if isinstance(e, ValueError):  # controls in the target or a header, text that is not latin-1
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
            head = conn.read_head()
            return head, conn.body(method, head)
        except TimeoutError:
            raise write_error or ReadTimeout("no data within the read timeout") from None
        except wire.Disconnected as e:
            if write_error is None and retry_stale and replayable:
                raise _Stale() from None
            raise write_error or RemoteProtocolError(str(e)) from None
        except wire.ProtocolError as e:  # a malformed status line, too many or too long headers
            raise write_error or RemoteProtocolError(f"malformed response ({e})") from None
        except OSError as e:
            if write_error is None and retry_stale and replayable and isinstance(e, ConnectionResetError):
                raise _Stale() from None
            raise write_error or ReadError(str(e) or type(e).__name__) from None


class _Release:
    """Gives a response's connection back to the pool (or closes it), once."""

    def __init__(self, client: Client, key: Key, conn: wire.Connection) -> None:
        self._client = client
        self._key = key
        self._conn: wire.Connection | None = conn

    def __call__(self, reusable: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client._give_back(self._key, conn, reusable)


def _drain(resp: Response) -> None:
    """Read a short redirect body so its connection can be kept; a long one closes it."""
    got = 0
    try:
        for chunk in resp.iter_raw(REDIRECT_BODY_LIMIT):
            got += len(chunk)
            if got > REDIRECT_BODY_LIMIT:
                break
    except TransportError:
        pass
    resp.close()


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


def _still_open(conn: wire.Connection) -> bool:
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
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


__all__ = ["Client", "ConnectError", "ConnectTimeout", "DecodingError", "HTTPError", "Headers", "PoolTimeout",
           "ReadError", "ReadTimeout", "RemoteProtocolError", "Response", "ResponseNotRead", "StreamError",
           "TooManyRedirects", "TransportError", "UnsupportedProtocol", "WriteError", "WriteTimeout",
           "add_params", "netloc", "origin"]
