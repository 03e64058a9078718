"""OCI 1.1 referrers (artifacts with a ``subject``): the artifact manifest, in a layout (listed in
index.json without a name, kept by gc while the subject lives), on the real distribution registry
(which has no referrers API: the referrers tag schema, updated safely by concurrent pushers), behind a
small front that serves the referrers API, and carried by ``copy``; oras, skopeo and umoci as
independent clients."""

from __future__ import annotations

import base64
import http.client
import json
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from conftest import need, regfp, regfp_json
from registry_support import Registry, make_image, serve, stop_serving

from regctl_fp.oci import mediatypes as mt
from regctl_fp.oci.descriptor import Descriptor
from regctl_fp.oci.digest import Digest
from regctl_fp.oci.manifest import Manifest
from regctl_fp.oci.referrer import EMPTY_DESCRIPTOR, artifact, referrers_tag
from regctl_fp.stores import referrers as R
from regctl_fp.stores.layout import LayoutStore
from regctl_fp.stores.registry import RegistryStore
from regctl_fp.stores.transfer import copy_descriptor
from regctl_fp.stores.transport import ClientOptions, RegistryClient, RetryPolicy

pytest_plugins = ["registry_fixtures"]

SBOM = "application/spdx+json"
PROVENANCE = "application/vnd.in-toto+json"
TITLE = "org.opencontainers.image.title"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def client(host: str) -> RegistryClient:
    return RegistryClient(host, None, ClientOptions(plain_http=True, retry=RetryPolicy(base_delay=0.01)))


def repo() -> str:
    return f"t/{uuid.uuid4().hex[:12]}"


def attest(store: LayoutStore, subject: Descriptor, kind: str, text: str) -> Descriptor:
    """An artifact of type ``kind`` about ``subject``, stored in ``store`` (not listed yet)."""
    art = artifact(subject, kind, text.encode(), kind, {"dev.example.note": text},
                   layer_annotations={TITLE: f"{kind.rpartition('/')[2]}.json"})
    return R.write_artifact(store, art)


def image_with_referrers(path: Path, name: str = "app:1") -> tuple[LayoutStore, Descriptor, Descriptor, Descriptor]:
    store = LayoutStore.open_or_create(path)
    subject = make_image(store, name, layers=1, size=4 << 10)
    sbom = attest(store, subject, SBOM, f"sbom {uuid.uuid4().hex}")
    prov = attest(store, subject, PROVENANCE, f"provenance {uuid.uuid4().hex}")
    store.add_referrers([sbom, prov])
    return store, subject, sbom, prov


# -- the artifact manifest -----------------------------------------------------------------------------
def test_artifact_manifest_is_the_oci_1_1_shape_and_deterministic() -> None:
    subject = Descriptor(mt.OCI_MANIFEST, Digest.of(b"image"), 5,
                         annotations={"org.opencontainers.image.ref.name": "x"})
    one = artifact(subject, SBOM, b'{"spdxVersion": "SPDX-2.3"}', SBOM, {"a": "1"})
    two = artifact(subject, SBOM, b'{"spdxVersion": "SPDX-2.3"}', SBOM, {"a": "1"})
    assert one.manifest_bytes == two.manifest_bytes
    doc = json.loads(one.manifest_bytes)
    assert doc["mediaType"] == mt.OCI_MANIFEST and doc["schemaVersion"] == 2
    assert doc["artifactType"] == SBOM
    assert doc["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_DIGEST,
                             "size": 2, "data": "e30="}
    assert base64.b64decode(doc["config"]["data"]) == b"{}" and Digest.of(b"{}").text == EMPTY_DIGEST
    assert doc["layers"] == [{"mediaType": SBOM, "digest": Digest.of(b'{"spdxVersion": "SPDX-2.3"}').text,
                              "size": 27}]
    # The subject is the image's descriptor, not where a layout keeps it (its name stays out).
    assert doc["subject"] == {"mediaType": mt.OCI_MANIFEST, "digest": subject.digest.text, "size": 5}
    assert doc["annotations"] == {"a": "1"}
    assert one.descriptor.artifact_type == SBOM and one.descriptor.annotations == {"a": "1"}
    assert artifact(subject, SBOM, b"other", SBOM).descriptor.digest != one.descriptor.digest
    with pytest.raises(ValueError):
        artifact(subject, SBOM, b"x", SBOM, {"org.opencontainers.image.ref.name": "named"})
    assert referrers_tag(subject.digest) == f"sha256-{subject.digest.hex}"


