"""Helm 3 chart artifacts, byte for byte as ``helm push`` writes them (Helm's pkg/registry).

The manifest has no ``mediaType`` field (Helm marshals ``ocispec.Manifest`` without one and sends the
type in the Content-Type header), the config ``application/vnd.cncf.helm.config.v1+json`` is the
chart's metadata as Go's ``json.Marshal`` writes it (field order of Helm's ``chart.Metadata``, empty
fields left out, strings sanitised as Helm's loader does), the chart ``.tgz`` is the one layer
``application/vnd.cncf.helm.chart.content.v1.tar+gzip`` (a ``.prov`` file, if given, a second
``application/vnd.cncf.helm.chart.provenance.v1.prov`` layer; layers sorted by digest), the
annotations are Helm's ``generateOCIAnnotations``, and the tag is the version with ``+`` turned into
``_``. ``created`` is an input (``helm push`` uses the archive's modification time).
"""

from __future__ import annotations

import gzip
import json
import re
import struct
import tarfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import InvalidInput
from ..oci import mediatypes as mt
from ..oci.config import ImageConfig
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.frozen import EMPTY, frozen_str_map
from ..oci.image import Image
from ..progress import SILENT, Progress
from ..stores.base import Store
from ..values import valueclass
from ..yamlguard import YamlTooLarge, check_bounds
from .data import _open_regular, store_file

CONFIG_MEDIA_TYPE = "application/vnd.cncf.helm.config.v1+json"
CHART_MEDIA_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
PROV_MEDIA_TYPE = "application/vnd.cncf.helm.chart.provenance.v1.prov"
LEGACY_CHART_MEDIA_TYPE = "application/tar+gzip"  # charts pushed before Helm 3.7
# OCI annotation keys Helm sets (image-spec annotations.go); title and version cannot be overridden.
A_TITLE = "org.opencontainers.image.title"
A_VERSION = "org.opencontainers.image.version"
A_DESCRIPTION = "org.opencontainers.image.description"
A_URL = "org.opencontainers.image.url"
A_CREATED = "org.opencontainers.image.created"
A_SOURCE = "org.opencontainers.image.source"
A_AUTHORS = "org.opencontainers.image.authors"
MAX_CHART_YAML = 5 << 20  # bytes; Helm's loader refuses larger files too
# Chart.yaml with its aliases expanded: any file Helm accepts, but no "billion laughs" (the config
# regfp writes from it is bounded again, by the limit it reads configs with).
MAX_CHART_YAML_EXPANDED = 2 * MAX_CHART_YAML
# Masterminds/semver NewVersion: loose SemVer ("v" prefix, missing minor/patch allowed).
_SEMVER = re.compile(r"v?(0|[1-9]\d*)(\.(0|[1-9]\d*))?(\.(0|[1-9]\d*))?"
                     r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?")


class ChartError(InvalidInput):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@valueclass
class Chart:
    """A chart archive's metadata, as Helm's loader sees it."""

    path: Path
    metadata: dict[str, Any]  # in chart.Metadata field order, empty fields left out

    @property
    def name(self) -> str:
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def tag(self) -> str:
        return chart_tag(self.version)

    @property
    def config_bytes(self) -> bytes:
        return go_json(self.metadata)

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}.tgz"


def chart_tag(version: str) -> str:
    """The OCI tag Helm uses for a chart version: ``+`` is not allowed in tags, ``_`` stands in."""
    return version.replace("+", "_")


# -- reading a chart archive ---------------------------------------------------------------------------
def is_chart_archive(path: Path) -> bool:
    """Whether ``path`` looks like what ``helm package`` writes: a .tgz whose first entries hold
    ``<name>/Chart.yaml`` (only the first few entries are read, so a big data file costs nothing).

    A gzip stream that holds no tar archive at all is not a chart. But a .tgz whose gzip or tar breaks
    is refused (``ChartError``) rather than answered "no": pushed as plain data, a chart nobody could
    read would vanish for ``helm pull``, and the user would not know.
    """
    if not path.name.endswith((".tgz", ".tar.gz")) or not path.is_file():
        return False
    try:
        with _open_regular(path) as f:
            if f.read(2) != b"\x1f\x8b":
                return False
        return _find_files(path, limit=16).get("Chart.yaml") is not None
    except _NotATar:
        return False
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ChartError(str(path), f"looks like a gzip tar archive (a Helm chart?) but cannot be read ({e}); "
                                    "to store it as a plain file, push it with --format data") from None
    except OSError as e:
        raise ChartError(str(path), f"cannot read: {e.strerror or e}") from None


class _NotATar(tarfile.ReadError):
    """The gzip stream decompresses, but its first block is not a tar header."""


