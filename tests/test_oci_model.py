"""The pure OCI model: digests, descriptors, manifests (OCI and Docker v2 schema 2), indexes, configs,
images, and ``validate`` as the oracle that must catch every kind of broken image."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regctl_fp.layers import file_entry, symlink_entry, write_layer
from regctl_fp.oci import mediatypes as mt
from regctl_fp.oci.canonical import canonical_json
from regctl_fp.oci.config import History, ImageConfig
from regctl_fp.oci.descriptor import Descriptor, Platform
from regctl_fp.oci.digest import Digest
from regctl_fp.oci.errors import DigestMismatch, InvalidDigest, InvalidDocument, RegfpError, SizeMismatch
from regctl_fp.oci.image import Image, Layer
from regctl_fp.oci.manifest import Index, Manifest, sniff_media_type
from regctl_fp.oci.validate import ValidationError, validate
from regctl_fp.oci.verify import VerifyingReader, read_verified

HEX = "0123456789abcdef" * 4
D1 = f"sha256:{HEX}"
D2 = f"sha256:{'ab' * 32}"
D512 = f"sha512:{'0f' * 64}"


# ---- digests -------------------------------------------------------------------------------------

def test_digest_accepts_sha256_and_sha512() -> None:
    for text, alg in ((D1, "sha256"), (D512, "sha512")):
        d = Digest.parse(text)
        assert (d.algorithm, d.text, str(d)) == (alg, text, text)
        assert d.short == text.split(":")[1][:12]
        assert d.hasher().name == alg
    assert Digest.of(b"abc") == Digest("sha256", hashlib.sha256(b"abc").hexdigest())
    assert Digest.of(b"abc", "sha512").hex == hashlib.sha512(b"abc").hexdigest()


@pytest.mark.parametrize("text", [
    "md5:" + "0" * 32,
    "sha384:" + "0" * 96,
    "sha1:" + "0" * 40,
    "sha256:" + HEX.upper(),
    "sha256:" + HEX[:-1],
    "sha256:" + HEX + "0",
    "sha512:" + HEX,
    "sha256:" + HEX[:-1] + "g",
    "SHA256:" + HEX,
    "sha256" + HEX,
    "sha256:",
    ":" + HEX,
    "",
    "sha256:" + HEX + "\n",
    " sha256:" + HEX,
    "sha256:" + HEX[:-1] + "\u0660",  # an Arabic-Indic zero is a digit to \d, not to a digest
    "sha256:" + HEX[:-2] + "\uff21" + "0",  # a fullwidth A
])
def test_digest_refuses(text: str) -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(text)


def test_digest_refuses_non_strings() -> None:
    for value in (None, 42, b"sha256:" + HEX.encode(), [D1]):
        with pytest.raises(InvalidDigest):
            Digest.parse(value)  # type: ignore[arg-type]


near_digests = st.builds(lambda alg, hex_: f"{alg}:{hex_}",
                         st.sampled_from(["sha256", "sha512", "sha384", "md5", "SHA256", "sha-256", ""]),
                         st.text(alphabet="0123456789abcdefABCDEFg", min_size=60, max_size=130))


@settings(max_examples=300)
@given(st.one_of(st.text(), near_digests))
def test_digest_parse_total(text: str) -> None:
    try:
        d = Digest.parse(text)
    except InvalidDigest:
        return
    assert d.text == text
    assert len(d.hex) == {"sha256": 64, "sha512": 128}[d.algorithm]


# ---- descriptors, manifests, indexes ---------------------------------------------------------------

FULL_DESCRIPTOR = {
    "mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 1234,
    "annotations": {"org.opencontainers.image.ref.name": "v1", "x": ""},
    "platform": {"architecture": "arm64", "os": "linux", "variant": "v8", "os.version": "10.0",
                 "os.features": ["win32k"], "features": ["sse4"]},
    "artifactType": "application/vnd.example+json", "urls": ["https://example.com/blob"], "data": "e30=",
}


def test_descriptor_round_trip() -> None:
    d = Descriptor.from_dict(FULL_DESCRIPTOR)
    assert d.to_dict() == FULL_DESCRIPTOR
    assert d.platform == Platform("linux", "arm64", "v8", "10.0", ("win32k",), ("sse4",))
    assert d.ref_name == "v1"
    assert Descriptor.from_dict(d.to_dict()) == d
    minimal = {"mediaType": mt.OCI_LAYER_GZIP, "digest": D2, "size": 0}
    assert Descriptor.from_dict(minimal).to_dict() == minimal


@pytest.mark.parametrize("change", [
    {"size": -1}, {"size": 1.5}, {"size": True}, {"size": "12"}, {"size": None},
    {"digest": "sha256:abc"}, {"digest": None}, {"mediaType": "nope"}, {"mediaType": 7},
    {"mediaType": "application/vnd oci"}, {"annotations": {"k": 1}}, {"annotations": ["k"]},
    {"urls": "https://x"}, {"urls": [1]}, {"platform": {"os": "linux"}}, {"platform": "linux/amd64"},
    {"platform": {"os": "linux", "architecture": "arm", "variant": 7}},
    {"platform": {"os": "linux", "architecture": "arm", "os.features": 5}},
    {"platform": {"os": "linux", "architecture": "arm", "features": "sse"}},
    {"platform": {"os": "linux", "architecture": "arm", "os.version": ["10"]}},
    {"artifactType": "plain"},
])
def test_descriptor_refuses(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidDocument):
        Descriptor.from_dict({**FULL_DESCRIPTOR, **change})


OCI_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_MANIFEST,
    "config": {"mediaType": mt.OCI_CONFIG, "digest": D1, "size": 321},
    "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": D2, "size": 99},
               {"mediaType": mt.OCI_LAYER_ZSTD, "digest": D512, "size": 5, "annotations": {"a": "b"}}],
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    "subject": {"mediaType": mt.OCI_MANIFEST, "digest": D2, "size": 7},
    "artifactType": "application/vnd.example.sbom",
}

# As `docker push` writes it (Docker image manifest v2, schema 2), byte-for-byte layout included.
DOCKER_MANIFEST = b"""{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1469,
      "digest": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 2814446,
         "digest": "sha256:abababababababababababababababababababababababababababababababab"
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
         "size": 1000,
         "digest": "sha256:abababababababababababababababababababababababababababababababab",
         "urls": ["https://mcr.microsoft.com/v2/windows/blobs/x"]
      }
   ]
}"""

DOCKER_LIST = json.dumps({
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_LIST,
    "manifests": [
        {"mediaType": mt.DOCKER_MANIFEST, "digest": D1, "size": 528,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": mt.DOCKER_MANIFEST, "digest": D2, "size": 528,
         "platform": {"architecture": "arm", "os": "linux", "variant": "v6"}},
        {"mediaType": mt.DOCKER_MANIFEST, "digest": "sha256:" + "cd" * 32, "size": 528,
         "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
        {"mediaType": mt.DOCKER_MANIFEST, "digest": "sha256:" + "ef" * 32, "size": 528,
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
    ],
}, indent=3).encode()


def test_oci_manifest_round_trip() -> None:
    data = json.dumps(OCI_MANIFEST, indent=2).encode()
    m = Manifest.parse(data)
    assert m.media_type == mt.OCI_MANIFEST
    assert m.config.digest == Digest.parse(D1)
    assert [d.size for d in m.layers] == [99, 5]
    assert m.layers[1].annotations == {"a": "b"}
    assert m.subject is not None and m.subject.size == 7
    assert m.artifact_type == "application/vnd.example.sbom"
    assert json.loads(m.to_bytes()) == OCI_MANIFEST
    assert m.to_bytes() == json.dumps(OCI_MANIFEST, sort_keys=True, separators=(",", ":")).encode()
    assert Manifest.parse(m.to_bytes()) == m
    assert sniff_media_type(data) == mt.OCI_MANIFEST


def test_docker_v2_schema2_manifest_parses() -> None:
    m = Manifest.parse(DOCKER_MANIFEST, mt.DOCKER_MANIFEST)
    assert m.media_type == mt.DOCKER_MANIFEST
    assert m.config.media_type == mt.DOCKER_CONFIG
    assert [mt.LAYER_COMPRESSION[d.media_type] for d in m.layers] == ["gzip", "gzip"]
    assert m.layers[1].urls == ("https://mcr.microsoft.com/v2/windows/blobs/x",)
    assert Manifest.parse(m.to_bytes()) == m
    assert sniff_media_type(DOCKER_MANIFEST) == mt.DOCKER_MANIFEST


def test_docker_manifest_list_parses_and_selects() -> None:
    index = Index.parse(DOCKER_LIST)
    assert index.media_type == mt.DOCKER_LIST
    assert sniff_media_type(DOCKER_LIST) == mt.DOCKER_LIST
    assert index.select(Platform("linux", "amd64")).digest == Digest.parse(D1)
    assert index.select(Platform("linux", "arm", "v7")).digest.hex == "cd" * 32
    assert index.select(Platform("linux", "arm", "v6")).digest == Digest.parse(D2)
    assert index.select(Platform("linux", "arm64")).digest.hex == "ef" * 32  # v8 is arm64's only variant
    assert Index.parse(index.to_bytes()) == index


def _index(*platforms: dict[str, Any] | None, media_type: str = mt.OCI_MANIFEST) -> Index:
    manifests = []
    for i, p in enumerate(platforms):
        d: dict[str, Any] = {"mediaType": media_type, "digest": f"sha256:{i:064x}", "size": 10 + i}
        if p is not None:
            d["platform"] = p
        manifests.append(d)
    return Index.parse(json.dumps({"schemaVersion": 2, "manifests": manifests}).encode())


def test_index_select_normalises_the_arm64_variant() -> None:
    amd = {"os": "linux", "architecture": "amd64"}
    plain = _index(amd, {"os": "linux", "architecture": "arm64"})
    with_v8 = _index(amd, {"os": "linux", "architecture": "arm64", "variant": "v8"})
    for index in (plain, with_v8):
        for want in ("linux/arm64", "linux/arm64/v8"):
            assert index.select(Platform.parse(want)).size == 11, (index, want)
        assert index.select(Platform.parse("linux/amd64")).size == 10
    with pytest.raises(InvalidDocument, match="linux/arm64/v9"):
        plain.select(Platform.parse("linux/arm64/v9"))


def test_index_select_refusals() -> None:
    index = _index({"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm", "variant": "v7"})
    with pytest.raises(InvalidDocument, match="linux/amd64, linux/arm/v7"):
        index.select(Platform("windows", "amd64"))
    with pytest.raises(InvalidDocument, match="pick a platform"):
        index.select(None)
    with pytest.raises(InvalidDocument):
        index.select(Platform("linux", "arm", "v6"))
    assert _index(None).select(None).size == 10  # a single entry needs no platform
    # Attestations and other non-image entries are never picked, even when they are the only match.
    attest = _index({"os": "unknown", "architecture": "unknown"}, media_type="application/vnd.in-toto+json")
    with pytest.raises(InvalidDocument):
        attest.select(Platform("unknown", "unknown"))


@pytest.mark.parametrize(("doc", "media_type", "reason"), [
    ({**OCI_MANIFEST, "schemaVersion": 1}, None, "schemaVersion"),
    ({**OCI_MANIFEST, "schemaVersion": "2"}, None, "schemaVersion"),
    ({k: v for k, v in OCI_MANIFEST.items() if k != "config"}, None, "descriptor"),
    ({**OCI_MANIFEST, "layers": {}}, None, "layers"),
    ({**OCI_MANIFEST, "layers": [1]}, None, "descriptor"),
    ({**OCI_MANIFEST, "manifests": []}, None, "index"),
    ({**OCI_MANIFEST, "mediaType": mt.OCI_INDEX}, None, "unsupported"),
    ({**OCI_MANIFEST, "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws"}, None,
     "unsupported"),
    (OCI_MANIFEST, mt.DOCKER_MANIFEST, "differs"),
    ({**OCI_MANIFEST, "annotations": {"a": 1}}, None, "annotations"),
    ({**OCI_MANIFEST, "subject": "x"}, None, "descriptor"),
    ({**OCI_MANIFEST, "artifactType": 5}, None, "media type"),
    ([OCI_MANIFEST], None, "object"),
])
def test_manifest_parse_refuses(doc: Any, media_type: str | None, reason: str) -> None:
    with pytest.raises(InvalidDocument, match=reason):
        Manifest.parse(json.dumps(doc).encode(), media_type)


@pytest.mark.parametrize("data", [
    b"", b"{", b"\xff\xfe", b"null", b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"schemaVersion": NaN}', b'{"schemaVersion": 2, "x": Infinity}', b'{"schemaVersion": -Infinity}',
    b'{"schemaVersion": ' + b"9" * 5000 + b"}",
], ids=["empty", "open", "utf16-bom", "null", "deep-array", "deep-object", "nan", "infinity", "-infinity",
        "huge-int"])
def test_malformed_json_is_an_invalid_document(data: bytes) -> None:
    for parse in (Manifest.parse, Index.parse, sniff_media_type):
        with pytest.raises(InvalidDocument):
            parse(data)  # type: ignore[operator]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
KEYS = ["schemaVersion", "mediaType", "config", "layers", "manifests", "annotations", "subject", "artifactType",
        "digest", "size", "platform", "os", "architecture", "variant", "os.features", "features", "urls",
        "rootfs", "diff_ids", "type", "history", "Env", "Labels", "data", "os.version"]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(doc: Any, data: st.DataObject) -> Any:
    """A valid document with one to three faults: a value replaced by arbitrary JSON, a field dropped, or
    a field added. Few faults per document, so parsing gets deep before it meets one."""
    doc = json.loads(json.dumps(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(doc)))
        action = data.draw(st.sampled_from(["replace", "drop", "add"]))
        if not path:
            if action == "replace":
                doc = data.draw(json_values)
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        node = parent[path[-1]]
        if action == "add" and isinstance(node, dict):
            node[data.draw(st.sampled_from(KEYS))] = data.draw(json_values)
        elif action == "drop":
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_values)
    return doc


SEEDS = [OCI_MANIFEST, json.loads(DOCKER_MANIFEST), json.loads(DOCKER_LIST),
         {"schemaVersion": 2, "manifests": [FULL_DESCRIPTOR]}]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_parsers_raise_only_regfp_errors(data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        doc = _mutate(data.draw(st.sampled_from(SEEDS)), data)
    else:
        doc = data.draw(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6))
    raw = json.dumps(doc).encode()
    for parse in (Manifest.parse, Index.parse, sniff_media_type):
        try:
            result = parse(raw)  # type: ignore[operator]
        except InvalidDocument:
            continue
        if isinstance(result, (Manifest, Index)):
            assert type(result).parse(result.to_bytes()) == result  # whatever parses, round-trips
    if isinstance(result := _try(Index.parse, raw), Index):
        for want in (None, Platform("linux", "amd64"), Platform("linux", "arm64", "v8")):
            _try(result.select, want)


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_parsers_on_arbitrary_bytes(raw: bytes) -> None:
    for parse in (Manifest.parse, Index.parse, sniff_media_type):
        _try(parse, raw)


def _try(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except RegfpError as e:
        assert isinstance(e, InvalidDocument)
        return e


# ---- image config ----------------------------------------------------------------------------------

DOCKER_CONFIG: dict[str, Any] = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2024-03-01T10:00:00.123456789Z",
    "docker_version": "24.0.7",
    "container": "a1b2c3",
    "container_config": {"Hostname": "a1b2c3", "Cmd": ["/bin/sh", "-c", "#(nop) CMD [\"sh\"]"]},
    "moby.buildkit.buildinfo.v1": "e30=",
    "config": {
        "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=/root"],
        "Cmd": ["sh"],
        "ExposedPorts": {"8080/tcp": {}},
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000},
        "Volumes": {"/data": {}},
        "StopSignal": "SIGTERM",
        "Labels": {"maintainer": "someone"},
        "OnBuild": None,
    },
    "rootfs": {"type": "layers", "diff_ids": [D1]},
    "history": [
        {"created": "2024-03-01T10:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:x in /",
         "x-tool-comment": {"kept": True}},
        {"created": "2024-03-01T10:00:01Z", "created_by": "/bin/sh -c #(nop) CMD [\"sh\"]", "empty_layer": True},
    ],
}


def _without(doc: dict[str, Any], *paths: str) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    for path in paths:
        *parents, last = path.split("/")
        node = out
        for p in parents:
            node = node[p]
        node.pop(last, None)
    return out


def test_config_edits_keep_unknown_fields() -> None:
    cfg = ImageConfig.from_dict(DOCKER_CONFIG)
    edited = (cfg.with_env({"LANG": "en_US.UTF-8", "ZED": "1", "APP": "x"})
                 .with_labels({"org.opencontainers.image.version": "2"})
                 .with_container(WorkingDir="/app", User="1000")
                 .with_fields(author="me", os_version="5.1")
                 .with_appended_layer(Digest.parse(D2), History(created_by="regfp test")))
    doc = json.loads(edited.to_bytes())
    changed = ("config/Env", "config/Labels", "config/WorkingDir", "config/User", "author", "os.version",
               "rootfs", "history")
    assert _without(doc, *changed) == _without(DOCKER_CONFIG, *changed)
    assert doc["config"]["Env"] == ["PATH=/usr/bin:/bin", "LANG=en_US.UTF-8", "HOME=/root", "APP=x", "ZED=1"]
    assert doc["config"]["Labels"] == {"maintainer": "someone", "org.opencontainers.image.version": "2"}
    assert doc["rootfs"] == {"type": "layers", "diff_ids": [D1, D2]}
    assert doc["history"][:2] == DOCKER_CONFIG["history"]  # including a field regfp does not know
    assert doc["history"][2] == {"created_by": "regfp test"}
    assert edited.diff_ids == (Digest.parse(D1), Digest.parse(D2))
    assert cfg.to_bytes() == canonical_json(DOCKER_CONFIG)  # the original value is untouched


def test_with_env_order() -> None:
    cfg = ImageConfig.new().with_container(Env=["B=1", "A=2", "C=3"])
    assert cfg.with_env({}).env == ("B=1", "A=2", "C=3")
    assert cfg.with_env({"A": "new", "Z": "z", "M": "m=with=equals"}).env == (
        "B=1", "A=new", "C=3", "M=m=with=equals", "Z=z")
    assert cfg.with_env({"A": "x"}).with_env({"A": "y"}).env_map == {"B": "1", "A": "y", "C": "3"}
    assert ImageConfig.new().with_env({"b": "2", "a": "1"}).env == ("a=1", "b=2")


def test_config_null_container_can_be_edited() -> None:
    cfg = ImageConfig.from_dict({**DOCKER_CONFIG, "config": None})
    assert cfg.env == ()
    assert cfg.with_env({"A": "1"}).env == ("A=1",)
    assert cfg.with_labels({"k": "v"}).labels == {"k": "v"}


@pytest.mark.parametrize("change", [
    {"rootfs": {"type": "layers", "diff_ids": ["sha256:short"]}},
    {"rootfs": {"type": "tar", "diff_ids": []}},
    {"rootfs": {"type": "layers", "diff_ids": D1}},
    {"config": {"Env": "A=1"}},
    {"config": {"Env": ["A=1", 2]}},
    {"config": {"Labels": {"a": 1}}},
    {"config": []},
    {"history": [1]},
    {"os": 5},
])
def test_config_refuses(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidDocument):
        ImageConfig.from_dict({**DOCKER_CONFIG, **change})


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_descriptor_and_config_parsers_are_total(data: st.DataObject) -> None:
    """Faults injected into a full descriptor and a Docker config: refused as InvalidDocument, or parsed
    into values whose accessors and edits work."""
    try:
        d = Descriptor.from_dict(_mutate(FULL_DESCRIPTOR, data))
    except InvalidDocument:
        pass
    else:
        assert Descriptor.from_dict(d.to_dict()) == d
        if d.platform is not None:
            assert Platform.from_dict(d.platform.to_dict()) == d.platform
            str(d.platform)
            d.platform.matches(Platform("linux", "arm64"))
    try:
        cfg = ImageConfig.from_dict(_mutate(DOCKER_CONFIG, data))
    except InvalidDocument:
        return
    assert len(cfg.diff_ids) == len(cfg.doc.get("rootfs", {}).get("diff_ids", ()))
    assert isinstance(cfg.env_map, dict) and isinstance(cfg.history, tuple) and cfg.platform
    edited = cfg.with_env({"A": "1"}).with_labels({"k": "v"}).with_appended_layer(Digest.parse(D1), History())
    assert edited.env[-1] == "A=1"
    assert edited.diff_ids[-1] == Digest.parse(D1)
    assert ImageConfig.from_dict(json.loads(edited.to_bytes())) == edited


# ---- images and validate() ------------------------------------------------------------------------

class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def commit(self, media_type: str) -> Descriptor:
        return Descriptor(media_type, Digest.of(bytes(self.data)), len(self.data))

    def abort(self) -> None:
        pass


def _layer(content: bytes, compression: str = "gzip") -> tuple[bytes, Descriptor, Digest]:
    sink = _Sink()
    written = write_layer([file_entry("data", content), symlink_entry("link", "data")], sink, mtime=0,
                          compression=compression)
    return bytes(sink.data), written.descriptor, written.diff_id


def _opener(blob: bytes) -> Callable[[], io.BytesIO]:
    return lambda: io.BytesIO(blob)


def _image(*contents: bytes, compression: str = "gzip") -> Image:
    config = ImageConfig.new(created="2024-01-01T00:00:00Z")
    layers = []
    for c in contents:
        blob, desc, diff_id = _layer(c, compression)
        layers.append(Layer(desc, diff_id, _opener(blob)))
        config = config.with_appended_layer(diff_id, History(created_by=f"layer {len(layers)}"))
    return Image(config=config, layers=tuple(layers))


def _problems(image: Image) -> list[str]:
    with pytest.raises(ValidationError) as err:
        validate(image)
    return err.value.problems


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_a_good_image_validates(compression: str) -> None:
    image = _image(b"one", b"two" * 1000, compression=compression)
    validate(image)
    parsed = Manifest.parse(image.manifest_bytes)
    assert parsed.config.digest == Digest.of(image.config_bytes)
    assert [d.media_type for d in parsed.layers] == [mt.OCI_LAYER_FOR[compression]] * 2
    assert image.digest == _image(b"one", b"two" * 1000, compression=compression).digest  # a value


def test_validate_catches_a_wrong_diff_id() -> None:
    good = _image(b"one")
    wrong = Digest.of(b"something else")
    layer = Layer(good.layers[0].descriptor, wrong, good.layers[0].opener)
    bad = Image(config=good.config.with_layers([wrong], good.config.history), layers=(layer,))
    (problem,) = _problems(bad)
    assert "uncompressed content hashes to" in problem and str(wrong) in problem


def test_validate_catches_a_layer_diff_id_that_disagrees_with_the_config() -> None:
    good = _image(b"one")
    layer = Layer(good.layers[0].descriptor, Digest.of(b"other"), good.layers[0].opener)
    problems = _problems(Image(config=good.config, layers=(layer,)))
    assert any("!= config" in p for p in problems)


def test_validate_catches_a_wrong_layer_digest() -> None:
    good = _image(b"one")
    desc = good.layers[0].descriptor
    other_blob, _, _ = _layer(b"two")
    bad_desc = Descriptor(desc.media_type, Digest.of(b"not the blob"), desc.size)
    bad = Image(config=good.config, layers=(Layer(bad_desc, good.layers[0].diff_id, good.layers[0].opener),))
    (problem,) = _problems(bad)
    assert "content hashes to " + str(desc.digest) in problem
    swapped = Image(config=good.config, layers=(Layer(desc, good.layers[0].diff_id, _opener(other_blob)),))
    assert _problems(swapped)


def test_validate_catches_a_wrong_size() -> None:
    good = _image(b"one")
    desc = good.layers[0].descriptor
    bigger = Descriptor(desc.media_type, desc.digest, desc.size + 1)
    (problem,) = _problems(Image(config=good.config,
                                 layers=(Layer(bigger, good.layers[0].diff_id, good.layers[0].opener),)))
    assert f"size {desc.size} != descriptor {desc.size + 1}" in problem


def test_validate_catches_a_truncated_blob() -> None:
    good = _image(b"x" * 100_000 + bytes(range(256)) * 100)
    with good.layers[0].open() as f:
        blob = f.read()
    for cut in (len(blob) - 8, len(blob) // 2, 10, 0):
        short = Layer(good.layers[0].descriptor, good.layers[0].diff_id, _opener(blob[:cut]))
        assert _problems(Image(config=good.config, layers=(short,))), cut
    extra = Layer(good.layers[0].descriptor, good.layers[0].diff_id, _opener(blob + b"\0" * 7))
    assert _problems(Image(config=good.config, layers=(extra,)))


def test_validate_catches_count_mismatches_and_missing_fields() -> None:
    good = _image(b"one", b"two")
    one_layer = Image(config=good.config, layers=good.layers[:1])
    problems = _problems(one_layer)
    assert "config lists 2 diff_ids for 1 layers" in problems
    assert "history has 2 non-empty entries for 1 layers" in problems
    no_arch = good.with_config(good.config.with_fields(architecture=None))
    assert "config lacks 'os' or 'architecture'" in _problems(no_arch)


def test_validate_reports_unreadable_layers_and_non_layer_types() -> None:
    good = _image(b"one")

    def broken() -> io.BytesIO:
        raise OSError("disk on fire")

    unreadable = Image(config=good.config, layers=(Layer(good.layers[0].descriptor, good.layers[0].diff_id, broken),))
    (problem,) = _problems(unreadable)
    assert "disk on fire" in problem
    desc = good.layers[0].descriptor
    odd = Descriptor("application/octet-stream", desc.digest, desc.size)
    assert any("not a layer type" in p
               for p in _problems(Image(config=good.config, layers=(Layer(odd, good.layers[0].diff_id,
                                                                           good.layers[0].opener),))))


def test_image_keeps_raw_bytes_until_changed() -> None:
    good = _image(b"one")
    pretty_manifest = json.dumps(good.manifest.to_dict(), indent=4).encode()
    pretty_config = json.dumps(json.loads(good.config_bytes), indent=1).encode()
    manifest = Manifest.parse(pretty_manifest)
    manifest = Manifest(config=Descriptor(mt.OCI_CONFIG, Digest.of(pretty_config), len(pretty_config)),
                        layers=manifest.layers)
    raw = json.dumps(manifest.to_dict(), indent=4).encode()
    read = Image.from_manifest(manifest, pretty_config, good.layers, raw)
    assert read.manifest_bytes == raw
    assert read.digest == Digest.of(raw)
    validate(read)
    changed = read.with_annotations({"dev.regfp.stage": "test"})
    assert changed.manifest_bytes == changed.manifest.to_bytes()  # canonical once changed
    assert changed.config_bytes == pretty_config  # the config did not change: its bytes stay
    assert changed.digest != read.digest
    validate(changed)
    reconfigured = read.with_config(read.config.with_env({"A": "1"}))
    assert reconfigured.config_bytes == reconfigured.config.to_bytes()
    validate(reconfigured)


def test_docker_image_validates() -> None:
    blob, desc, diff_id = _layer(b"docker")
    config = ImageConfig.from_dict({**DOCKER_CONFIG, "rootfs": {"type": "layers", "diff_ids": [diff_id.text]},
                                    "history": DOCKER_CONFIG["history"][:1]})
    layer = Layer(Descriptor(mt.DOCKER_LAYER_GZIP, desc.digest, desc.size), diff_id, _opener(blob))
    image = Image(config=config, layers=(layer,), media_type=mt.DOCKER_MANIFEST, config_media_type=mt.DOCKER_CONFIG)
    validate(image)
    assert Manifest.parse(image.manifest_bytes).media_type == mt.DOCKER_MANIFEST


# ---- verified reads --------------------------------------------------------------------------------

def test_verifying_reader() -> None:
    data = b"payload" * 1000
    d = Digest.of(data)
    assert read_verified(io.BytesIO(data), d, len(data), "blob", 1 << 20) == data
    with pytest.raises(SizeMismatch):
        read_verified(io.BytesIO(data[:-1]), d, len(data), "blob", 1 << 20)
    with pytest.raises(SizeMismatch):
        read_verified(io.BytesIO(data + b"!"), d, len(data), "blob", 1 << 20)
    with pytest.raises(DigestMismatch):
        read_verified(io.BytesIO(data[:-1] + b"?"), d, len(data), "blob", 1 << 20)
    with pytest.raises(SizeMismatch):
        read_verified(io.BytesIO(data), d, len(data), "blob", 100)  # over the limit: refused unread
    r = VerifyingReader(io.BytesIO(data + b"more"), d, len(data), "blob")  # type: ignore[arg-type]
    with pytest.raises(SizeMismatch):
        r.read()
