"""regfp's own HTTP client (stores/http.py) against small hostile or awkward servers on 127.0.0.1: a body
read whole is bounded, credentials never follow a redirect to another origin, a keep-alive connection the
server closed is replaced without the caller noticing, and a response cut short is an error."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from regctl_fp.stores import http

Handler = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def server(handle: Handler) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP/1.1 server calling ``handle`` for every request; yields its base URL and the headers seen."""
    seen: list[dict[str, str]] = []

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            handle(self)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    finally:
        srv.shutdown()
        srv.server_close()


def answer(status: int, body: bytes = b"", **headers: str) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k.replace("_", "-"), v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    return handle


def endless(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    block = b"x" * (1 << 16)
    try:
        while True:
            h.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
    except OSError:
        pass


def test_a_body_read_whole_is_bounded_and_the_cli_fails_cleanly_under_a_memory_cap() -> None:
    with server(endless) as (url, _):
        # The CLI pings /v2/ (read whole) and must fail with an error, not grow without bound (in a
        # process of its own, under a memory cap, so a regression cannot take the test run down).
        host = url.removeprefix("http://")
        limit = 600 << 20

        def cap() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        proc = subprocess.run([sys.executable, "-m", "regctl_fp", "ls", f"{host}/x"], capture_output=True, text=True,
                              timeout=120, preexec_fn=cap)
    assert proc.returncode == 1, proc.stderr
    assert "larger than" in proc.stderr and "Traceback" not in proc.stderr


def test_credentials_do_not_follow_a_redirect_to_another_origin() -> None:
    with server(answer(200, b"blob")) as (other, seen_other), \
            server(answer(307, Location=f"{other}/storage/blob")) as (url, seen), http.Client() as c:
        resp = c.send("GET", f"{url}/v2/r/blobs/x", headers={"Authorization": "Bearer s3cret"},
                      follow_redirects=True)
    assert resp.status_code == 200 and resp.content == b"blob" and resp.request.url == f"{other}/storage/blob"
    assert seen[0]["authorization"] == "Bearer s3cret"
    assert "authorization" not in seen_other[0]


def test_a_kept_alive_connection_the_server_closed_is_replaced() -> None:
    closing: list[BaseHTTPRequestHandler] = []

    def handle(h: BaseHTTPRequestHandler) -> None:
        closing.append(h)
        answer(200, b"ok")(h)

    with server(handle) as (url, seen), http.Client() as c:
        assert c.send("GET", f"{url}/a").content == b"ok"
        # The server drops the idle connection (as a registry's idle timeout does) ...
        closing[0].connection.shutdown(socket.SHUT_RDWR)
        # ... and the next request goes out on a new one, without an error.
        assert c.send("GET", f"{url}/b").content == b"ok"
    assert len(seen) == 2


def test_a_body_cut_short_is_an_error_not_a_short_blob() -> None:
    def short(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b"only this")
        h.wfile.flush()
        h.connection.shutdown(socket.SHUT_RDWR)

    with server(short) as (url, _), http.Client() as c:
        resp = c.send("GET", f"{url}/blob", stream=True)
        with pytest.raises(http.RemoteProtocolError, match="complete message body"):
            b"".join(resp.iter_raw())