def read_chart(path: Path) -> Chart:
    """The metadata of the chart archive at ``path`` (Chart.yaml, and requirements.yaml as Helm merges it)."""
    shown = str(path)
    try:
        files = _find_files(path, limit=None)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise ChartError(shown, f"not a readable chart archive (.tgz): {e}") from None
    chart_yaml = files.get("Chart.yaml")
    if chart_yaml is None:
        raise ChartError(shown, "no Chart.yaml at the top of the chart directory in the archive")
    meta = _unmarshal(_load_yaml(chart_yaml, shown, "Chart.yaml"), {}, shown, "Chart.yaml")
    if not meta.get("apiVersion"):
        meta["apiVersion"] = "v1"  # Helm 2 charts may omit it; Helm's loader assumes v1
    requirements = files.get("requirements.yaml")
    if requirements is not None:
        meta = _unmarshal(_load_yaml(requirements, shown, "requirements.yaml"), meta, shown, "requirements.yaml")
    _validate(meta, shown)
    return Chart(path, _ordered(meta))


def _find_files(path: Path, limit: int | None) -> dict[str, bytes]:
    """Chart.yaml and requirements.yaml of the chart (the archive's one top directory), streaming.

    The gzip layer is read by ``gzip`` and the tar by tarfile's plain stream mode ("r|"): Helm writes a
    gzip header with FEXTRA and FCOMMENT fields, which tarfile's own "r|gz" cannot parse (CPython
    gh-107398), while ``gzip`` skips them as RFC 1952 says."""
    found: dict[str, bytes] = {}
    tops: set[str] = set()
    with _open_regular(path) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as plain, \
            _tar_stream(plain) as tar:
        for count, member in enumerate(tar):
            if limit is not None and count >= limit:
                break
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if member.type in (tarfile.XHDTYPE, tarfile.XGLTYPE) or not parts:
                continue
            tops.add(parts[0])
            if len(parts) == 2 and parts[1] in ("Chart.yaml", "requirements.yaml") and member.isreg():
                if member.size > MAX_CHART_YAML:
                    raise ChartError(str(path), f"{member.name} is larger than {MAX_CHART_YAML} bytes")
                data = tar.extractfile(member)
                assert data is not None
                found[parts[1]] = data.read()
    if len(tops) > 1 and "Chart.yaml" in found:
        raise ChartError(str(path), f"the archive holds more than one top directory ({', '.join(sorted(tops)[:3])})")
    return found


def _tar_stream(plain: gzip.GzipFile) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=plain, mode="r|")
    except tarfile.ReadError as e:  # raised only while reading the first header
        raise _NotATar(str(e)) from None


def _load_yaml(data: bytes, shown: str, name: str) -> Any:
    try:
        check_bounds(data, loader=yaml.SafeLoader, max_expanded=MAX_CHART_YAML_EXPANDED)
        return yaml.safe_load(data)
    except YamlTooLarge as e:
        raise ChartError(shown, f"{name}:{e.line}: {e.reason}") from None
    except yaml.YAMLError as e:
        raise ChartError(shown, f"cannot load {name}: {e}") from None


# chart.Metadata: (JSON key, kind) in struct order; kinds: s string, ls []string, b bool,
# m map[string]string, maint []*Maintainer, deps []*Dependency.
_METADATA = (("name", "s"), ("home", "s"), ("sources", "ls"), ("version", "s"), ("description", "s"),
             ("keywords", "ls"), ("maintainers", "maint"), ("icon", "s"), ("apiVersion", "s"),
             ("condition", "s"), ("tags", "s"), ("appVersion", "s"), ("deprecated", "b"),
             ("annotations", "m"), ("kubeVersion", "s"), ("dependencies", "deps"), ("type", "s"))
_MAINTAINER = (("name", "s"), ("email", "s"), ("url", "s"))
# chart.Dependency; name and repository have no omitempty.
_DEPENDENCY = (("name", "s"), ("version", "s"), ("repository", "s"), ("condition", "s"), ("tags", "ls"),
               ("enabled", "b"), ("import-values", "any"), ("export-values", "any"), ("alias", "s"))
_ALWAYS = {"name", "repository"}


def _unmarshal(doc: Any, into: dict[str, Any], shown: str, what: str,
               fields: tuple[tuple[str, str], ...] = _METADATA) -> dict[str, Any]:
    """``doc`` (YAML) onto ``into`` as Go's json.Unmarshal into the struct would: keys matched exactly,
    else case-insensitively; unknown keys dropped; scalars turned into strings for string fields."""
    if doc is None:
        return into
    if not isinstance(doc, Mapping):
        raise ChartError(shown, f"{what} must be a mapping")
    by_key = {k: (k, kind) for k, kind in fields}
    folded = {k.casefold(): (k, kind) for k, kind in fields}
    out = dict(into)
    for key, value in doc.items():
        field = by_key.get(str(key)) or folded.get(str(key).casefold())
        if field is None:
            continue
        name, kind = field
        out[name] = _convert(value, kind, shown, f"{what}: {name}")
    return out