# -- layouts -------------------------------------------------------------------------------------------
def test_layout_lists_referrers_by_subject_and_type_without_naming_them(tmp_path: Path) -> None:
    _store, subject, sbom, prov = image_with_referrers(tmp_path / "l")
    entries = json.loads((tmp_path / "l/index.json").read_text())["manifests"]
    refs = [e for e in entries if e["digest"] in (sbom.digest.text, prov.digest.text)]
    assert len(refs) == 2
    for e in refs:  # untagged, marked with the subject, typed
        assert "org.opencontainers.image.ref.name" not in e["annotations"]
        assert e["annotations"]["dev.regfp.subject"] == subject.digest.text
        assert e["artifactType"] in (SBOM, PROVENANCE)
    fresh = LayoutStore.open(tmp_path / "l")
    assert list(fresh.names()) == ["app:1"]
    listed = fresh.referrers(subject.digest)
    assert {d.digest for d in listed} == {sbom.digest, prov.digest}
    assert all("dev.regfp.subject" not in d.annotations and "dev.example.note" in d.annotations for d in listed)
    assert [d.digest for d in fresh.referrers(subject.digest, SBOM)] == [sbom.digest]
    assert fresh.referrers(sbom.digest) == []
    # Listing again adds nothing: one entry per referrer.
    with LayoutStore.open_or_create(tmp_path / "l") as again:
        again.add_referrers([sbom])
    assert len(json.loads((tmp_path / "l/index.json").read_text())["manifests"]) == 3
    # Not a referrer: refused, nothing listed.
    with pytest.raises(Exception, match="no subject"):
        fresh.add_referrers([subject])


def test_gc_keeps_referrers_while_their_subject_is_named_and_drops_them_after(tmp_path: Path) -> None:
    store, subject, sbom, prov = image_with_referrers(tmp_path / "l")
    sig = attest(store, sbom, "application/vnd.example.signature", "signature of the sbom")  # a referrer's referrer
    store.add_referrers([sig])
    other = make_image(store, "other:1", layers=1, size=2 << 10)
    store.close()
    theirs = [sbom, prov, sig]
    blobs = {d.digest for d in theirs} | {Manifest.parse(store.get_manifest(d)).layers[0].digest for d in theirs}

    report = LayoutStore.open(tmp_path / "l").gc()
    assert report.removed == ()
    assert all(store.has_blob(b) for b in blobs)

    with LayoutStore.open_or_create(tmp_path / "l") as s:
        s.set_names({"app:1": None})
    dry = LayoutStore.open(tmp_path / "l").gc(dry_run=True)
    assert blobs <= {d for d, _ in dry.removed}
    assert len(json.loads((tmp_path / "l/index.json").read_text())["manifests"]) == 4  # a dry run writes nothing
    assert set(dry.referrers) == {d.digest for d in theirs}
    done = regfp_json("gc", str(tmp_path / "l"))
    assert set(done["droppedReferrers"]) == {d.digest.text for d in theirs}
    assert {r["digest"] for r in done["removed"]} == {d.text for d, _ in dry.removed}  # as the dry run said
    assert not any(store.has_blob(b) for b in blobs)
    again = LayoutStore.open(tmp_path / "l").gc()  # nothing left to drop
    assert again.referrers == () and again.removed == ()
    entries = json.loads((tmp_path / "l/index.json").read_text())["manifests"]
    assert [e["digest"] for e in entries] == [other.digest.text]
    after = LayoutStore.open(tmp_path / "l")
    assert after.referrers(subject.digest) == [] and store.has_blob(EMPTY_DESCRIPTOR.digest) is False
    assert regfp("verify", str(tmp_path / "l")).returncode == 0


