"""HTTP/1.1 on one socket: a request written, an answer's status line and headers read, and its body
read by its framing (``Content-Length``, chunked, or until the server closes). Every line read is
bounded (``MAX_LINE``), and so is the number of header lines, of trailer lines and of interim (1xx)
answers, so a server can make this read neither without end nor without limit: only as fast as the
read timeout on the socket lets it stall. A body that ends before its framing says is an error.

Why not ``http.client``: it imports the ``email`` package and ``ssl`` for every request (~30 ms of
start-up, a fifth of a re-push here), and leaves the trailer and interim-answer loops unbounded. ``ssl``
is imported here only for an https connection.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

MAX_LINE = 65536  # bytes in one status, header, trailer or chunk-size line
MAX_HEADERS = 100  # header lines of one answer, trailer lines of one chunked body
MAX_HEAD_BYTES = 1 << 20  # all header (or trailer) lines of one answer together
MAX_INTERIM = 100  # interim (1xx) answers before the final one
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
DEFAULT_PORTS = {"http": 80, "https": 443}
_URL_FORBIDDEN = frozenset(range(0x21)) | {0x7F}


class ProtocolError(Exception):
    """The server broke HTTP: a malformed or overlong line, too many lines, a body cut short."""


class Disconnected(ProtocolError):
    """The connection ended before any answer: on a kept-alive connection, the server closed it idle."""


class IncompleteBody(ProtocolError):
    pass


class Head:
    """An answer's status line and headers (names lower case, values as latin-1 text, in order)."""

    def __init__(self, version: str, status: int, headers: list[tuple[str, str]]) -> None:
        self.version = version
        self.status = status
        self.headers = headers

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


