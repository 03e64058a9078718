"""Helm charts as Helm 3 pushes them, checked field by field against Helm's documented format (the
"Helm chart manifest" of helm.sh/docs/topics/registries, the media types of pkg/registry/constants.go,
the annotations of pkg/registry/chart.go and chart.Metadata's JSON), on the real local registry."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import regfp, regfp_json
from registry_support import Registry

pytest_plugins = ["registry_fixtures"]

CONFIG = "application/vnd.cncf.helm.config.v1+json"
CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
PROV = "application/vnd.cncf.helm.chart.provenance.v1.prov"

CHART_YAML = """\
apiVersion: v2
name: demo
description: "A demo  chart\\tfor <regfp> & friends"
version: 0.1.0+build.7
appVersion: "1.16.0"
type: application
home: https://example.com/demo
sources:
  - https://git.example.com/demo
  - https://mirror.example.com/demo
keywords: [demo, test]
maintainers:
  - name: Ada
    email: ada@example.com
  - name: Bob
annotations:
  org.opencontainers.image.title: not-the-name
  category: testing
  org.opencontainers.image.url: https://override.example.com
unknownField: ignored
"""
# json.Marshal(chart.Metadata): Go field order, empty fields left out, whitespace sanitised to spaces,
# <, > and & escaped as Go's encoder does. Written out by hand from Helm's struct, not by regfp.
EXPECTED_CONFIG = (
    '{"name":"demo","home":"https://example.com/demo","sources":["https://git.example.com/demo",'
    '"https://mirror.example.com/demo"],"version":"0.1.0+build.7","description":"A demo  chart for '
    '\\u003cregfp\\u003e \\u0026 friends","keywords":["demo","test"],"maintainers":[{"name":"Ada",'
    '"email":"ada@example.com"},{"name":"Bob"}],"apiVersion":"v2","appVersion":"1.16.0","annotations":'
    '{"category":"testing","org.opencontainers.image.title":"not-the-name",'
    '"org.opencontainers.image.url":"https://override.example.com"},"type":"application"}'
)
CREATED = "2024-05-06T07:08:09Z"


def package_chart(directory: Path, chart_yaml: str = CHART_YAML, name: str = "demo") -> Path:
    """A chart archive as ``helm package`` lays it out: everything under ``<name>/``."""
    buf = io.BytesIO()
    files = {f"{name}/Chart.yaml": chart_yaml.encode(), f"{name}/values.yaml": b"replicas: 1\n",
             f"{name}/templates/deployment.yaml": b"kind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n"}
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{name}-0.1.0+build.7.tgz"
    out.write_bytes(gzip.compress(buf.getvalue(), mtime=1_700_000_000))
    return out


def raw_manifest(registry: Registry, repository: str, reference: str) -> tuple[bytes, str]:
    resp = httpx.get(f"http://{registry.host}/v2/{repository}/manifests/{reference}",
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert resp.status_code == 200
    return resp.content, resp.headers["content-type"]


def blob_bytes(registry: Registry, repository: str, digest: str) -> bytes:
    return httpx.get(f"http://{registry.host}/v2/{repository}/blobs/{digest}", follow_redirects=True).content


def test_chart_push_matches_helms_format_field_by_field_and_pulls_back(registry: Registry, tmp_path: Path) -> None:
    chart = package_chart(tmp_path / "pkg")
    ns = f"charts{uuid.uuid4().hex[:8]}"
    out = regfp_json("data", "push", str(chart), "--to", f"oci://{registry.host}/{ns}", "--created", CREATED)
    assert out["kind"] == "helm"  # detected: a .tgz with <name>/Chart.yaml
    repository = f"{ns}/demo"  # helm push appends the chart name to the namespace
    assert registry.tag_exists(repository, "0.1.0_build.7")  # '+' is not allowed in tags; Helm uses '_'
    data, content_type = raw_manifest(registry, repository, "0.1.0_build.7")
    assert content_type == "application/vnd.oci.image.manifest.v1+json"
    assert hashlib.sha256(data).hexdigest() == out["digest"].split(":")[1]
    manifest = json.loads(data)
    # Helm marshals ocispec.Manifest with schemaVersion, config, layers, annotations: no mediaType field.
    assert list(manifest) == ["schemaVersion", "config", "layers", "annotations"]
    assert manifest["schemaVersion"] == 2
    assert data.startswith(b'{"schemaVersion":2,"config":{"mediaType":"' + CONFIG.encode() + b'","digest":')
    config_bytes = blob_bytes(registry, repository, manifest["config"]["digest"])
    assert manifest["config"] == {"mediaType": CONFIG, "digest": "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
                                  "size": len(config_bytes)}
    assert config_bytes.decode() == EXPECTED_CONFIG
    tgz = chart.read_bytes()
    assert manifest["layers"] == [{"mediaType": CHART, "digest": "sha256:" + hashlib.sha256(tgz).hexdigest(),
                                   "size": len(tgz)}]
    assert blob_bytes(registry, repository, manifest["layers"][0]["digest"]) == tgz  # the .tgz as it is
    assert manifest["annotations"] == {
        "org.opencontainers.image.title": "demo",  # chart annotations cannot override title and version
        "org.opencontainers.image.version": "0.1.0+build.7",
        "org.opencontainers.image.description": "A demo  chart for <regfp> & friends",
        "org.opencontainers.image.url": "https://override.example.com",  # but may override the rest
        "org.opencontainers.image.created": CREATED,
        "org.opencontainers.image.source": "https://git.example.com/demo",
        "org.opencontainers.image.authors": "Ada (ada@example.com), Bob",
        "category": "testing",
    }
    assert list(manifest["annotations"]) == sorted(manifest["annotations"])  # Go writes map keys sorted
    dest = tmp_path / "pulled"
    pulled = regfp_json("data", "pull", f"{registry.host}/{repository}:0.1.0_build.7", str(dest))
    assert [p["path"] for p in pulled["files"]] == ["demo-0.1.0+build.7.tgz"]
    assert (dest / "demo-0.1.0+build.7.tgz").read_bytes() == tgz
    # Same chart and time: same digest (and a repository already ending with the name is kept).
    again = regfp_json("data", "push", str(chart), "--to", f"{registry.host}/{repository}", "--format", "helm",
                       "--created", CREATED)
    assert again["digest"] == out["digest"]


def test_provenance_layer_layout_names_and_created_default(tmp_path: Path) -> None:
    chart = package_chart(tmp_path / "pkg")
    prov = chart.with_name(chart.name + ".prov")
    prov.write_text("-----BEGIN PGP SIGNED MESSAGE-----\nfake provenance\n")
    layout = tmp_path / "layout"
    env_epoch = {"SOURCE_DATE_EPOCH": "86400", "PATH": "/usr/bin:/bin"}
    import os

    out = regfp_json("data", "push", str(chart), "--to", f"oci:{layout}", env={**os.environ, **env_epoch})
    index = json.loads((layout / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == \
        ["demo:0.1.0_build.7"]
    manifest = json.loads((layout / "blobs/sha256" / out["digest"].split(":")[1]).read_bytes())
    assert manifest["annotations"]["org.opencontainers.image.created"] == "1970-01-02T00:00:00Z"
    digests = {CHART: "sha256:" + hashlib.sha256(chart.read_bytes()).hexdigest(),
               PROV: "sha256:" + hashlib.sha256(prov.read_bytes()).hexdigest()}
    assert sorted((la["mediaType"], la["digest"]) for la in manifest["layers"]) == sorted(digests.items())
    assert [la["digest"] for la in manifest["layers"]] == sorted(digests.values())  # Helm sorts by digest
    regfp("data", "pull", f"oci:{layout}:demo:0.1.0_build.7", str(tmp_path / "out"))
    assert (tmp_path / "out/demo-0.1.0+build.7.tgz").read_bytes() == chart.read_bytes()
    assert (tmp_path / "out/demo-0.1.0+build.7.tgz.prov").read_bytes() == prov.read_bytes()
    # Without --created or SOURCE_DATE_EPOCH the time is the archive's mtime, as helm push records it.
    os.utime(chart, (1_000_000_000, 1_000_000_000))
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    out = regfp_json("data", "push", str(chart), "--to", f"oci:{tmp_path}/l2", env=env)
    manifest = json.loads((tmp_path / "l2/blobs/sha256" / out["digest"].split(":")[1]).read_bytes())
    assert manifest["annotations"]["org.opencontainers.image.created"] == "2001-09-09T01:46:40Z"


@pytest.mark.parametrize("chart_yaml, message", [
    ("apiVersion: v2\nname: demo\n", "version is required"),
    ("apiVersion: v2\nname: demo\nversion: one.two\n", "not SemVer"),
    ("apiVersion: v2\nversion: 1.0.0\n", "name is required"),
    ("apiVersion: v2\nname: demo\nversion: 1.0.0\ntype: plugin\n", "application or library"),
    ("apiVersion: v2\nname: [a\n", "cannot load Chart.yaml"),
])
def test_invalid_charts_are_refused_before_anything_is_written(tmp_path: Path, chart_yaml: str, message: str) -> None:
    chart = package_chart(tmp_path / "pkg", chart_yaml)
    proc = regfp("data", "push", str(chart), "--format", "helm", "--to", f"oci:{tmp_path}/never", check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "never").exists()


def test_chart_tag_mismatch_and_plain_tgz_as_data(tmp_path: Path) -> None:
    chart = package_chart(tmp_path / "pkg")
    proc = regfp("data", "push", str(chart), "--to", f"oci:{tmp_path}/l:demo:latest", check=False)
    assert proc.returncode == 2 and "tag of a Helm chart is its version" in proc.stderr
    # --format data stores the same .tgz as a plain file layer.
    out = regfp_json("data", "push", str(chart), "--format", "data", "--to", f"oci:{tmp_path}/l:demo:latest")
    assert out["kind"] == "data" and out["configMediaType"] == "application/vnd.oci.empty.v1+json"
    # A .tgz that is not a chart is data, whatever its name.
    other = tmp_path / "backup.tgz"
    other.write_bytes(gzip.compress(b"not a tar"))
    assert regfp_json("data", "push", str(other), "--to", f"oci:{tmp_path}/l:b:1")["kind"] == "data"


def test_a_hostile_chart_name_is_refused_on_pull(tmp_path: Path) -> None:
    from regctl_fp.oci.config import ImageConfig
    from regctl_fp.oci.descriptor import Descriptor
    from regctl_fp.oci.digest import Digest
    from regctl_fp.oci.frozen import EMPTY
    from regctl_fp.oci.image import Image, Layer
    from regctl_fp.stores.base import write_image
    from regctl_fp.stores.layout import LayoutStore

    payload = b"\x1f\x8b not really a chart"
    config = json.dumps({"name": "../../evil", "version": "1.0.0"}).encode()
    with LayoutStore.open_or_create(tmp_path / "l") as store:
        desc = Descriptor(CHART, Digest.of(payload), len(payload))
        store.put_blob(io.BytesIO(payload), desc)
        image = Image(config=ImageConfig(EMPTY), layers=(Layer(desc, None, lambda: store.open_blob(desc)),),
                      config_media_type=CONFIG, raw_config=config)
        store.set_names({"evil:1": write_image(store, image)})
    dest = tmp_path / "a" / "b"
    proc = regfp("data", "pull", f"oci:{tmp_path}/l:evil:1", str(dest), check=False)
    assert proc.returncode == 2 and "refusing chart file name" in proc.stderr
    assert not (tmp_path / "evil-1.0.0.tgz").exists() and not dest.exists()