def test_skopeo_and_umoci_still_read_a_layout_with_referrer_entries(tmp_path: Path, tool_env: dict[str, str]) -> None:
    store, subject, _sbom, _ = image_with_referrers(tmp_path / "l")
    store.close()
    listed = subprocess.run([need("umoci"), "ls", "--layout", str(tmp_path / "l")], capture_output=True,
                            text=True, env=tool_env, check=True).stdout.split()
    assert listed == ["app:1"]
    out = subprocess.run([need("skopeo"), "inspect", f"oci:{tmp_path / 'l'}:app:1"], capture_output=True,
                         text=True, env=tool_env, check=True).stdout
    assert json.loads(out)["Digest"] == subject.digest.text
    subprocess.run([need("umoci"), "stat", "--image", f"{tmp_path / 'l'}:app:1", "--json"], capture_output=True,
                   env=tool_env, check=True)


# -- the real registry: the referrers tag schema ---------------------------------------------------------
def test_registry_without_the_api_gets_the_fallback_tag_and_oras_pulls_a_referrer(registry: Registry,
                                                                                 tmp_path: Path) -> None:
    store, subject, sbom, prov = image_with_referrers(tmp_path / "l")
    r = repo()
    with client(registry.host) as c:
        dst = RegistryStore(c).repository(r)
        copy_descriptor(store, dst, subject)
        found = R.copy_referrers(store, dst, subject)
        dst.add_referrers(found)
        assert dst.referrers_api[r] is False  # distribution 2.8: no API, so the tag schema
        dst.set_names({f"{r}:v1": subject})
    raw = http.client.HTTPConnection(registry.host)
    raw.request("GET", f"/v2/{r}/manifests/{referrers_tag(subject.digest)}", headers={"Accept": mt.OCI_INDEX})
    resp = raw.getresponse()
    assert resp.status == 200
    index = json.loads(resp.read())
    assert index["mediaType"] == mt.OCI_INDEX
    assert {(m["digest"], m["artifactType"]) for m in index["manifests"]} == \
        {(sbom.digest.text, SBOM), (prov.digest.text, PROVENANCE)}
    assert all(m["annotations"]["dev.example.note"] for m in index["manifests"])
    with client(registry.host) as c:
        src = RegistryStore(c).repository(r)
        assert [d.digest for d in src.referrers(subject.digest, PROVENANCE)] == [prov.digest]
        assert list(src.names()) == [f"{r}:v1"]  # the referrers tag is not a name
    # An independent client pulls the attestation by digest.
    oras_client = pytest.importorskip("oras.client")
    files = oras_client.OrasClient(insecure=True).pull(target=f"{registry.host}/{r}@{sbom.digest}",
                                                       outdir=str(tmp_path / "oras"))
    assert [Path(f).name for f in files] == ["spdx+json.json"]
    assert (tmp_path / "oras/spdx+json.json").read_text().startswith("sbom ")


class _ReadThenWait:
    """Wraps a client's ``request`` so that after its first read of a referrers tag the thread waits for
    the other pusher to have read too: both then write an index made from the same (empty) state,
    which is the lost update a naive read-modify-write suffers."""

    def __init__(self, c: RegistryClient, barrier: threading.Barrier) -> None:
        self._request = c.request
        self._barrier = barrier
        self._waited = False
        c.request = self  # type: ignore[method-assign]

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._request(method, path, **kw)
        if not self._waited and method in ("HEAD", "GET") and re.search(r"/manifests/sha256-[0-9a-f]{64}$", path):
            self._waited = True
            self._barrier.wait(timeout=30)
        return resp


