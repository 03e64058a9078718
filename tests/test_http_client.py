"""regfp's HTTP client (``stores.http_client``, on http.client) against small stdlib servers on 127.0.0.1:
credentials never follow a redirect to another origin, a kept-alive connection the server closed is
replaced, a body cut short is an error, compressed answers are decoded in bounded pieces, and timeouts
hold. (The registry-level behaviour is in test_registry_faults.py and test_hostile_io.py.)"""

from __future__ import annotations

import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from registry_support import serve, stop_serving

from regctl_fp.stores import http_client as http

Reply = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """Answers each path its own way; records the headers and the client port of every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply] = {}
        self.seen: list[tuple[str, dict[str, str], int]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()},
                                    self.client_address[1]))
                reply = server.routes.get(self.path.split("?")[0])
                if reply is None:
                    send(self, 404, b"no")
                else:
                    reply(self)

            do_GET = do_HEAD = do_POST = do_PUT = _any

        self._server = serve(Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        stop_serving(self._server)


def send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    for k, v in {"Content-Length": str(len(body)), **(headers or {})}.items():
        h.send_header(k, v)
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    a, b = Server(), Server()
    yield a, b
    a.stop()
    b.stop()


def read_all(resp: http.Response) -> bytes:
    try:
        return b"".join(resp.iter_raw())
    finally:
        resp.close()


def test_credentials_do_not_follow_a_redirect_to_another_origin(servers: tuple[Server, Server]) -> None:
    a, b = servers
    a.routes["/same"] = lambda h: send(h, 307, b"", {"Location": "/landed"})
    a.routes["/away"] = lambda h: send(h, 302, b"", {"Location": f"{b.base}/landed"})
    a.routes["/landed"] = b.routes["/landed"] = lambda h: send(h, 200, b"ok")
    with http.Client(verify=False, read_timeout=5) as client:
        auth = {"Authorization": "Bearer s3cret-token"}
        assert read_all(client.send("GET", f"{a.base}/same", headers=auth, follow_redirects=True)) == b"ok"
        assert read_all(client.send("GET", f"{a.base}/away", headers=auth, follow_redirects=True)) == b"ok"
        unfollowed = client.send("GET", f"{a.base}/away", headers=auth)
        assert unfollowed.status_code == 302
        unfollowed.close()
    landed_a = [hdrs for path, hdrs, _ in a.seen if path == "/landed"]
    landed_b = [hdrs for path, hdrs, _ in b.seen if path == "/landed"]
    assert [h.get("authorization") for h in landed_a] == ["Bearer s3cret-token"]  # same origin: kept
    assert [h.get("authorization") for h in landed_b] == [None]  # another port is another origin


def test_a_redirect_loop_and_a_redirect_to_another_scheme_are_errors(servers: tuple[Server, Server]) -> None:
    a, _ = servers
    a.routes["/loop"] = lambda h: send(h, 307, b"", {"Location": "/loop"})
    a.routes["/ftp"] = lambda h: send(h, 302, b"", {"Location": "ftp://127.0.0.1/x"})
    with http.Client(verify=False, read_timeout=5) as client:
        with pytest.raises(http.TooManyRedirects):
            client.send("GET", f"{a.base}/loop", follow_redirects=True)
        with pytest.raises(http.UnsupportedProtocol):
            client.send("GET", f"{a.base}/ftp", follow_redirects=True)
    assert len([p for p, _, _ in a.seen if p == "/loop"]) == http.MAX_REDIRECTS + 1


def test_a_kept_alive_connection_is_reused_and_replaced_once_the_server_closed_it(
        servers: tuple[Server, Server], monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = servers

    def close_after(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, b"bye")  # no "Connection: close": the client learns it only from the closed socket
        h.close_connection = True

    a.routes["/keep"] = lambda h: send(h, 200, b"kept")
    a.routes["/close"] = close_after
    with http.Client(verify=False, read_timeout=5) as client:
        for _ in range(3):
            assert read_all(client.send("GET", f"{a.base}/keep")) == b"kept"
        assert len({port for _, _, port in a.seen}) == 1  # one connection for all three
        assert read_all(client.send("GET", f"{a.base}/close")) == b"bye"
        # The server closed it after answering: the next request notices before sending ...
        assert read_all(client.send("GET", f"{a.base}/keep")) == b"kept"
        assert read_all(client.send("GET", f"{a.base}/close")) == b"bye"
        # ... and when the close is not visible yet (a race), the request goes once more on a new one.
        monkeypatch.setattr(http, "_still_open", lambda conn: True)
        assert read_all(client.send("GET", f"{a.base}/keep")) == b"kept"
    assert len({port for _, _, port in a.seen}) == 3


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_body_cut_short_is_an_error_not_a_short_success(servers: tuple[Server, Server], framing: str) -> None:
    a, _ = servers

    def cut(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        if framing == "length":
            h.send_header("Content-Length", "100000")
            h.end_headers()
            h.wfile.write(b"x" * 1000)
        else:
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            h.wfile.write(b"3e8\r\n" + b"x" * 1000 + b"\r\n")  # no last chunk
        h.wfile.flush()
        h.connection.shutdown(socket.SHUT_RDWR)
        h.close_connection = True

    a.routes["/cut"] = cut
    with http.Client(verify=False, read_timeout=5) as client:
        resp = client.send("GET", f"{a.base}/cut")
        with pytest.raises(http.RemoteProtocolError, match="complete message body"):
            read_all(resp)


def test_a_compressed_answer_is_decoded_in_bounded_pieces(servers: tuple[Server, Server]) -> None:
    a, _ = servers
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = z.compress(b" " * (64 << 20)) + z.flush()  # 64 MiB in ~64 KiB
    a.routes["/gzip"] = lambda h: send(h, 200, bomb, {"Content-Encoding": "gzip"})
    a.routes["/br"] = lambda h: send(h, 200, b"xx", {"Content-Encoding": "br"})
    a.routes["/broken"] = lambda h: send(h, 200, b"not gzip at all", {"Content-Encoding": "gzip"})
    with http.Client(verify=False, read_timeout=5) as client:
        resp = client.send("GET", f"{a.base}/gzip")
        sizes = [len(piece) for piece in resp.iter_bytes(1 << 20)]
        resp.close()
        assert sum(sizes) == 64 << 20 and max(sizes) <= 1 << 20
        for path in ("/br", "/broken"):
            resp = client.send("GET", f"{a.base}{path}")
            with pytest.raises(http.DecodingError):
                b"".join(resp.iter_bytes())
            resp.close()
    assert all(hdrs.get("accept-encoding") == "identity" for _, hdrs, _ in a.seen)


def test_a_server_that_stops_answering_times_out(servers: tuple[Server, Server]) -> None:
    a, _ = servers
    gate = threading.Event()

    def stall(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "10")
        h.end_headers()
        h.wfile.write(b"12345")
        h.wfile.flush()
        gate.wait(10)

    a.routes["/stall-body"] = stall
    a.routes["/stall-head"] = lambda h: gate.wait(10)
    try:
        with http.Client(verify=False, read_timeout=0.3) as client:
            with pytest.raises(http.ReadTimeout):
                client.send("GET", f"{a.base}/stall-head")
            resp = client.send("GET", f"{a.base}/stall-body")
            with pytest.raises(http.ReadTimeout):
                read_all(resp)
    finally:
        gate.set()


@pytest.mark.parametrize("flood", ["interim answers", "trailer lines"])
def test_endless_interim_answers_or_trailer_lines_are_an_error_not_a_hang(flood: str) -> None:
    """Each line comes at once, so no read timeout fires: only a bound on their number ends it."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            try:
                if flood == "interim answers":
                    while not stop.is_set():
                        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * 100)
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n")
                    while not stop.is_set():
                        conn.sendall(b"X-Trailer: again\r\n" * 100)
            except OSError:
                pass

    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            with http.Client(verify=False, read_timeout=5) as client:
                read_all(client.send("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/"))
        except BaseException as e:  # handed to the test thread
            errors.append(e)

    threading.Thread(target=serve, daemon=True).start()
    started = time.monotonic()
    client_thread = threading.Thread(target=fetch, daemon=True)  # a hang fails the test, not the run
    client_thread.start()
    client_thread.join(10)
    stop.set()
    listener.close()
    assert not client_thread.is_alive(), "still reading after 10 s"
    assert len(errors) == 1 and isinstance(errors[0], http.RemoteProtocolError), errors
    assert "more than 100" in str(errors[0])
    assert time.monotonic() - started < 5


