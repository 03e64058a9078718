"""Blob bytes to and from a registry: downloads that resume after a broken connection, and uploads
that skip what exists, mount from another repository, stream a monolithic PUT from a re-openable
source (chunked PATCH as the fallback) and start over from a fresh upload session after a failure.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

from ..errors import DigestMismatch, NotFound, RegfpError, RegistryError, SizeMismatch
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.streams import ByteReader, Opener
from ..oci.verify import VerifyingReader
from . import http_client as http
from .auth import PULL, PUSH, repo_scope
from .bounded import Deadline
from .transport import RETRY_STATUS, RegistryClient, _describe, _retry_after

CHUNK = 1 << 20
OnBytes = Callable[[int], None]
Upload = Callable[[Descriptor, Opener], object]  # uploads a blob from a re-openable source; any result is ignored
# Upload-session errors after which a new session can succeed where the old one could not.
RESTARTABLE_CODES = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})


def pull_scope(repository: str) -> frozenset[str]:
    return frozenset({repo_scope(repository, PULL)})


def push_scope(repository: str) -> frozenset[str]:
    return frozenset({repo_scope(repository, PUSH)})


# -- downloads ------------------------------------------------------------------------------------------
class RemoteBlobReader:
    """The raw bytes of ``GET /v2/<repo>/blobs/<digest>``. A connection that breaks or stalls is
    reopened with ``Range: bytes=<offset>-``, so a long download survives it without starting over.
    The whole download, reopenings included, must finish within the time the client's minimum rate
    allows for the blob's size: a server that trickles bytes fails it. Wrap it in a
    ``VerifyingReader``: nothing here checks the content."""

    def __init__(self, client: RegistryClient, repository: str, desc: Descriptor) -> None:
        self._client = client
        self._repo = repository
        self._desc = desc
        self._path = f"/v2/{repository}/blobs/{desc.digest}"
        self._offset = 0
        self._failures = 0
        self._resp: http.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._pending = b""
        self._deadline = Deadline(client.options.rate, client.options.timing.monotonic)
        self._open()

    def _open(self) -> None:
        headers = {"Accept-Encoding": "identity"}  # the blob's own bytes, never a re-encoding of them
        if self._offset:
            headers["Range"] = f"bytes={self._offset}-"
        resp = self._client.request("GET", self._path, scopes=pull_scope(self._repo), headers=headers,
                                    stream=True, follow=True)
        skip = 0
        if resp.status_code == 404:
            resp.close()
            raise NotFound(f"blob {self._desc.digest}", f"{self._client.host}/{self._repo}")
        if resp.status_code == 206 and self._offset:
            start = resp.headers.get("content-range", "").removeprefix("bytes ").split("-")[0]
            if start != str(self._offset):
                resp.close()
                raise RegistryError("GET", str(resp.request.url), 206, None,
                                    f"asked for bytes from {self._offset}, got range {start or '?'}")
        elif resp.status_code == 200:
            skip = self._offset  # the server ignored Range: read past what we already have
        else:
            raise self._client.fail(resp, "GET")
        self._resp = resp
        self._chunks = resp.iter_raw()
        while skip > 0:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            if len(chunk) > skip:
                self._chunks = _prepend(chunk[skip:], self._chunks)
            skip -= len(chunk)

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (what one network read brought, at most); ``b""`` at the end."""
        chunk = self._pending or self._next()
        if 0 <= n < len(chunk):
            chunk, self._pending = chunk[:n], chunk[n:]
        else:
            self._pending = b""
        return chunk

    def _next(self) -> bytes:
        assert self._chunks is not None
        while True:
            try:
                chunk = next(self._chunks, b"")
            except (http.TransportError, http.StreamError) as e:
                self._reopen_after(e)
                continue
            self._offset += len(chunk)
            if chunk:
                self._failures = 0
                self._check_deadline()
            return chunk

    def _check_deadline(self) -> None:
        if self._deadline.exceeded(self._desc.size):
            if self._resp is not None:
                self._resp.close()
            rate = self._deadline.rate
            status = self._resp.status_code if self._resp is not None else None
            raise RegistryError("GET", self._client.url(self._path), status, None,
                                f"too slow: {self._offset} of {self._desc.size} bytes in "
                                f"{self._deadline.elapsed:.0f} s, over the {rate.allowed(self._desc.size):.0f} s "
                                f"allowed for this blob ({rate.describe()}; set REGFP_MIN_RATE and "
                                "REGFP_TRANSFER_GRACE to change that)")

    def _reopen_after(self, e: Exception) -> None:
        if self._resp is not None:
            self._resp.close()
        self._failures += 1
        policy = self._client.options.retry
        if self._failures >= policy.attempts:
            why = _describe(e, self._failures) if isinstance(e, http.TransportError) else str(e)
            raise RegistryError("GET", self._client.url(self._path), None, None,
                                f"{why}; got {self._offset} of {self._desc.size} bytes") from None
        self._check_deadline()
        self._client.stats.add("retries")
        timing = self._client.options.timing
        timing.sleep(policy.backoff(self._failures - 1, timing.random()))
        self._open()

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()

    def __enter__(self) -> RemoteBlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def open_blob(client: RegistryClient, repository: str, desc: Descriptor) -> VerifyingReader:
    reader = RemoteBlobReader(client, repository, desc)
    what = f"blob {desc.digest} in {client.host}/{repository}"
    return VerifyingReader(reader, desc.digest, desc.size, what)


