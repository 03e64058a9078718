"""The attestation library: SPDX SBOMs of real images (checked by spdx-tools), SLSA provenance (checked
against the in-toto Statement schema and in-toto's own protobuf model), DSSE envelopes (checked by
securesystemslib), deterministic signatures, and the signing key's handling as a secret."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import need, regfp_json
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from project import make_project

from regctl_fp.attest import dsse
from regctl_fp.attest.facts import Input, SourceRef
from regctl_fp.attest.keys import load_public_key, load_signing_key
from regctl_fp.attest.provenance import StageRun, provenance_statement
from regctl_fp.attest.sbom import dependency_paths, image_created, image_sbom, sbom_json, sbom_statement
from regctl_fp.attest.scan import ScanLimits, inventory, scan_entries, scan_image_layers, scan_layer
from regctl_fp.errors import AttestationError, KeyFileError
from regctl_fp.layers import collect_tree, dir_entry, file_entry, opaque_entry, whiteout_entry, write_layer
from regctl_fp.oci.config import ImageConfig
from regctl_fp.oci.digest import Digest
from regctl_fp.oci.image import Image, Layer
from regctl_fp.stores.base import read_image
from regctl_fp.stores.layout import LayoutStore

ROOT = Path(__file__).resolve().parent.parent
SITE = "usr/lib/python3/dist-packages"
REMOVED_PKG = "Package: oldtool\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 0.9-1\n"


def _dpkg_record(package: str) -> str:
    """The host's own dpkg status record of ``package`` (real data, as Debian writes it)."""
    need("dpkg-query")
    done = subprocess.run(["dpkg-query", "-s", package], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"{package} is not installed on this host")
    return done.stdout