def test_concurrent_pushes_of_different_referrers_both_end_in_the_fallback_index(registry: Registry,
                                                                                  tmp_path: Path) -> None:
    store = LayoutStore.open_or_create(tmp_path / "l")
    subject = make_image(store, "app:1", layers=1, size=4 << 10)
    mine = [attest(store, subject, kind, f"{kind} {uuid.uuid4().hex}") for kind in (SBOM, PROVENANCE)]
    store.close()
    r = repo()
    with client(registry.host) as c:
        copy_descriptor(store, RegistryStore(c).repository(r), subject)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def push(ref: Descriptor) -> None:
        try:
            with client(registry.host) as c:
                _ReadThenWait(c, barrier)
                dst = RegistryStore(c).repository(r)
                copy_descriptor(store, dst, ref)
                R.publish(dst, r, [ref], settle=0.3)
        except BaseException as e:  # reported below, on the test's thread
            errors.append(e)

    threads = [threading.Thread(target=push, args=(ref,)) for ref in mine]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    with client(registry.host) as c:
        listed = RegistryStore(c).repository(r).referrers(subject.digest)
    assert {d.digest for d in listed} == {d.digest for d in mine}


def test_two_regfp_processes_copying_referrers_of_one_image_both_end_listed(registry: Registry,
                                                                            tmp_path: Path) -> None:
    """The same image with a different attestation in each of two layouts, copied at once by two CLI
    processes to one repository."""
    a = LayoutStore.open_or_create(tmp_path / "a")
    subject = make_image(a, "app:1", layers=1, size=4 << 10)
    a.close()
    regfp("copy", f"oci:{tmp_path / 'a'}:app:1", f"oci:{tmp_path / 'b'}:app:1", "--no-referrers")
    refs = []
    for side, kind in (("a", SBOM), ("b", PROVENANCE)):
        with LayoutStore.open_or_create(tmp_path / side) as s:
            ref = attest(s, subject, kind, f"{side} {uuid.uuid4().hex}")
            s.add_referrers([ref])
            refs.append(ref)
    r = repo()
    procs = [subprocess.Popen([*_cli(), "copy", f"oci:{tmp_path / side}:app:1", f"{registry.host}/{r}:v1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for side in ("a", "b")]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    listed = regfp_json("ls", f"{registry.host}/{r}")
    entry, = listed["entries"]  # the referrers tag is not shown as a name
    assert {x["digest"] for x in entry["referrers"]} == {d.digest.text for d in refs}


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "regctl_fp"]


# -- a registry with the referrers API ---------------------------------------------------------------------
class ReferrersFront:
    """A loopback front for the real registry that adds what distribution 2.8 lacks: it answers a
    manifest PUT carrying a ``subject`` with ``OCI-Subject`` and serves ``GET /v2/<name>/referrers/<digest>``
    (with the ``artifactType`` filter) from the manifests it saw pushed. Everything else is passed on."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.referrers: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.api_calls = 0
        # A hostile registry: "endless" links every answer to a next page; "huge" answers 64 MiB.
        self.hostile: str | None = None
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                m = re.fullmatch(r"/v2/(.+)/referrers/(sha256:[0-9a-f]{64})(?:\?artifactType=(.*)|\?page=\d+)?",
                                 self.path)
                if m is None:
                    return self._pass()
                front.api_calls += 1
                if front.hostile is not None:
                    return self._hostile(m.group(1), m.group(2))
                from urllib.parse import unquote

                want = unquote(m.group(3)) if m.group(3) else None
                listed = [d for d in front.referrers.get((m.group(1), m.group(2)), {}).values()
                          if want is None or d.get("artifactType") == want]
                body = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": listed}).encode()
                self.send_response(200)
                self.send_header("Content-Type", mt.OCI_INDEX)
                if want is not None:
                    self.send_header("OCI-Filters-Applied", "artifactType")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _hostile(self, name: str, subject: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", mt.OCI_INDEX)
                if front.hostile == "huge":
                    self.send_header("Content-Length", str(64 << 20))
                    self.end_headers()
                    chunk = b" " * (1 << 20)
                    for _ in range(64):
                        self.wfile.write(chunk)
                    return
                page = front.api_calls
                digest = Digest.of(f"page {page}".encode()).text
                body = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
                    {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": 10, "artifactType": SBOM}]}).encode()
                self.send_header("Link", f'</v2/{name}/referrers/{subject}?page={page}>; rel="next"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:
                self._pass()

            def do_HEAD(self) -> None:
                self._pass()

            def do_POST(self) -> None:
                self._pass()

            def do_PATCH(self) -> None:
                self._pass()

            def _pass(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                up = http.client.HTTPConnection(front.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "host")}
                up.request(self.command, self.path, body=body or None, headers=headers)
                resp = up.getresponse()
                data = resp.read()
                self.send_response_only(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                m = re.fullmatch(r"/v2/(.+)/manifests/([^/]+)", self.path)
                if self.command == "PUT" and m and resp.status == 201:
                    doc = json.loads(body)
                    if isinstance(doc.get("subject"), dict):
                        digest = Digest.of(body).text
                        front.referrers.setdefault((m.group(1), doc["subject"]["digest"]), {})[digest] = {
                            "mediaType": doc["mediaType"], "digest": digest, "size": len(body),
                            "artifactType": doc.get("artifactType") or doc["config"]["mediaType"],
                            "annotations": doc.get("annotations", {})}
                        self.send_header("OCI-Subject", doc["subject"]["digest"])
                # A HEAD has no body: its Content-Length is the upstream's, the size of what a GET returns.
                self.send_header("Content-Length", resp.getheader("Content-Length", "0") if self.command == "HEAD"
                                 else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                up.close()

        self._server = serve(Handler)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        stop_serving(self._server)


@pytest.fixture
def front(registry: Registry) -> Iterator[ReferrersFront]:
    f = ReferrersFront(registry.host)
    yield f
    f.stop()


def test_registry_with_the_api_lists_referrers_itself_and_no_fallback_tag_is_written(
        front: ReferrersFront, registry: Registry, tmp_path: Path) -> None:
    store, subject, sbom, prov = image_with_referrers(tmp_path / "l")
    store.close()
    r = repo()
    done = regfp_json("copy", f"oci:{tmp_path / 'l'}:app:1", f"{front.host}/{r}:v1")
    assert {x["digest"] for x in done["referrers"]} == {sbom.digest.text, prov.digest.text}
    assert front.api_calls == 0  # the OCI-Subject answers to the pushes said it all: no probe, no fallback
    with client(registry.host) as c:  # the registry itself, behind the front
        assert referrers_tag(subject.digest) not in RegistryStore(c).tags(r)
    with client(front.host) as c:
        src = RegistryStore(c).repository(r)
        assert {d.digest for d in src.referrers(subject.digest)} == {sbom.digest, prov.digest}
        assert [d.digest for d in src.referrers(subject.digest, SBOM)] == [sbom.digest]
        assert src.referrers_api[r] is True
    calls = front.api_calls
    pulled = regfp_json("copy", f"{front.host}/{r}:v1", f"oci:{tmp_path / 'back'}:app:1")
    assert front.api_calls > calls  # listed through the API
    assert {x["digest"] for x in pulled["referrers"]} == {sbom.digest.text, prov.digest.text}
    back = LayoutStore.open(tmp_path / "back")
    assert {d.digest for d in back.referrers(subject.digest)} == {sbom.digest, prov.digest}


@pytest.mark.parametrize("hostile", ["endless", "huge"])
def test_a_hostile_referrers_api_fails_cleanly_within_bounds(front: ReferrersFront, tmp_path: Path,
                                                              hostile: str) -> None:
    store = LayoutStore.open_or_create(tmp_path / "l")
    make_image(store, "app:1", layers=1, size=2 << 10)
    store.close()
    r = repo()
    regfp("copy", f"oci:{tmp_path / 'l'}:app:1", f"{front.host}/{r}:v1", "--no-referrers")
    front.hostile = hostile
    proc = subprocess.run([*_cli(), "inspect", f"{front.host}/{r}:v1"], capture_output=True, text=True,
                          timeout=60, preexec_fn=_cap_memory)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert ("64 pages" if hostile == "endless" else "larger than 4194304 bytes") in proc.stderr
    assert front.api_calls <= 64


def _cap_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (600 << 20, 600 << 20))  # regfp needs about 50 MB


# -- copy, ls, inspect -------------------------------------------------------------------------------------
def test_copy_carries_referrers_between_layouts_and_registries_unless_told_not_to(registry: Registry,
                                                                                tmp_path: Path) -> None:
    store, subject, sbom, prov = image_with_referrers(tmp_path / "l")
    store.close()
    want = {sbom.digest, prov.digest}
    regfp("copy", f"oci:{tmp_path / 'l'}:app:1", f"oci:{tmp_path / 'l2'}:app:1")
    assert {d.digest for d in LayoutStore.open(tmp_path / "l2").referrers(subject.digest)} == want
    regfp("copy", f"oci:{tmp_path / 'l'}:app:1", f"oci:{tmp_path / 'bare'}:app:1", "--no-referrers")
    assert LayoutStore.open(tmp_path / "bare").referrers(subject.digest) == []
    assert not LayoutStore.open(tmp_path / "bare").has_blob(sbom.digest)

    r = repo()
    regfp("copy", f"oci:{tmp_path / 'l2'}:app:1", f"{registry.host}/{r}:v1")
    regfp("copy", f"{registry.host}/{r}:v1", f"oci:{tmp_path / 'l3'}:app:1")
    l3 = LayoutStore.open(tmp_path / "l3")
    assert {d.digest for d in l3.referrers(subject.digest)} == want
    assert {d.artifact_type for d in l3.referrers(subject.digest)} == {SBOM, PROVENANCE}
    assert regfp("verify", str(tmp_path / "l3")).returncode == 0

    r2 = repo()
    regfp("copy", f"oci:{tmp_path / 'l'}:app:1", f"{registry.host}/{r2}:v1", "--no-referrers")
    with client(registry.host) as c:
        assert RegistryStore(c).tags(r2) == ["v1"]

    r3 = repo()  # registry to registry
    done = regfp_json("copy", f"{registry.host}/{r}:v1", f"{registry.host}/{r3}:v1")
    assert {x["digest"] for x in done["referrers"]} == {d.text for d in want}
    with client(registry.host) as c:
        assert {d.digest for d in RegistryStore(c).repository(r3).referrers(subject.digest)} == want


def test_a_referrers_tag_that_is_not_an_index_is_neither_read_nor_overwritten(registry: Registry,
                                                                               tmp_path: Path) -> None:
    store, subject, _, _ = image_with_referrers(tmp_path / "l")
    store.close()
    r = repo()
    with client(registry.host) as c:  # someone tagged an image where the referrers index belongs
        dst = RegistryStore(c).repository(r)
        copy_descriptor(store, dst, subject)
        dst.set_names({f"{r}:{referrers_tag(subject.digest)}": subject})
    proc = regfp("copy", f"oci:{tmp_path / 'l'}:app:1", f"{registry.host}/{r}:v1", check=False)
    assert proc.returncode != 0 and "not the image index of the referrers tag schema" in proc.stderr
    assert "Traceback" not in proc.stderr
    with client(registry.host) as c:
        dst = RegistryStore(c).repository(r)
        assert dst.resolve(f"{r}:{referrers_tag(subject.digest)}").digest == subject.digest  # left alone
        assert "v1" not in dst.tags(r)  # the tag moves only once the referrers are listed
        assert dst.referrers(subject.digest) == []  # listing treats it as no referrers, as the spec says


def test_ls_and_inspect_show_referrers(registry: Registry, tmp_path: Path) -> None:
    store, _subject, sbom, prov = image_with_referrers(tmp_path / "l")
    store.close()
    doc = regfp_json("ls", str(tmp_path / "l"))
    entry, = doc["entries"]  # referrers are not names
    assert entry["name"] == "app:1"
    assert sorted((x["artifactType"], x["digest"]) for x in entry["referrers"]) == \
        sorted([(SBOM, sbom.digest.text), (PROVENANCE, prov.digest.text)])
    text = regfp("ls", str(tmp_path / "l")).stdout
    assert f"{SBOM}  {sbom.digest}" in re.sub(r" +", "  ", text)
    shown = regfp_json("inspect", f"oci:{tmp_path / 'l'}:app:1")
    assert sorted((x["artifactType"], x["digest"]) for x in shown["referrers"]) == \
        sorted([(SBOM, sbom.digest.text), (PROVENANCE, prov.digest.text)])
    text = regfp("inspect", f"oci:{tmp_path / 'l'}:app:1").stdout
    assert "Referrers" in text and sbom.digest.text in text and PROVENANCE in text
    # The layout's only image is still its only image: referrers are not images of the layout.
    assert regfp_json("inspect", f"oci:{tmp_path / 'l'}")["digest"] == shown["digest"]

    r = repo()
    regfp("copy", f"oci:{tmp_path / 'l'}:app:1", f"{registry.host}/{r}:v1")
    shown = regfp_json("inspect", f"{registry.host}/{r}:v1")
    assert {x["digest"] for x in shown["referrers"]} == {sbom.digest.text, prov.digest.text}
    doc = regfp_json("ls", f"{registry.host}/{r}")
    assert [e["name"] for e in doc["entries"]] == ["v1"]
    assert {x["digest"] for x in doc["entries"][0]["referrers"]} == {sbom.digest.text, prov.digest.text}


# -- build --push ----------------------------------------------------------------------------------------
def test_build_push_carries_the_referrers_of_each_image_unless_told_not_to(tmp_path: Path, make_registry) -> None:  # type: ignore[no-untyped-def]
    from project import make_project

    make_project(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    built = regfp_json("build", str(recipe))
    layout = tmp_path / "out"
    names = {i["name"]: i["digest"] for i in built["images"]}
    build_name = next(n for n in names if n.startswith("build/"))
    store = LayoutStore.open_or_create(layout)
    subject = store.resolve(build_name)
    sbom = attest(store, subject, SBOM, f"sbom of {build_name}")
    prov = attest(store, subject, PROVENANCE, f"provenance of {build_name}")
    store.add_referrers([sbom, prov])
    store.close()
    # A later run of the engine moves names and keeps the referrer entries (one index.json replacement).
    again = regfp_json("build", str(recipe))
    assert all(i["cached"] for i in again["images"])
    assert {d.digest for d in LayoutStore.open(layout).referrers(subject.digest)} == {sbom.digest, prov.digest}

    for skip in (False, True):
        reg = make_registry()
        recipe.write_text(re.sub(r"push: \{prefix: [^}]*\}\n", "", recipe.read_text())
                          .replace("output: {layout: out}\n", f'push: {{prefix: "{reg.host}/acme"}}\n'
                                                              "output: {layout: out}\n"))
        regfp_json("build", str(recipe), "--push", *(["--no-referrers"] if skip else []))
        repository, _, tag = f"acme/{build_name}".rpartition(":")
        with client(reg.host) as c:
            store_r = RegistryStore(c).repository(repository)
            tags = store_r.tags(repository)
            listed = {d.digest for d in store_r.referrers(subject.digest)}
        assert tag in tags
        if skip:
            assert listed == set() and referrers_tag(subject.digest) not in tags
        else:
            assert listed == {sbom.digest, prov.digest} and referrers_tag(subject.digest) in tags