# -- uploads --------------------------------------------------------------------------------------------
def head_blob(client: RegistryClient, repository: str, digest: Digest) -> bool:
    resp = client.request("HEAD", f"/v2/{repository}/blobs/{digest}", scopes=pull_scope(repository), follow=True)
    resp.close()
    if resp.status_code == 200:
        client.locations.add(digest.text, repository)
        return True
    if resp.status_code == 404:
        return False
    raise client.fail(resp, "HEAD")


class _Restart(Exception):
    """An upload attempt failed in a way a new upload session may fix."""

    def __init__(self, error: RegistryError, wait: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait


class _TooLarge(Exception):
    pass


def upload_blob(client: RegistryClient, repository: str, desc: Descriptor, opener: Opener, *,
                chunk_size: int = 8 << 20, monolithic_limit: int | None = None,
                on_bytes: OnBytes | None = None) -> str:
    """Make ``desc`` present in ``repository``: "present", "mounted" or "uploaded".

    ``opener`` returns a fresh stream of the blob (verified by the caller's reader) for each try.
    """
    digest = desc.digest.text
    if client.locations.has(digest, repository) or head_blob(client, repository, desc.digest):
        client.stats.add("skipped")
        return "present"
    location = None
    for source in client.locations.others(digest, repository)[:3]:
        mounted, location = _mount(client, repository, source, desc)
        if mounted:
            client.locations.add(digest, repository)
            client.stats.add("mounted")
            return "mounted"
        if location is not None:
            break  # the registry opened an ordinary upload session instead: use it
    chunked = monolithic_limit is not None and desc.size > monolithic_limit
    policy = client.options.retry
    timing = client.options.timing
    attempt = 0
    while True:
        try:
            if location is None:
                location = _start(client, repository)
            if chunked:
                _put_chunked(client, repository, location, desc, opener, chunk_size, on_bytes)
            else:
                _put_monolithic(client, repository, location, desc, opener, on_bytes)
            client.locations.add(digest, repository)
            return "uploaded"
        except _TooLarge:
            chunked, location = True, None
            continue
        except _Restart as r:
            location = None
            attempt += 1
            if attempt >= policy.attempts:
                raise r.error from None
            client.stats.add("retries")
            timing.sleep(r.wait if r.wait is not None else policy.backoff(attempt - 1, timing.random()))


def _mount(client: RegistryClient, repository: str, source: str, desc: Descriptor) -> tuple[bool, str | None]:
    scopes = push_scope(repository) | pull_scope(source)
    path = f"/v2/{repository}/blobs/uploads/?mount={desc.digest}&from={source}"
    resp = client.request("POST", path, scopes=scopes, body=b"", length=0)
    resp.close()
    if resp.status_code == 201:
        _check_digest_header(resp, desc.digest, "POST")
        return True, None
    if resp.status_code == 202 and resp.headers.get("location"):
        return False, resp.headers["location"]
    if resp.status_code in (401, 403, 404):
        return False, None  # no access to the source, or it is gone there: upload instead
    raise client.fail(resp, "POST")


def _start(client: RegistryClient, repository: str) -> str:
    resp = client.request("POST", f"/v2/{repository}/blobs/uploads/", scopes=push_scope(repository),
                          body=b"", length=0)
    if resp.status_code == 202 and resp.headers.get("location"):
        resp.close()
        return resp.headers["location"]
    raise _classify(client, resp, "POST")


def _classify(client: RegistryClient, resp: http.Response, method: str) -> Exception:
    wait = _retry_after(resp, client.options.timing.wall()) if resp.status_code == 429 else None
    err = client.fail(resp, method)
    if resp.status_code in RETRY_STATUS or err.code in RESTARTABLE_CODES:
        if wait is not None and wait > client.options.retry.max_retry_after:
            return err
        return _Restart(err, wait)
    return err


def _with_digest(client: RegistryClient, location: str, digest: Digest) -> str:
    return http.add_params(client.url(location), [("digest", digest.text)])


def _put_monolithic(client: RegistryClient, repository: str, location: str, desc: Descriptor,
                    opener: Opener, on_bytes: OnBytes | None) -> None:
    def body() -> Iterator[bytes]:
        with opener() as stream:
            while chunk := stream.read(CHUNK):
                client.stats.add("uploaded", len(chunk))
                if on_bytes is not None:
                    on_bytes(len(chunk))
                yield chunk

    try:
        resp = client.request("PUT", _with_digest(client, location, desc.digest), scopes=push_scope(repository),
                              headers={"Content-Type": "application/octet-stream"}, body=body,
                              length=desc.size, retry=False)
    except RegistryError as e:
        if e.status is None:  # the connection broke mid-blob: the session is unusable, start over
            raise _Restart(e) from None
        raise
    if resp.status_code == 413:
        resp.close()
        raise _TooLarge()
    if resp.status_code != 201:
        raise _classify(client, resp, "PUT")
    resp.close()
    _check_digest_header(resp, desc.digest, "PUT")


def _put_chunked(client: RegistryClient, repository: str, location: str, desc: Descriptor, opener: Opener,
                 chunk_size: int, on_bytes: OnBytes | None) -> None:
    scopes = push_scope(repository)
    offset = 0
    with opener() as stream:
        while True:
            buf = _read_up_to(stream, chunk_size)
            if not buf:
                break
            headers = {"Content-Type": "application/octet-stream",
                       "Content-Range": f"{offset}-{offset + len(buf) - 1}"}
            try:
                resp = client.request("PATCH", client.url(location), scopes=scopes, headers=headers, body=buf,
                                      length=len(buf), retry=False)
            except RegistryError as e:
                if e.status is None:
                    raise _Restart(e) from None
                raise
            if resp.status_code != 202 or not resp.headers.get("location"):
                raise _classify(client, resp, "PATCH")
            resp.close()
            location = resp.headers["location"]
            offset += len(buf)
            client.stats.add("uploaded", len(buf))
            if on_bytes is not None:
                on_bytes(len(buf))
    resp = client.request("PUT", _with_digest(client, location, desc.digest), scopes=scopes, body=b"", length=0)
    if resp.status_code != 201:
        raise _classify(client, resp, "PUT")
    resp.close()
    _check_digest_header(resp, desc.digest, "PUT")


def _read_up_to(stream: ByteReader, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        chunk = stream.read(min(CHUNK, n - got))
        if not chunk:
            stream.read(CHUNK)  # let a verifying reader see end-of-file and check the digest
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _check_digest_header(resp: http.Response, digest: Digest, method: str) -> None:
    said = resp.headers.get("docker-content-digest")
    if said and said != digest.text:
        raise RegistryError(method, str(resp.request.url), resp.status_code, "DIGEST_INVALID",
                            f"the registry stored {said}, not {digest}")


# -- a blob produced on the fly -------------------------------------------------------------------------
class SpoolSink:
    """A blob being produced: spooled to an anonymous temp file while hashed, uploaded on commit
    (from the file, so a failed upload can be retried without producing the blob again)."""

    def __init__(self, upload: Upload, spool_dir: str | None = None) -> None:
        self._upload = upload
        self._dir = spool_dir or tempfile.gettempdir()
        try:
            self._file = tempfile.TemporaryFile(prefix="regfp-blob-", dir=spool_dir)  # noqa: SIM115
        except OSError as e:
            raise self._failed(e) from None
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)
        self._size += len(data)
        try:
            self._file.write(data)
        except OSError as e:
            raise self._failed(e) from None

    def _failed(self, e: OSError) -> RegfpError:
        # Not the OSError itself: a full spool disk must not read as "cannot read" on the file being copied.
        return RegfpError(f"cannot spool a blob for upload in {self._dir} (TMPDIR): {e.strerror or e}")

    def commit(self, media_type: str, expected: Descriptor | None = None) -> Descriptor:
        try:
            digest = Digest("sha256", self._hash.hexdigest())
            if expected is not None:
                if expected.size != self._size:
                    raise SizeMismatch(f"blob {expected.digest}", expected.size, self._size)
                if expected.digest != digest:
                    raise DigestMismatch(f"blob {expected.digest}", expected.digest.text, digest.text)
            desc = Descriptor(media_type, digest, self._size)
            try:
                self._file.flush()
            except OSError as e:
                raise self._failed(e) from None
            self._upload(desc, self._reopen)
            return desc
        finally:
            self.abort()

    def abort(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass  # flushing what was buffered failed (a full disk): it is being thrown away anyway

    def _reopen(self) -> _Unclosed:
        self._file.seek(0)
        return _Unclosed(self._file)


class _Unclosed:
    """A view of the spool file whose ``close`` leaves the file open for the next try."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def close(self) -> None:
        pass

    def __enter__(self) -> _Unclosed:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def spool(stream: ByteReader, desc: Descriptor, upload: Upload,
          spool_dir: str | None = None) -> None:
    """Copy a one-shot stream to a spool file (checking it is ``desc``), then upload from there."""
    sink = SpoolSink(upload, spool_dir)
    try:
        while chunk := stream.read(CHUNK):
            sink.write(chunk)
    except BaseException:
        sink.abort()
        raise
    sink.commit(desc.media_type, expected=desc)