class Connection:
    """One HTTP/1.1 connection: connect, then request/answer pairs while it stays reusable."""

    def __init__(self, scheme: str, host: str, port: int, *, connect_timeout: float, read_timeout: float,
                 tls: ssl.SSLContext | None) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._tls = tls
        self.sock: socket.socket | None = None
        self._fp: io.BufferedReader | None = None

    def connect(self) -> None:
        """Raises ``TimeoutError`` or ``OSError`` (``ssl.SSLError`` included) as the socket does."""
        sock = socket.create_connection((self.host, self.port), timeout=self._connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a request head never waits for an ACK
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)  # the handshake, under connect's timeout
            sock.settimeout(self._read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._fp = sock.makefile("rb")

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- the request --------------------------------------------------------------------------------------
    def send(self, method: str, target: str, headers: dict[str, str], body: bytes | Iterable[bytes] | None) -> None:
        """Write one request. ``ValueError`` for what cannot be sent (controls in the target or a header,
        text that is not latin-1); ``OSError``/``TimeoutError`` from the socket; anything ``body``
        raises, as it is. A streamed body without ``Content-Length`` goes chunked."""
        assert self.sock is not None
        if any(b in _URL_FORBIDDEN for b in target.encode("ascii")):
            raise ValueError(f"control or space characters in the request target {target!r}")
        names = {k.lower() for k in headers}
        hdrs = dict(headers)
        chunked = False
        if "host" not in names:
            host = f"[{self.host}]" if ":" in self.host else self.host
            hdrs["Host"] = host if DEFAULT_PORTS.get(self.scheme) == self.port else f"{host}:{self.port}"
        if "content-length" not in names and "transfer-encoding" not in names:
            if isinstance(body, bytes):
                hdrs["Content-Length"] = str(len(body))
            elif body is None:
                if method in BODY_METHODS:
                    hdrs["Content-Length"] = "0"
            else:
                hdrs["Transfer-Encoding"] = "chunked"
                chunked = True
        lines = [f"{method} {target} HTTP/1.1"]
        for k, v in hdrs.items():
            if not k or any(c in k for c in ":\r\n\0 \t") or any(c in v for c in "\r\n\0"):
                raise ValueError(f"header {k!r} cannot be sent (controls, or a malformed name)")
            lines.append(f"{k}: {v}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")  # UnicodeEncodeError is a ValueError
        if body is None or isinstance(body, bytes):
            # One write for head and a short body: no second segment for the server to wait for.
            if body and len(body) > 1 << 16:
                self.sock.sendall(head)
                self.sock.sendall(body)
            else:
                self.sock.sendall(head + (body or b""))
            return
        self.sock.sendall(head)
        for chunk in body:
            if not chunk:
                continue
            if chunked:
                self.sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            else:
                self.sock.sendall(chunk)
        if chunked:
            self.sock.sendall(b"0\r\n\r\n")

    # -- the answer ---------------------------------------------------------------------------------------
    def read_head(self) -> Head:
        """The final answer's head (interim 1xx answers skipped, within bounds)."""
        for _ in range(MAX_INTERIM + 1):
            line = self._line("status line")
            if not line:
                raise Disconnected("server disconnected without sending a response")
            text = line.decode("latin-1").rstrip("\r\n")
            parts = text.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (
                    len(parts[1]) == 3 and parts[1].isdigit()):
                raise ProtocolError(f"malformed status line {text[:200]!r}")
            status = int(parts[1])
            headers = self._headers("header")
            if 100 <= status < 200 and status != 101:
                continue
            return Head(parts[0], status, headers)
        raise ProtocolError(f"more than {MAX_INTERIM} interim (1xx) answers")

    def body(self, method: str, head: Head) -> Body:
        """The reader of ``head``'s body, by its framing."""
        assert self._fp is not None
        connection = {t.strip().lower() for v in head.values("connection") for t in v.split(",")}
        keep = "close" not in connection and (head.version != "HTTP/1.0" or "keep-alive" in connection)
        if method == "HEAD" or head.status in (101, 204, 304) or 100 <= head.status < 200:
            return Body(self, self._fp, "length", 0, keep and head.status != 101)
        codings = [t.strip().lower() for v in head.values("transfer-encoding") for t in v.split(",") if t.strip()]
        if codings:
            if codings[-1] == "chunked":
                return Body(self, self._fp, "chunked", 0, keep)
            return Body(self, self._fp, "close", 0, False)
        lengths = {v.strip() for v in head.values("content-length")}
        if lengths:
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                raise ProtocolError(f"malformed Content-Length {sorted(lengths)!r}")
            return Body(self, self._fp, "length", int(next(iter(lengths))), keep)
        return Body(self, self._fp, "close", 0, False)

    def _line(self, what: str) -> bytes:
        assert self._fp is not None
        line = self._fp.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ProtocolError(f"{what} longer than {MAX_LINE} bytes")
        return line

    def _headers(self, what: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        size = 0
        for _ in range(MAX_HEADERS + 1):
            line = self._line(f"{what} line")
            size += len(line)
            if size > MAX_HEAD_BYTES:
                raise ProtocolError(f"{what}s larger than {MAX_HEAD_BYTES >> 20} MiB")
            if line in (b"\r\n", b"\n"):
                return out
            if not line:
                raise IncompleteBody(f"connection closed within the {what}s")
            text = line.decode("latin-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and out:  # an obsolete folded line continues the previous value
                out[-1] = (out[-1][0], f"{out[-1][1]} {text.strip()}")
                continue
            name, colon, value = text.partition(":")
            if not colon or not name or name != name.strip():
                raise ProtocolError(f"malformed {what} line {text[:200]!r}")
            out.append((name.lower(), value.strip()))
        raise ProtocolError(f"more than {MAX_HEADERS} {what} lines")


class Body:
    """One answer's body, read by its framing. ``read1`` returns what one read brought (at most ``n``
    bytes) and ``b""`` at the end; ``reusable`` says whether the connection may carry another request."""

    def __init__(self, conn: Connection, fp: io.BufferedReader, framing: str, length: int, keep: bool) -> None:
        self._conn = conn
        self._fp = fp
        self._framing = framing  # "length", "chunked" or "close"
        self.remaining = length  # bytes of the body ("length") or of the current chunk ("chunked") left
        self.done = framing == "length" and length == 0
        self._keep = keep

    @property
    def reusable(self) -> bool:
        return self.done and self._keep and self._framing != "close"

    def read1(self, n: int) -> bytes:
        if self.done:
            return b""
        fp = self._fp
        if self._framing == "close":
            data = fp.read1(n)
            if not data:
                self.done = True
            return data
        if self._framing == "chunked" and self.remaining == 0:
            line = self._conn._line("chunk-size")
            if not line:
                raise IncompleteBody("peer closed connection without sending complete message body "
                                     "(before the last chunk)")
            size_text = line.split(b";", 1)[0].strip()
            if not 0 < len(size_text) <= 16 or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                raise ProtocolError(f"malformed chunk size {line[:80]!r}")
            size = int(size_text, 16)
            if size == 0:
                try:
                    self._conn._headers("trailer")  # bounded in number and length
                except IncompleteBody:
                    self._keep = False  # an EOF instead of the trailer's blank line ends it too
                self.done = True
                return b""
            self.remaining = size
        data = fp.read1(min(n, self.remaining))
        if not data:
            raise IncompleteBody(f"peer closed connection without sending complete message body "
                                 f"({self.remaining} bytes missing)")
        self.remaining -= len(data)
        if self._framing == "length":
            self.done = self.remaining == 0
        elif self.remaining == 0 and self._conn._line("chunk end") not in (b"\r\n", b"\n"):
            raise ProtocolError("a chunk not followed by CRLF")
        return data