def _convert(value: Any, kind: str, shown: str, where: str) -> Any:
    if value is None:
        return None
    if kind == "s":
        return _go_string(value, shown, where)
    if kind == "b":
        if not isinstance(value, bool):
            raise ChartError(shown, f"{where} must be true or false")
        return value
    if kind == "ls":
        if not isinstance(value, list):
            raise ChartError(shown, f"{where} must be a list")
        return [_go_string(v, shown, where) if v is not None else "" for v in value]
    if kind == "m":
        if not isinstance(value, Mapping):
            raise ChartError(shown, f"{where} must be a mapping")
        return {str(k): _go_string(v, shown, where) if v is not None else "" for k, v in value.items()}
    if kind in ("maint", "deps"):
        if not isinstance(value, list):
            raise ChartError(shown, f"{where} must be a list")
        fields = _MAINTAINER if kind == "maint" else _DEPENDENCY
        return [None if v is None else _unmarshal(v, {}, shown, where, fields) for v in value]
    return value  # import-values / export-values: any JSON


def _go_string(value: Any, shown: str, where: str) -> str:
    """A YAML scalar for a Go string field, as sigs.k8s.io/yaml converts it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float32(value)
    raise ChartError(shown, f"{where} must be a string")


def _format_float32(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'g', -1, 32)``: the shortest digits that read back as the same
    float32, in exponent form when the exponent is below -4 or at least 6 (Go's rule for shortest)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    f32 = struct.unpack("f", struct.pack("f", value))[0]
    if f32 == 0:
        return "0"
    for digits in range(1, 10):
        text = f"{f32:.{digits - 1}e}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == f32:
            break
    mantissa, _, exp_text = text.partition("e")
    exp = int(exp_text)
    sign = "-" if mantissa.startswith("-") else ""
    significant = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
    if exp < -4 or exp >= 6:
        head = significant[0] + ("." + significant[1:] if len(significant) > 1 else "")
        return f"{sign}{head}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{significant}"
    if len(significant) <= exp + 1:
        return f"{sign}{significant}{'0' * (exp + 1 - len(significant))}"
    return f"{sign}{significant[:exp + 1]}.{significant[exp + 1:]}"


def _sanitize(text: str) -> str:
    """Helm's sanitizeString: whitespace becomes a space, other unprintable characters go."""
    out = []
    for ch in text:
        if ch.isspace() and ch not in _NOT_GO_SPACE:
            out.append(" ")
        elif ch.isprintable():
            out.append(ch)
    return "".join(out)


_NOT_GO_SPACE = frozenset("\x1c\x1d\x1e\x1f")  # Python's isspace() has them; Go's unicode.IsSpace not


def _validate(meta: dict[str, Any], shown: str) -> None:
    """Metadata.Validate: sanitise, then check what Helm's loader checks (and refuses)."""
    for key in ("name", "description", "home", "icon", "condition", "tags", "appVersion", "kubeVersion"):
        if isinstance(meta.get(key), str):
            meta[key] = _sanitize(meta[key])
    for key in ("sources", "keywords"):
        if isinstance(meta.get(key), list):
            meta[key] = [_sanitize(v) for v in meta[key]]
    name, version = meta.get("name") or "", meta.get("version") or ""
    if not meta.get("apiVersion"):
        raise ChartError(shown, "chart.metadata.apiVersion is required")
    if not name:
        raise ChartError(shown, "chart.metadata.name is required")
    if name in (".", "..") or "/" in name or "\\" in name:
        raise ChartError(shown, f"chart.metadata.name {name!r} is invalid")
    if not version:
        raise ChartError(shown, "chart.metadata.version is required")
    if not _SEMVER.fullmatch(version):
        raise ChartError(shown, f"chart.metadata.version {version!r} is invalid (not SemVer)")
    if meta.get("type") not in (None, "", "application", "library"):
        raise ChartError(shown, "chart.metadata.type must be application or library")
    for m in meta.get("maintainers") or []:
        if m is None:
            raise ChartError(shown, "maintainers must not contain empty or null nodes")
        for key in ("name", "email", "url"):
            if isinstance(m.get(key), str):
                m[key] = _sanitize(m[key])
    for d in meta.get("dependencies") or []:
        if d is None:
            raise ChartError(shown, "dependencies must not contain empty or null nodes")
        for key in ("name", "version", "repository", "condition"):
            if isinstance(d.get(key), str):
                d[key] = _sanitize(d[key])
        if isinstance(d.get("tags"), list):
            d["tags"] = [_sanitize(t) for t in d["tags"]]