def raw_answer(answer: bytes) -> Callable[[], str]:
    """A one-shot server on 127.0.0.1 that reads a request and sends ``answer`` as it is."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(answer)
                conn.shutdown(socket.SHUT_WR)
                conn.recv(1)
            except OSError:
                pass
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return lambda: f"http://127.0.0.1:{listener.getsockname()[1]}/"


@pytest.mark.parametrize(("answer", "needle"), [
    (b"HTPP/1.1 200 OK\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", "more than 100 header lines"),
    (b"HTTP/1.1 200 OK\r\nX-A: " + b"b" * 70000 + b"\r\n\r\n", "longer than"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\n" + (b"X-A: " + b"b" * 60000 + b"\r\n") * 20 + b"\r\n", "larger than 1 MiB"),
])
def test_malformed_answers_are_protocol_errors(answer: bytes, needle: str) -> None:
    url = raw_answer(answer)
    with http.Client(verify=False, read_timeout=5) as client, pytest.raises(http.RemoteProtocolError, match=needle):
        client.send("GET", url())


def test_a_chunked_body_and_one_read_until_close_arrive_whole() -> None:
    chunked = raw_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")
    until_close = raw_answer(b"HTTP/1.0 200 OK\r\n\r\nwhole body")
    with http.Client(verify=False, read_timeout=5) as client:
        assert read_all(client.send("GET", chunked())) == b"abcde"
        assert read_all(client.send("GET", until_close())) == b"whole body"


@pytest.mark.parametrize("where", ["target", "header"])
def test_a_request_that_would_inject_lines_is_not_sent(servers: tuple[Server, Server], where: str) -> None:
    a, _ = servers
    with http.Client(verify=False, read_timeout=5) as client, pytest.raises(http.UnsupportedProtocol):
        if where == "target":
            client.send("GET", f"{a.base}/x HTTP/1.1\r\nX-Injected: 1\r\n")
        else:
            client.send("GET", f"{a.base}/x", headers={"Authorization": "Bearer t\r\nX-Injected: 1"})
    assert a.seen == []


def test_a_loopback_registry_served_over_tls_is_found_and_verified(tmp_path: Path) -> None:
    """127.0.0.1 starts on plain HTTP; a registry there that speaks TLS answers "HTTP request to an
    HTTPS server" (an answer framed by closing the connection): the client moves to https, with the
    certificate checked against the given CA, and without one the certificate is refused."""
    from registry_support import Registry, self_signed

    from regctl_fp.errors import RegistryError
    from regctl_fp.stores.transport import ClientOptions, RegistryClient

    cert, key = self_signed(tmp_path / "tls")
    reg = Registry(tmp_path / "reg", tls=(cert, key)).start()
    try:
        with RegistryClient(reg.host, None, ClientOptions(plain_http=True, ca_files=(str(cert),))) as c:
            c.ping()
            assert c.scheme == "https"
            resp = c.request("GET", "/v2/_catalog", scopes=frozenset())
            assert resp.status_code == 200 and "repositories" in resp.json()
        with RegistryClient(reg.host, None, ClientOptions(plain_http=True)) as c, \
                pytest.raises(RegistryError, match="certificate"):
            c.ping()
    finally:
        reg.stop()
