"""The environment stage: a release plus what one location x environment needs, in few layers.

Polyfill images' layers go first (reused blob for blob), then ONE generated layer with the recipe's
files, the merged CA bundle, ``/etc/regfp/platform.json`` and the identity; env vars and labels go
into the config. Env merge rules for polyfills: path-like variables (PATH, LD_LIBRARY_PATH, ...) are
joined with ':' (the image's entries first), option variables (JAVA_TOOL_OPTIONS, NODE_OPTIONS, ...)
with a space, any other variable keeps the image's value if it has one; the recipe's ``env`` wins over
all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..progress import SILENT, Progress
from ..values import valueclass
from .validity import IDENTITY_DIR

if TYPE_CHECKING:  # the layer machinery is imported when an image is made: a warm run only reads inputs
    from ..layers import Entry
    from ..oci.config import History
    from ..oci.image import Image
    from ..stores.base import Store
    from .identity import Issued

PATH_LIKE = frozenset({"PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "CLASSPATH", "NODE_PATH", "MANPATH",
                       "PKG_CONFIG_PATH", "PERL5LIB", "GEM_PATH", "LD_PRELOAD"})
OPTION_LIKE = frozenset({"JAVA_TOOL_OPTIONS", "JAVA_OPTS", "NODE_OPTIONS", "JDK_JAVA_OPTIONS", "DOTNET_STARTUP_HOOKS"})
CA_BUNDLES = ("etc/ssl/certs/ca-certificates.crt", "etc/pki/tls/certs/ca-bundle.crt", "etc/ssl/ca-bundle.pem",
              "etc/pki/tls/cacert.pem", "etc/ssl/cert.pem")
PLATFORM_JSON = "etc/regfp/platform.json"


@valueclass
class FileSpec:
    path: str  # absolute path in the image
    data: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@valueclass
class EnvironmentInputs:
    release: Image
    release_number: int
    name: str
    location: str
    environment: str
    revision: str
    channel: str
    mtime: int
    env: Mapping[str, str] = field(default_factory=dict)
    files: tuple[FileSpec, ...] = ()
    ca_certs: tuple[bytes, ...] = ()  # PEM certificates, already checked by check_ca_pem
    polyfills: tuple[Image, ...] = ()
    identity: Issued | None = None


def ca_pem_certificates(data: bytes, shown: str) -> bytes:
    """The CERTIFICATE blocks of ``data``; a clear error if there are none or it holds anything else (a
    key above all). Structure only: ``check_ca_pem`` also parses each certificate."""
    blocks = pem_blocks(data)
    if not blocks:
        raise InvalidInput(f"{shown}: no PEM certificate found")
    for kind, _ in blocks:
        if kind != "CERTIFICATE":
            raise InvalidInput(f"{shown}: holds a PEM '{kind}' block; only CERTIFICATE blocks belong in a CA bundle")
    return b"".join(block for _, block in blocks)


def check_ca_pem(data: bytes, shown: str) -> bytes:
    """``data`` if it holds only PEM certificates of CAs; a clear error for anything else (keys above all)."""
    from cryptography import x509  # ~0.1 s of start-up: only when an image is made from it

    ca_pem_certificates(data, shown)
    blocks = pem_blocks(data)
    for _, block in blocks:
        try:
            cert = x509.load_pem_x509_certificate(block)
        except ValueError:
            raise InvalidInput(f"{shown}: a CERTIFICATE block does not parse") from None
        try:
            if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                raise InvalidInput(f"{shown}: {cert.subject.rfc4514_string()} is not a CA certificate")
        except x509.ExtensionNotFound:
            pass  # old self-signed roots often lack basicConstraints
    return b"".join(block for _, block in blocks)


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    out = []
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    current: list[bytes] | None = None
    kind = ""
    for line in lines:
        if line.startswith(b"-----BEGIN ") and line.endswith(b"-----"):
            kind = line[11:-5].decode("ascii", "replace")
            current = [line]
        elif current is not None:
            current.append(line)
            if line.startswith(b"-----END "):
                out.append((kind, b"\n".join(current) + b"\n"))
                current = None
    return out


def merge_polyfill_env(image_env: Mapping[str, str], polyfill_env: Mapping[str, str]) -> dict[str, str]:
    out = dict(image_env)
    for key, value in polyfill_env.items():
        if key not in out:
            out[key] = value
        elif key in PATH_LIKE:
            have = out[key].split(":")
            out[key] = ":".join(have + [p for p in value.split(":") if p and p not in have])
        elif key in OPTION_LIKE and value not in out[key]:
            out[key] = f"{out[key]} {value}".strip()
    return out


def environment_image(inputs: EnvironmentInputs, store: Store, annotations: dict[str, str],
                      progress: Progress = SILENT) -> Image:
    """The environment's image; its generated layer is written to ``store`` (names are not moved)."""
    from ..layers import write_layer
    from ..oci.config import History
    from ..oci.image import Layer

    image = inputs.release
    env = image.config.env_map
    for poly in inputs.polyfills:
        if poly.config.platform.architecture != image.config.architecture or poly.config.os != image.config.os:
            raise InvalidInput(f"polyfill {poly.digest} is {poly.config.platform}, the release is "
                               f"{image.config.platform}")
        for layer, hist in zip(poly.layers, _layer_history(poly), strict=True):
            image = image.appended(layer, History(created=hist.created, created_by=f"regfp polyfill: "
                                                  f"{hist.created_by or poly.digest.short}"))
        env = merge_polyfill_env(env, poly.config.env_map)
    env.update(inputs.env)
    entries = _entries(inputs, image)
    # With an identity the layer holds its private key: only the store's owner may read the blob.
    written = write_layer(entries, store.blob_sink(private=inputs.identity is not None), mtime=inputs.mtime,
                          on_bytes=progress.task(f"{inputs.location}.{inputs.environment} layer", None))
    desc = written.descriptor
    layer = Layer(desc, written.diff_id, lambda: store.open_blob(desc))
    created = image.config.created
    image = image.appended(layer, History(created=created, created_by=f"regfp environment: {inputs.location}."
                                                                      f"{inputs.environment}"))
    labels = {"dev.regfp.location": inputs.location, "dev.regfp.environment": inputs.environment,
              "dev.regfp.release": f"r{inputs.release_number}"}
    config = image.config.with_container(Env=[f"{k}={v}" for k, v in _ordered(image.config.env, env)])
    return image.with_config(config.with_labels(labels)).with_annotations(annotations)