def _ordered(meta: dict[str, Any], fields: tuple[tuple[str, str], ...] = _METADATA,
             always: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The struct as json.Marshal writes it: field order, omitempty fields dropped when empty."""
    out: dict[str, Any] = {}
    for key, kind in fields:
        value = meta.get(key)
        if kind == "maint":
            value = [_ordered(m, _MAINTAINER) for m in value or []]
        elif kind == "deps":
            value = [_ordered(d, _DEPENDENCY, frozenset(_ALWAYS)) for d in value or []]
        elif kind == "m" and value:
            value = dict(sorted(value.items()))
        elif kind == "s" and value is None:
            value = ""
        if key in always or (value not in (None, "", False, [], {})):
            out[key] = value
    return out


def go_json(value: Any) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, with <, >, & and U+2028/9 escaped.
    Dict order is kept (structs are ordered by the caller; maps must arrive sorted)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text.encode()


# -- the artifact --------------------------------------------------------------------------------------
def helm_annotations(chart: Chart, created: str) -> dict[str, str]:
    """Helm's generateOCIAnnotations: chart fields, then the chart's own annotations on top (except
    title and version, which always come from the chart)."""
    meta = chart.metadata
    out: dict[str, str] = {}

    def add(key: str, value: object) -> None:
        if isinstance(value, str) and value.strip():
            out[key] = value

    add(A_DESCRIPTION, meta.get("description"))
    add(A_TITLE, meta.get("name"))
    add(A_VERSION, meta.get("version"))
    add(A_URL, meta.get("home"))
    add(A_CREATED, created)
    if meta.get("sources"):
        add(A_SOURCE, meta["sources"][0])
    maintainers = meta.get("maintainers") or []
    if maintainers:
        parts = []
        for m in maintainers:
            text = m.get("name", "")
            if m.get("email"):
                text += f" ({m['email']})"
            parts.append(text)
        add(A_AUTHORS, ", ".join(parts))
    for key, value in (meta.get("annotations") or {}).items():
        if key not in (A_TITLE, A_VERSION):
            out[key] = value
    return out


def helm_artifact(chart: Chart, store: Store, created: str, prov: Path | None = None,
                  progress: Progress = SILENT) -> Image:
    """The chart as Helm 3 pushes it; blobs go to ``store`` (no names move here)."""
    layers = [store_file(chart.path, store, CHART_MEDIA_TYPE, {}, progress)]
    if prov is not None:
        layers.append(store_file(prov, store, PROV_MEDIA_TYPE, {}, progress))
    layers.sort(key=lambda la: la.digest.text)  # Helm sorts layers by digest
    config = chart.config_bytes
    config_desc = Descriptor(CONFIG_MEDIA_TYPE, _digest(config), len(config))
    annotations = helm_annotations(chart, created)
    manifest = {"schemaVersion": 2, "config": _go_descriptor(config_desc),
                "layers": [_go_descriptor(la.descriptor) for la in layers]}
    if annotations:
        manifest["annotations"] = dict(sorted(annotations.items()))
    return Image(config=ImageConfig(EMPTY), layers=tuple(layers), annotations=frozen_str_map(annotations),
                 media_type=mt.OCI_MANIFEST, config_media_type=CONFIG_MEDIA_TYPE, raw_config=config,
                 raw_manifest=go_json(manifest))


def _go_descriptor(desc: Descriptor) -> dict[str, Any]:
    return {"mediaType": desc.media_type, "digest": desc.digest.text, "size": desc.size}


def _digest(data: bytes) -> Digest:
    return Digest.of(data)


def chart_from_config(image: Image) -> tuple[str, str]:
    """Name and version of a pulled Helm artifact, from its config (for ``NAME-VERSION.tgz``)."""
    try:
        doc = json.loads(image.config_bytes)
    except ValueError:
        raise InvalidInput("the Helm chart config is not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidInput("the Helm chart config is not a JSON object")
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        raise InvalidInput("the Helm chart config has no name or version")
    file_name = f"{name}-{version}.tgz"
    if "/" in file_name or "\0" in file_name or name in (".", ".."):
        raise InvalidInput(f"refusing chart file name {file_name!r}: a chart's name and version cannot hold '/' "
                           "(it would write outside the destination); nothing was written")
    return name, version


def chart_layers(image: Image) -> tuple[int, int | None]:
    """Indexes of the chart layer and of the provenance layer (if any) of a Helm artifact."""
    charts = [i for i, la in enumerate(image.layers) if la.media_type in (CHART_MEDIA_TYPE, LEGACY_CHART_MEDIA_TYPE)]
    provs = [i for i, la in enumerate(image.layers) if la.media_type == PROV_MEDIA_TYPE]
    if len(charts) != 1 or len(provs) > 1:
        raise InvalidInput(f"a Helm chart artifact has one chart layer and at most one provenance layer; this one "
                           f"has {len(charts)} and {len(provs)}")
    return charts[0], provs[0] if provs else None
