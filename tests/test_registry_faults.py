"""Faults between regfp and the real registry, injected by a proxy: 5xx, 429 with Retry-After, a
connection reset or closed in the middle of a blob, a stalled response. Each push either completes or
fails with a clear error, and in no case does a tag point at a manifest whose blobs are missing (checked
in the registry's own storage, not through regfp)."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest
from conftest import regfp
from registry_support import Fault, FaultProxy, Registry, blobs_of, make_image

from regctl_fp.errors import RegistryError
from regctl_fp.oci.descriptor import Descriptor
from regctl_fp.stores.layout import LayoutStore
from regctl_fp.stores.registry import RegistryStore
from regctl_fp.stores.transfer import copy_descriptor
from regctl_fp.stores.transport import ClientOptions, RegistryClient, RetryPolicy
from regctl_fp.verify import verify_layout

pytest_plugins = ["registry_fixtures"]

OPTIONS = ClientOptions(plain_http=True, read_timeout=0.5, retry=RetryPolicy(attempts=4, base_delay=0.01))


def image(tmp_path: Path, **kw: object) -> tuple[LayoutStore, Descriptor]:
    store = LayoutStore.open_or_create(tmp_path / f"src-{uuid.uuid4().hex[:6]}")
    return store, make_image(store, "app:1", **kw)


def push(host: str, src: LayoutStore, desc: Descriptor, repository: str, tag: str = "1") -> RegistryClient:
    c = RegistryClient(host, None, OPTIONS)
    try:
        store = RegistryStore(c).repository(repository)
        store.set_names({f"{repository}:{tag}": copy_descriptor(src, store, desc, jobs=4)})
    finally:
        c.close()
    return c


def pull(host: str, repository: str, tag: str, out: Path) -> RegistryClient:
    with RegistryClient(host, None, OPTIONS) as c, LayoutStore.open_or_create(out) as dst:
        store = RegistryStore(c).repository(repository)
        desc = store.resolve(f"{repository}:{tag}")
        dst.set_names({"pulled": copy_descriptor(store, dst, desc, jobs=4)})
        report = verify_layout(dst)
        assert report.ok, report.problems
    return c


def assert_tags_complete(reg: Registry, repository: str) -> list[str]:
    """Every tag of ``repository`` points at a manifest whose blobs the registry holds (read from its
    storage directory); returns the tags."""
    tags_dir = reg.storage / "docker/registry/v2/repositories" / repository / "_manifests/tags"
    tags = sorted(p.name for p in tags_dir.iterdir()) if tags_dir.is_dir() else []
    for tag in tags:
        digest = reg.tag_target(repository, tag)
        assert digest is not None
        manifest = json.loads(reg.blob_data(digest).read_bytes())
        for blob in [manifest["config"], *manifest["layers"]]:
            assert reg.has_layer_link(repository, blob["digest"]), f"{tag} -> {digest}: {blob['digest']} missing"
            assert reg.blob_data(blob["digest"]).is_file()
    return tags


def repo() -> str:
    return f"faults/{uuid.uuid4().hex[:12]}"


def test_server_errors_are_retried(registry: Registry, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    src, desc = image(tmp_path)
    repository = repo()
    fault_proxy.add(Fault("status", method="PUT", path=r"/blobs/uploads/", status=500, times=2))
    fault_proxy.add(Fault("status", method="HEAD", path=r"/blobs/sha256:", status=503, times=2))
    fault_proxy.add(Fault("status", method="PUT", path=r"/manifests/", status=502, times=1))
    c = push(fault_proxy.host, src, desc, repository)
    assert c.stats.retries >= 5
    assert sorted(s.status for s in fault_proxy.seen if s.fault) == [500, 500, 502, 503, 503]
    assert assert_tags_complete(registry, repository) == ["1"]
    assert registry.tag_target(repository, "1") == desc.digest.text
    pull(registry.host, repository, "1", tmp_path / "out")


@pytest.mark.parametrize(("code", "times", "ok"), [("DIGEST_INVALID", 2, True), ("DIGEST_INVALID", -1, False),
                                                   ("MANIFEST_INVALID", 1, False)])
def test_digest_invalid_for_a_manifest_is_tried_again_and_nothing_else_is(
        registry: Registry, fault_proxy: FaultProxy, tmp_path: Path, code: str, times: int, ok: bool) -> None:
    # distribution 2.8 answers DIGEST_INVALID to a manifest whose bytes do hash to its digest while a
    # concurrent upload of one of its blobs rewrites the blob's link: the registry's misreading, not ours.
    src, desc = image(tmp_path, layers=1)
    repository = repo()
    fault_proxy.add(Fault("status", method="PUT", path=r"/manifests/", status=400, code=code, times=times))
    if ok:
        push(fault_proxy.host, src, desc, repository)
        assert assert_tags_complete(registry, repository) == ["1"]
    else:
        with pytest.raises(RegistryError) as info:
            push(fault_proxy.host, src, desc, repository)
        assert info.value.status == 400 and info.value.code == code and info.value.method == "PUT"
        assert assert_tags_complete(registry, repository) == []
    puts = [s for s in fault_proxy.seen if s.method == "PUT" and "/manifests/" in s.path]
    # two refused then the digest PUT and the tag PUT; all four tries refused; one try for anything else
    assert len(puts) == {(True, 2): 4, (False, -1): OPTIONS.retry.attempts, (False, 1): 1}[(ok, times)]


def test_429_waits_as_long_as_retry_after_says(registry: Registry, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    src, desc = image(tmp_path, layers=1)
    repository = repo()
    fault_proxy.add(Fault("status", method="POST", path=r"/blobs/uploads/", status=429,
                          headers={"Retry-After": "1"}, times=1))
    push(fault_proxy.host, src, desc, repository)
    posts = [s for s in fault_proxy.seen if s.method == "POST"]  # the layer's and the config's, in parallel
    assert [s.status for s in posts].count(429) == 1 and [s.status for s in posts].count(202) == 2
    refused = next(s for s in posts if s.status == 429)
    assert posts[-1].time - refused.time >= 1.0  # the retry of the refused one came a full second later
    assert assert_tags_complete(registry, repository) == ["1"]


def test_retry_after_too_long_fails_at_once_with_a_clear_error(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    src, desc = image(tmp_path, layers=1)
    fault_proxy.add(Fault("status", method="HEAD", path=r"/blobs/", status=429, headers={"Retry-After": "3600"},
                          times=-1))
    started = time.monotonic()
    with pytest.raises(RegistryError) as info:
        push(fault_proxy.host, src, desc, repo())
    assert time.monotonic() - started < 5
    assert info.value.status == 429 and info.value.method == "HEAD" and "rate limited" in str(info.value)


def test_connection_reset_in_the_middle_of_an_upload(registry: Registry, fault_proxy: FaultProxy,
                                                     tmp_path: Path) -> None:
    src, desc = image(tmp_path, layers=2, size=600_000, compression="none")
    repository = repo()
    fault_proxy.add(Fault("reset_request", method="PUT", path=r"/blobs/uploads/", after=100_000, times=2))
    c = push(fault_proxy.host, src, desc, repository)
    assert c.stats.retries >= 2
    puts = [s for s in fault_proxy.seen if s.method == "PUT" and "/blobs/" in s.path]
    assert sum(1 for s in puts if s.fault == "reset_request") == 2
    assert assert_tags_complete(registry, repository) == ["1"]
    pull(registry.host, repository, "1", tmp_path / "out")


def test_download_resumes_after_the_connection_closes_mid_blob(registry: Registry, fault_proxy: FaultProxy,
                                                               tmp_path: Path) -> None:
    src, desc = image(tmp_path, layers=1, size=500_000, compression="none")
    repository = repo()
    push(registry.host, src, desc, repository)
    layer = blobs_of(src, desc)[1]
    fault_proxy.add(Fault("close_response", method="GET", path=layer.digest.hex, after=200_000, times=1))
    fault_proxy.add(Fault("reset_response", method="GET", path=layer.digest.hex, after=300_000, times=1))
    c = pull(fault_proxy.host, repository, "1", tmp_path / "out")
    gets = [s for s in fault_proxy.seen if s.method == "GET" and layer.digest.hex in s.path]
    assert [g.range for g in gets[:2]] == [None, "bytes=200000-"]  # resumed where the first one broke off
    assert len(gets) == 3 and gets[2].range is not None and c.stats.retries == 2
    assert (tmp_path / "out/blobs/sha256" / layer.digest.hex).stat().st_size == layer.size


def test_a_registry_refusing_big_bodies_gets_chunks(registry: Registry, fault_proxy: FaultProxy,
                                                    tmp_path: Path) -> None:
    src, desc = image(tmp_path, layers=1, size=300_000, compression="none")
    repository = repo()
    fault_proxy.add(Fault("status", method="PUT", path=r"/blobs/uploads/", status=413, min_body=100_000, times=-1))
    c = push(fault_proxy.host, src, desc, repository)
    assert c.stats.requests.get("PATCH", 0) >= 1
    assert [s.status for s in fault_proxy.seen if s.fault] == [413]
    assert assert_tags_complete(registry, repository) == ["1"]
    pull(registry.host, repository, "1", tmp_path / "out")


def test_stalled_responses_time_out_and_are_retried(registry: Registry, fault_proxy: FaultProxy,
                                                    tmp_path: Path) -> None:
    src, desc = image(tmp_path, layers=1, size=300_000, compression="none")
    repository = repo()
    fault_proxy.add(Fault("stall", method="HEAD", path=r"/manifests/", seconds=2.0, times=1))
    c = push(fault_proxy.host, src, desc, repository)
    assert c.stats.retries >= 1 and assert_tags_complete(registry, repository) == ["1"]
    layer = blobs_of(src, desc)[1]
    fault_proxy.add(Fault("stall", method="GET", path=layer.digest.hex, after=100_000, seconds=2.0, times=1))
    pull(fault_proxy.host, repository, "1", tmp_path / "out")
    ranges = [s.range for s in fault_proxy.seen if s.method == "GET" and layer.digest.hex in s.path]
    assert ranges == [None, "bytes=100000-"]


def test_a_failed_push_tags_nothing_and_a_rerun_sends_only_what_is_missing(
        registry: Registry, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    src, desc = image(tmp_path, layers=3, size=200_000, compression="none")
    repository = repo()
    doomed = blobs_of(src, desc)[2]
    fault_proxy.add(Fault("reset_request", method="PUT", path=rf"/blobs/uploads/.*{doomed.digest.hex}", after=50_000,
                          times=-1))
    with pytest.raises(RegistryError) as info:
        push(fault_proxy.host, src, desc, repository)
    err = info.value
    assert err.method == "PUT" and err.status is None and "connection" in str(err)
    assert "_state" not in str(err) and f"/v2/{repository}/blobs/uploads/" in err.url
    assert not registry.tag_exists(repository, "1")
    assert assert_tags_complete(registry, repository) == []
    assert not (registry.storage / "docker/registry/v2/repositories" / repository / "_manifests").exists()
    fault_proxy.clear()
    c = push(fault_proxy.host, src, desc, repository)
    assert c.stats.uploaded == doomed.size
    blob_puts = [s for s in fault_proxy.seen if s.method == "PUT" and "/blobs/uploads/" in s.path]
    assert len(blob_puts) == 1 and doomed.digest.hex in blob_puts[0].path
    assert assert_tags_complete(registry, repository) == ["1"]


def test_a_manifest_that_cannot_be_stored_is_never_tagged(registry: Registry, fault_proxy: FaultProxy,
                                                          tmp_path: Path) -> None:
    src, desc = image(tmp_path, layers=1)
    repository = repo()
    fault_proxy.add(Fault("status", method="PUT", path=r"/manifests/", status=500, times=-1))
    with pytest.raises(RegistryError) as info:
        push(fault_proxy.host, src, desc, repository)
    assert info.value.status == 500 and info.value.code == "UNKNOWN"
    assert re.fullmatch(rf"http://{fault_proxy.host}/v2/{repository}/manifests/sha256:[0-9a-f]{{64}}", info.value.url)
    assert not registry.tag_exists(repository, "1")
    assert len([s for s in fault_proxy.seen if s.method == "PUT" and "/manifests/" in s.path]) == OPTIONS.retry.attempts


def test_cli_reports_a_failed_push_in_one_line(busybox_rootfs: Path, registry: Registry,
                                               fault_proxy: FaultProxy) -> None:
    repository = repo()
    fault_proxy.add(Fault("status", method="PUT", path=r"/blobs/uploads/", status=503, times=-1))
    proc = regfp("copy", f"dir:{busybox_rootfs}", f"{fault_proxy.host}/{repository}:1", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert re.search(rf"PUT http://{fault_proxy.host}/v2/{repository}/blobs/uploads/\S+\?digest=sha256:\S+: "
                     r"HTTP 503 UNKNOWN", proc.stderr), proc.stderr
    assert not registry.tag_exists(repository, "1")