def _ordered(before: tuple[str, ...], env: Mapping[str, str]) -> list[tuple[str, str]]:
    """The image's variables in their order, then new ones sorted by name."""
    seen = [item.partition("=")[0] for item in before]
    return [(k, env[k]) for k in seen if k in env] + sorted((k, v) for k, v in env.items() if k not in seen)


def _layer_history(image: Image) -> list[History]:
    from ..oci.config import History

    hist = [h for h in image.config.history if not h.empty_layer]
    return hist if len(hist) == len(image.layers) else [History() for _ in image.layers]


def _entries(inputs: EnvironmentInputs, image: Image) -> list[Entry]:
    from ..layers import dir_entry, file_entry
    from ..oci.canonical import canonical_json

    entries: list[Entry] = []
    for f in inputs.files:
        entries.append(file_entry(f.path.lstrip("/"), f.data, f.mode, f.uid, f.gid))
    if inputs.ca_certs:
        bundle_path, existing = _find_bundle(image)
        merged = existing.rstrip(b"\n") + b"\n" if existing.strip() else b""
        merged += b"".join(inputs.ca_certs)
        entries.append(file_entry(bundle_path, merged, 0o644))
    platform = {"name": inputs.name, "location": inputs.location, "environment": inputs.environment,
                "release": f"r{inputs.release_number}", "revision": inputs.revision, "channel": inputs.channel}
    entries.append(file_entry(PLATFORM_JSON, canonical_json(platform) + b"\n", 0o644))
    if inputs.identity is not None:
        uid, gid = _image_user(image)
        ident = inputs.identity
        entries.append(dir_entry(IDENTITY_DIR, 0o750, uid, gid))
        entries.append(file_entry(f"{IDENTITY_DIR}/tls.key", ident.key_pem, 0o400, uid, gid))
        entries.append(file_entry(f"{IDENTITY_DIR}/tls.crt", ident.cert_pem, 0o444))
        entries.append(file_entry(f"{IDENTITY_DIR}/ca.crt", ident.ca_pem, 0o444))
    paths = [e.path for e in entries]
    if len(set(paths)) != len(paths):
        dup = next(p for p in paths if paths.count(p) > 1)
        raise InvalidInput(f"/{dup.decode()} is written twice by the environment (files vs generated content)")
    return entries


def _find_bundle(image: Image) -> tuple[str, bytes]:
    from ..imagefs import read_file

    for path in CA_BUNDLES:
        found = read_file(image, path)
        if found is not None:
            return found.path, found.data
    return CA_BUNDLES[0], b""


def _image_user(image: Image) -> tuple[int, int]:
    """The numeric owner for the identity key: the config's User, looked up in /etc/passwd if a name."""
    user = image.config.user or "0"
    name, _, group = user.partition(":")
    uid = _resolve_id(image, name, "etc/passwd")
    gid = _resolve_id(image, group, "etc/group") if group else _primary_gid(image, name, uid)
    return uid, gid


def _resolve_id(image: Image, value: str, table: str) -> int:
    from ..imagefs import read_file

    if value.isdigit():
        return int(value)
    if value in ("", "root"):
        return 0
    found = read_file(image, table)
    for line in (found.data.decode("utf-8", "replace").splitlines() if found else []):
        parts = line.split(":")
        if len(parts) >= 3 and parts[0] == value and parts[2].isdigit():
            return int(parts[2])
    raise InvalidInput(f"the image's user {value!r} is not in its /{table}; use a numeric user")


def _primary_gid(image: Image, name: str, uid: int) -> int:
    from ..imagefs import read_file

    if name.isdigit() or name in ("", "root"):
        return uid if name.isdigit() else 0
    found = read_file(image, "etc/passwd")
    for line in (found.data.decode("utf-8", "replace").splitlines() if found else []):
        parts = line.split(":")
        if len(parts) >= 4 and parts[0] == name and parts[3].isdigit():
            return int(parts[3])
    return uid