def _real_metadata() -> tuple[str, str, bytes]:
    """A real installed distribution's METADATA (PyYAML, a regfp dependency): name, version, bytes."""
    dist = importlib.metadata.distribution("PyYAML")
    text = dist.read_text("METADATA")
    assert text
    return dist.metadata["Name"], dist.version, text.encode()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The test project built with the real CLI, its base carrying a dpkg status database (the host's
    busybox-static record plus a removed package) and a Python distribution's METADATA."""
    root = tmp_path_factory.mktemp("attest-project")
    repo = make_project(root)
    name, version, metadata = _real_metadata()
    status = _dpkg_record("busybox-static").rstrip("\n") + "\n\n" + REMOVED_PKG
    for base in (root / "bases").iterdir():  # every channel's base: the patches are attested too
        (base / "var/lib/dpkg").mkdir(parents=True)
        (base / "var/lib/dpkg/status").write_text(status)
        info = base / SITE / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_bytes(metadata)
        for p in [base, *base.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    out = regfp_json("build", str(root / "recipe.yaml"))
    layout = LayoutStore.open(root / "out")
    images = {i["name"]: read_image(layout, layout.resolve(i["name"])) for i in out["images"]}  # type: ignore[index]
    return {"root": root, "images": images, "commit": repo.git("rev-parse", "HEAD"), "dist": (name, version)}


class _Rule:
    def __init__(self, from_: str, to: str) -> None:
        self.from_, self.to = from_, to


def _sbom(image: Image, name: str, commit: str, lockfiles: tuple[str, ...] = ()) -> bytes:
    source = SourceRef("hello", commit, url="https://git.example.com/acme/hello.git", subdir="app")
    found = inventory(scan_image_layers(image.layers, lockfiles))
    created = image_created(image)
    assert created is not None and created >= 1_700_000_000  # the commit time (tests/gitrepo.py's clock)
    data = sbom_json(image, found, name=name, created=created, source=source)
    assert image_sbom(image, name=name, source=source, lockfiles=lockfiles) == data  # the one-call form
    return data


def _pyspdxtools() -> str:
    """spdx-tools' checker, installed with the test extra beside this Python (CI runs ``.venv/bin/python``
    without the venv on PATH)."""
    beside = Path(sys.executable).parent / "pyspdxtools"
    return str(beside) if beside.exists() else need("pyspdxtools")


def _spdx_valid(tmp_path: Path, data: bytes, name: str = "sbom.spdx.json") -> None:
    path = tmp_path / name
    path.write_bytes(data)
    done = subprocess.run([_pyspdxtools(), "-i", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _packages(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in doc["packages"]}


def _related(doc: dict[str, Any], kind: str, element: str) -> str:
    return next(r["spdxElementId"] for r in doc["relationships"]
                if r["relatedSpdxElement"] == element and r["relationshipType"] == kind)


def test_sbom_of_every_built_image_is_valid_spdx_and_lists_its_packages(built: dict[str, Any], tmp_path: Path) -> None:
    locks = dependency_paths([_Rule(".", "/app")], ["requirements.lock", "vendor"])
    assert locks == ("app/requirements.lock", "app/vendor")
    dist_name, dist_version = built["dist"]
    busybox_version = _dpkg_record("busybox-static").split("\nVersion: ")[1].split("\n")[0]
    assert len(built["images"]) == 4  # the build and its patches onto the three channels
    keyfile = _key_file(tmp_path / "signing.key", "ecdsa")
    key = load_signing_key(keyfile, None)
    for n, (name, image) in enumerate(sorted(built["images"].items())):
        data = _sbom(image, name, built["commit"], locks)
        _spdx_valid(tmp_path, data, f"{n}.spdx.json")
        doc = json.loads(data)
        pkgs = _packages(doc)
        assert pkgs["busybox-static"]["versionInfo"] == busybox_version
        assert pkgs["busybox-static"]["sourceInfo"] == "built from the source package busybox"
        assert pkgs[dist_name]["versionInfo"] == dist_version
        assert pkgs["dep"]["versionInfo"] == "1.0"  # from the recipe's requirements.lock
        assert "oldtool" not in pkgs  # removed (deinstall) packages are not installed
        # The OS packages live in the base layer; the lockfile's package is the application's dependency.
        assert _related(doc, "CONTAINS", pkgs["busybox-static"]["SPDXID"]) == "SPDXRef-Layer-1"
        assert _related(doc, "CONTAINS", pkgs[dist_name]["SPDXID"]) == "SPDXRef-Layer-1"
        assert _related(doc, "DEPENDS_ON", pkgs["dep"]["SPDXID"]) == "SPDXRef-Source"
        layers = [p for p in doc["packages"] if p["SPDXID"].startswith("SPDXRef-Layer-")]
        assert sorted(p["checksums"][0]["checksumValue"] for p in layers) == sorted(la.digest.hex
                                                                                     for la in image.layers)
        assert pkgs[name]["checksums"] == [{"algorithm": "SHA256", "checksumValue": image.digest.hex}]
        assert doc["documentNamespace"].endswith(image.digest.hex)
        src = pkgs["hello"]
        assert src["downloadLocation"] == f"git+https://git.example.com/acme/hello.git@{built['commit']}"
        assert src["versionInfo"] == built["commit"]
        lock = next(f for f in doc["files"] if f["fileName"] == "./app/requirements.lock")
        assert {"algorithm": "SHA256", "checksumValue": hashlib.sha256(b"dep==1.0\n").hexdigest()} in lock["checksums"]
        assert f"in layer 2 ({image.layers[1].digest.text})" in lock["comment"]
        assert _sbom(image, name, built["commit"], locks) == data  # deterministic
        # As an attestation: an in-toto statement about this image, signed, verified by securesystemslib.
        payload = sbom_statement(name, image.digest, doc)
        jsonschema.validate(json.loads(payload), STATEMENT_SCHEMA, format_checker=jsonschema.FormatChecker())
        assert json.loads(payload)["subject"][0]["digest"] == {"sha256": image.digest.hex}
        _sslib_verify(dsse.sign(payload, key).to_json(), keyfile.with_suffix(".pub"), key.keyid)


@pytest.mark.parametrize(("rules", "deps", "paths"), [
    ([(".", "/app")], ["requirements.lock", "vendor"], ("app/requirements.lock", "app/vendor")),
    ([("requirements.lock", "/deps/")], ["requirements.lock"], ("deps/requirements.lock",)),
    ([("requirements.lock", "/deps/req.txt")], ["requirements.lock"], ("deps/req.txt",)),
    ([("src", "/srv"), ("lock/go.sum", "/srv/")], ["src/go.sum", "lock"], ("srv/go.sum",)),
    ([("vendor/a", "/opt/a")], ["vendor"], ("opt/a",)),
    ([("vendor/a", "/opt/")], ["vendor"], ("opt",)),  # a directory: its files go below /opt
    ([("src", "/srv")], ["other.lock"], ()),
])
def test_dependency_paths_follow_the_copy_rules(rules: list[tuple[str, str]], deps: list[str],
                                                 paths: tuple[str, ...]) -> None:
    tree = {"requirements.lock", "src/go.sum", "lock/go.sum", "vendor/a/x.txt", "other.lock"}
    assert dependency_paths([_Rule(f, t) for f, t in rules], deps, tree) == paths


@pytest.mark.parametrize(("data", "why"), [
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"payload": "e30=", "signatures": [{"sig": "AA=="}]}', "no payloadType"),
    (b'{"payload": "e30=", "payloadType": "t", "signatures": []}', "1 to 64 signatures"),
    (b'{"payload": "e30=", "payloadType": "t", "signatures": [%b]}' % b",".join([b'{"sig": "AA=="}'] * 65),
     "1 to 64 signatures"),
    (b'{"payload": "%%%", "payloadType": "t", "signatures": [{"sig": "AA=="}]}', "payload of the envelope is not"),
    (b'{"payload": "e30=", "payloadType": "t", "signatures": [{"keyid": 7, "sig": "AA=="}]}', "keyid string"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
])
def test_malformed_envelopes_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(AttestationError, match=why) as e:
        dsse.parse_envelope(data)
    assert e.value.exit_code == 1


def _write(store: LayoutStore, entries: list[Any]) -> Layer:
    written = write_layer(entries, store.blob_sink(), mtime=1_700_000_000, compression="gzip")
    return Layer(written.descriptor, written.diff_id, lambda d=written.descriptor: store.open_blob(d))


def test_scanning_while_writing_equals_scanning_the_blob_and_whiteouts_apply(tmp_path: Path) -> None:
    store = LayoutStore.open_or_create(tmp_path / "layout")
    name, version, metadata = _real_metadata()
    info = f"{SITE}/{name}-{version}.dist-info"
    apk = "P:musl\nV:1.2.5-r0\nA:x86_64\no:musl\n\nP:busybox\nV:1.36.1-r29\nA:x86_64\n"
    lower = [dir_entry("lib"), file_entry("lib/apk/db/installed", apk.encode()),
             file_entry(f"{info}/METADATA", metadata), file_entry("opt/tool/x.dist-info/METADATA",
                                                                   b"Name: x\nVersion: 1\n\nbody"),
             file_entry("etc/os-release", b'ID="alpine"\n')]
    upper = [whiteout_entry(info), opaque_entry("opt/tool"), file_entry("lib/apk/db/installed", apk.replace(
        "1.36.1-r29", "1.36.1-r30").encode())]
    layers = []
    for entries in (lower, upper):
        layer = _write(store, entries)
        assert scan_entries(entries) == scan_layer(layer)  # the same findings either way
        layers.append(layer)
    found = inventory([scan_layer(la) for la in layers])
    got = {(f.package.name, f.package.version, f.layer) for f in found.packages}
    # musl is unchanged since layer 0; busybox was upgraded in layer 1; the whiteouts removed both dists.
    assert got == {("musl", "1.2.5-r0", 0), ("busybox", "1.36.1-r30", 1)}
    assert found.os_id == "alpine"


def test_scan_limits_skip_and_say_so(tmp_path: Path) -> None:
    store = LayoutStore.open_or_create(tmp_path / "layout")
    big = ("Package: a\nStatus: install ok installed\nVersion: 1\n\n" * 40_000).encode()  # ~1.9 MB
    deep = "/".join(["d"] * 60) + "/y.dist-info/METADATA"
    layer = _write(store, [file_entry("var/lib/dpkg/status", big),
                           file_entry(deep, b"Name: deep\nVersion: 1\n\n"),
                           file_entry("usr/lib/z.dist-info/METADATA", b"Name: z\nVersion: 2\n\n")])
    limits = ScanLimits(member=1 << 20, total=4 << 20, depth=48, files=100)
    findings = scan_layer(layer, limits=limits)
    assert sorted(findings.skipped) == [(deep, "deeper than 48 components"),
                                        ("var/lib/dpkg/status", "larger than the 1048576-byte limit for such a file")]
    found = inventory([findings])
    assert [f.package.name for f in found.packages] == ["z"]  # too deep and too large: not read
    stale = b"Package: stale\nStatus: install ok installed\nVersion: 1\n\n"
    lower = scan_layer(_write(store, [file_entry("var/lib/dpkg/status", stale)]))
    assert [f.package.name for f in inventory([lower, findings]).packages] == ["z"]  # replaced, not kept
    image = Image(config=ImageConfig.new()).with_layers((layer,))
    doc = json.loads(sbom_json(image, found, name="t", created=0))
    assert "layer 1 /var/lib/dpkg/status (larger than the 1048576-byte" in doc["creationInfo"]["comment"]
    _spdx_valid(tmp_path, json.dumps(doc).encode())


_SCAN_MEASURED = """
import json, resource, sys
from regctl_fp.attest.scan import inventory, scan_layer
from regctl_fp.oci.descriptor import Descriptor
from regctl_fp.oci.digest import Digest
from regctl_fp.oci.image import Layer
from regctl_fp.stores.layout import LayoutStore
store = LayoutStore.open(sys.argv[1])
desc = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", Digest.parse(sys.argv[2]), int(sys.argv[3]))
findings = scan_layer(Layer(desc, None, lambda: store.open_blob(desc)), lockfiles=["app"])
found = inventory([findings])
print(json.dumps({"skipped": findings.skipped, "packages": len(found.packages),
                  "names": sorted({f.package.name for f in found.packages if not f.package.name.startswith("p")}),
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _fill(path: Path, head: bytes, line: bytes | None, size: int, numbered: bytes | None = None) -> None:
    """A file of about ``size`` bytes written in chunks: ``head``, then ``line`` repeated (or ``numbered``
    lines with a counter: all distinct)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(head)
        n = 0
        while f.tell() < size:
            if numbered is not None:
                f.write(b"".join(numbered % (n + i) for i in range(10_000)))
                n += 10_000
            else:
                assert line is not None
                f.write(line * 10_000)


def test_hostile_database_sizes_stay_bounded(tmp_path: Path) -> None:
    """A layer of oversized databases: a 100 MiB dpkg status (not read), 3 million distinct pins in a
    requirements file (listed up to the package cap), a 60 MiB METADATA (only its head read), a 9 MiB
    package-lock.json (over the JSON limit). The scan, in its own process, stays within a small RSS."""
    tree = tmp_path / "tree"
    _fill(tree / "var/lib/dpkg/status", b"", b"Package: a\nStatus: install ok installed\nVersion: 1\n\n", 100 << 20)
    _fill(tree / "app/requirements.txt", b"", None, 30 << 20, numbered=b"p%d==1\n")
    _fill(tree / SITE / "big-1.dist-info/METADATA", b"Name: big\nVersion: 1\n\n", b"x" * 99 + b"\n", 60 << 20)
    _fill(tree / "app/package-lock.json", b'{"packages": {"": {}', b', "node_modules/x": {"version": "1"}',
          9 << 20)
    with (tree / "app/package-lock.json").open("ab") as f:
        f.write(b"}}")
    store = LayoutStore.open_or_create(tmp_path / "layout")
    written = write_layer(collect_tree(tree), store.blob_sink(), mtime=0, compression="gzip")
    store.flush()  # into blobs/, where the other process looks
    d = written.descriptor
    done = subprocess.run([sys.executable, "-c", _SCAN_MEASURED, str(tmp_path / "layout"), d.digest.text,
                           str(d.size)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert sorted(map(tuple, got["skipped"])) == [
        ("app/package-lock.json", f"larger than the {8 << 20}-byte limit for such a file"),
        ("app/requirements.txt", "more than 50000 packages; the rest not listed"),
        ("var/lib/dpkg/status", f"larger than the {32 << 20}-byte limit for such a file")]
    assert got["names"] == ["big"] and got["packages"] == 50_001
    assert got["rss"] < 160 << 10, f"peak RSS {got['rss'] >> 10} MiB"  # ru_maxrss is in KiB


def test_identity_key_never_in_the_sbom(tmp_path: Path) -> None:
    store = LayoutStore.open_or_create(tmp_path / "layout")
    key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    ident = "var/run/secrets/regfp/identity"
    layer = _write(store, [file_entry(f"{ident}/tls.key", key_pem, 0o400), file_entry("app/requirements.txt",
                                                                                    b"flask==3.0.0\n")])
    # Even a recipe naming the secrets directory as a dependency path does not get the key read.
    found = inventory([scan_layer(layer, lockfiles=(ident, f"{ident}/tls.key", "app/requirements.txt"))])
    image = Image(config=ImageConfig.new()).with_layers((layer,))
    text = sbom_json(image, found, name="env", created=0)
    assert b"flask" in text  # the scan did run over this layer
    body = b"".join(key_pem.splitlines()[1:-1])
    for secret in (key_pem, body, body[:40], hashlib.sha256(key_pem).hexdigest().encode(),
                   hashlib.sha1(key_pem).hexdigest().encode(), b"tls.key"):
        assert secret not in text


# ---- keys and DSSE --------------------------------------------------------------------------------------

def _key_file(path: Path, kind: str, password: bytes | None = None, mode: int = 0o600) -> Path:
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa" else ed25519.Ed25519PrivateKey.generate()
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    os.chmod(path, mode)
    pub = path.with_suffix(".pub")
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def _statement(subject: Digest) -> bytes:
    run = StageRun(kind="build", key="k" * 64, recipe={"base": "stable", "copy": [{"from": ".", "to": "/app"}]},
                   source=SourceRef("hello", "a" * 40, url="https://git.example.com/acme/hello.git", subdir="app"),
                   inputs=[Input("base", "stable", Digest("sha256", "b" * 64)),
                           Input("polyfill", "oci:tools:apm:1", Digest("sha256", "c" * 64)),
                           Input("tool", "ghcr.io/acme/debug:1", Digest("sha256", "d" * 64),
                                 uri="ghcr.io/acme/debug@sha256:" + "d" * 64)],
                   started=1_700_000_000, finished=1_700_000_000, internal={"formatVersion": 7})
    return provenance_statement("build/hello:" + "a" * 40, subject, run)


# The in-toto Statement v1 layer, written from its specification (in-toto/attestation spec/v1/statement.md
# and resource_descriptor.md), plus the SLSA provenance v1 predicate's required fields (slsa.dev/provenance/v1).
STATEMENT_SCHEMA = {
    "type": "object", "required": ["_type", "subject", "predicateType", "predicate"],
    "additionalProperties": False,
    "properties": {
        "_type": {"const": "https://in-toto.io/Statement/v1"},
        "subject": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/subject"}},
        "predicateType": {"type": "string", "format": "uri", "minLength": 1},
        "predicate": {"type": "object"},
    },
    "$defs": {
        "digestSet": {"type": "object", "minProperties": 1,
                      "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]+$"}},
        "subject": {"type": "object", "required": ["digest"], "properties": {
            "name": {"type": "string"}, "digest": {"$ref": "#/$defs/digestSet"}}},
        "resourceDescriptor": {"type": "object", "anyOf": [{"required": ["uri"]}, {"required": ["digest"]},
                                                           {"required": ["content"]}],
                               "additionalProperties": False, "properties": {
                                   "name": {"type": "string"}, "uri": {"type": "string"},
                                   "digest": {"$ref": "#/$defs/digestSet"}, "content": {"type": "string"},
                                   "downloadLocation": {"type": "string"}, "mediaType": {"type": "string"},
                                   "annotations": {"type": "object"}}},
    },
}
PROVENANCE_SCHEMA = {
    "type": "object", "required": ["buildDefinition", "runDetails"], "additionalProperties": False,
    "properties": {
        "buildDefinition": {"type": "object", "required": ["buildType", "externalParameters"],
                            "additionalProperties": False, "properties": {
                                "buildType": {"type": "string", "format": "uri"},
                                "externalParameters": {"type": "object"}, "internalParameters": {"type": "object"},
                                "resolvedDependencies": {"type": "array",
                                                         "items": {"$ref": "#/$defs/resourceDescriptor"}}}},
        "runDetails": {"type": "object", "required": ["builder"], "additionalProperties": False, "properties": {
            "builder": {"type": "object", "required": ["id"],
                        "properties": {"id": {"type": "string", "format": "uri"}}},
            "metadata": {"type": "object", "additionalProperties": False, "properties": {
                "invocationId": {"type": "string"}, "startedOn": {"type": "string", "format": "date-time"},
                "finishedOn": {"type": "string", "format": "date-time"}}}}},
    },
    "$defs": STATEMENT_SCHEMA["$defs"],
}


def test_provenance_statement_is_a_valid_in_toto_slsa_statement() -> None:
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1.statement import Statement
    from in_toto_attestation.v1.statement_pb2 import Statement as StatementPb

    subject = Digest("sha256", "e" * 64)
    data = _statement(subject)
    doc = json.loads(data)
    checker = jsonschema.FormatChecker()
    jsonschema.validate(doc, STATEMENT_SCHEMA, format_checker=checker)
    jsonschema.validate(doc["predicate"], PROVENANCE_SCHEMA, format_checker=checker)
    # in-toto's own model: unknown fields are errors in a strict protobuf JSON parse.
    Statement.copy_from_pb(json_format.Parse(data, StatementPb())).validate()
    json_format.Parse(json.dumps(doc["predicate"]), provenance_pb2.Provenance())
    assert doc["subject"] == [{"name": "build/hello:" + "a" * 40, "digest": {"sha256": "e" * 64}}]
    deps = {d["name"]: d for d in doc["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["source:hello"]["digest"] == {"gitCommit": "a" * 40}
    assert deps["source:hello"]["uri"] == "git+https://git.example.com/acme/hello.git@" + "a" * 40
    assert deps["base:stable"]["digest"] == {"sha256": "b" * 64}
    assert set(deps) == {"source:hello", "base:stable", "polyfill:oci:tools:apm:1", "tool:ghcr.io/acme/debug:1"}
    ext = doc["predicate"]["buildDefinition"]["externalParameters"]
    assert ext["stage"] == {"kind": "build", "key": "k" * 64} and ext["recipe"]["base"] == "stable"
    assert data == _statement(subject)


def _sslib_verify(envelope: bytes, pub: Path, keyid: str) -> None:
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    key = SSlibKey.from_crypto(serialization.load_pem_public_key(pub.read_bytes()), keyid=keyid)  # type: ignore[arg-type]
    Envelope.from_dict(json.loads(envelope)).verify([key], 1)


def _flip(envelope: bytes) -> bytes:
    doc = json.loads(envelope)
    payload = bytearray(base64.b64decode(doc["payload"]))
    payload[len(payload) // 2] ^= 0x01
    doc["payload"] = base64.b64encode(bytes(payload)).decode()
    return json.dumps(doc).encode()


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
def test_dsse_envelope_verifies_with_securesystemslib_and_a_flipped_byte_fails(tmp_path: Path, kind: str) -> None:
    from securesystemslib.exceptions import VerificationError

    path = _key_file(tmp_path / f"{kind}.key", kind)
    key = load_signing_key(path, None)
    pub = load_public_key(path.with_suffix(".pub"))
    assert key.keyid == pub.keyid == hashlib.sha256(pub.key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    payload = _statement(Digest("sha256", "e" * 64))
    envelope = dsse.sign(payload, key).to_json()
    _sslib_verify(envelope, path.with_suffix(".pub"), key.keyid)
    assert dsse.verify(envelope, pub) == payload
    flipped = _flip(envelope)
    with pytest.raises(VerificationError):
        _sslib_verify(flipped, path.with_suffix(".pub"), key.keyid)
    with pytest.raises(AttestationError, match="does not match the content"):
        dsse.verify(flipped, pub)
    with pytest.raises(AttestationError, match="payloadType"):
        dsse.verify(envelope, pub, payload_type="application/spdx+json")
    other = load_public_key(_key_file(tmp_path / "other.key", kind).with_suffix(".pub"))
    with pytest.raises(AttestationError, match="no signature by key"):
        dsse.verify(envelope, other)
    doc = json.loads(envelope)  # the same signature claimed under the other key's id: still refused
    doc["signatures"][0]["keyid"] = other.keyid
    with pytest.raises(AttestationError, match="does not match the content"):
        dsse.verify(json.dumps(doc).encode(), other)


_SIGN_TWICE = """
import sys
from pathlib import Path
from regctl_fp.attest import dsse
from regctl_fp.attest.keys import load_signing_key
key = load_signing_key(Path(sys.argv[1]), None)
sys.stdout.buffer.write(dsse.sign(Path(sys.argv[2]).read_bytes(), key).to_json())
"""


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
def test_two_runs_give_byte_identical_envelopes(tmp_path: Path, kind: str) -> None:
    path = _key_file(tmp_path / f"{kind}.key", kind)
    payload = tmp_path / "statement.json"
    payload.write_bytes(_statement(Digest("sha256", "e" * 64)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [subprocess.run([sys.executable, "-c", _SIGN_TWICE, str(path), str(payload)], capture_output=True,
                           env=env, timeout=60, check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].startswith(b'{"payload":')
    sbom = sbom_statement("x", Digest("sha256", "e" * 64), {"spdxVersion": "SPDX-2.3"})
    key = load_signing_key(path, None)
    assert dsse.sign(sbom, key).to_json() == dsse.sign(sbom, key).to_json()


def test_encrypted_key_with_password_and_wrong_password(tmp_path: Path) -> None:
    path = _key_file(tmp_path / "locked.key", "ecdsa", password=b"correct horse")
    key = load_signing_key(path, "correct horse")
    assert dsse.verify(dsse.sign(b"{}", key).to_json(), load_public_key(path.with_suffix(".pub"))) == b"{}"
    with pytest.raises(KeyFileError) as wrong:
        load_signing_key(path, "battery staple")
    assert "wrong password" in wrong.value.message and "battery" not in wrong.value.message
    with pytest.raises(KeyFileError, match=r"attest\.keyPasswordEnv"):
        load_signing_key(path, None)
    assert wrong.value.exit_code == 2


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = _key_file(tmp_path / "open.key", "ed25519", mode=mode)
    with pytest.raises(KeyFileError, match=r"accessible to its group or others .*chmod 600"):
        load_signing_key(path, None)
    os.chmod(path, 0o600)
    assert load_signing_key(path, None).algorithm == "ed25519"


def test_key_file_must_be_regular_and_a_supported_type(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="is a FIFO"):
        load_signing_key(fifo, None)
    p384 = tmp_path / "p384.key"
    p384.write_bytes(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(p384, 0o600)
    with pytest.raises(KeyFileError, match="unsupported key type ECDSA on secp384r1"):
        load_signing_key(p384, None)


def test_signing_key_never_shows_its_material(tmp_path: Path) -> None:
    path = _key_file(tmp_path / "k.key", "ecdsa")
    pem = path.read_bytes()
    key = load_signing_key(path, None)
    body = b"".join(pem.splitlines()[1:-1]).decode()
    raw = key._SigningKey__key.private_numbers().private_value  # type: ignore[attr-defined]
    for shown in (repr(key), str(key), repr(key.public), repr(dsse.sign(b"x", key))):
        assert body[:24] not in shown and str(raw) not in shown and f"{raw:x}" not in shown
    with pytest.raises(TypeError):
        pickle.dumps(key)
    garbage = tmp_path / "g.key"
    garbage.write_bytes(pem.replace(b"M", b"N"))
    os.chmod(garbage, 0o600)
    with pytest.raises(KeyFileError) as bad:
        load_signing_key(garbage, None)
    assert body[:24] not in str(bad.value)


def test_identity_ca_shares_the_loader_and_names_a_wrong_password(tmp_path: Path) -> None:
    from pki import make_ca

    from regctl_fp.stages.identity import IdentityError, load_authority

    cert, keyfile, _, _ = make_ca(tmp_path, "locked-ca", password=b"correct horse")
    with pytest.raises(IdentityError, match=r"^CA key .*locked-ca.key: the password does not unlock it"):
        load_authority(cert, keyfile, "battery staple", now=1_700_000_000)
    assert load_authority(cert, keyfile, "correct horse", now=1_700_000_000).fingerprint
    os.chmod(keyfile, 0o644)  # the CA key keeps its old rule: readable keys are still accepted there
    assert load_authority(cert, keyfile, "correct horse", now=1_700_000_000).fingerprint
