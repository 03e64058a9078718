"""Ad-hoc debug images: the patched app plus debug tools, a root account, and an sshd that accepts
only the given public keys. Never built on an environment image, so no production identity is inside;
the identity it carries, if any, is the development environment's.

Supported sshd: dropbear (``/usr/sbin/dropbear`` in the tools image), which reads its own host-key
format, written here from an Ed25519 key.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..imagefs import read_file
from ..layers import Entry, dir_entry, file_entry, write_layer
from ..oci.annotation_keys import CONTAINS_SECRET
from ..oci.canonical import canonical_json
from ..oci.config import History
from ..oci.image import Image, Layer
from ..stores.base import Store
from ..values import valueclass
from .environment import merge_polyfill_env
from .promotion import A_DEBUG, A_EXPIRES
from .validity import IDENTITY_DIR

if TYPE_CHECKING:
    from .identity import Issued

A_PARENT = "dev.regfp.parent"
ENTRY = "usr/local/bin/regfp-debug"
HOST_KEY = "etc/dropbear/regfp_ed25519_host_key"
DROPBEAR = "usr/sbin/dropbear"
DEFAULT_PORT = 2222
_SHELLS = ("bin/sh", "bin/bash", "bin/ash")


class KeyRefused(InvalidInput):
    pass


def check_public_key(text: str, shown: str) -> str:
    """One OpenSSH public key line (ed25519, ecdsa, RSA >= 2048 bits), normalised; never echoes input."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

    stripped = text.strip()
    if "PRIVATE KEY" in stripped or stripped.startswith("-----BEGIN"):
        raise KeyRefused(f"{shown}: this is a private key; give the public key (the .pub file) instead")
    lines = [line for line in stripped.splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) != 1:
        raise KeyRefused(f"{shown}: expected exactly one OpenSSH public key line, found {len(lines)}")
    parts = lines[0].split()
    try:
        key = serialization.load_ssh_public_key(" ".join(parts[:2]).encode())
    except (ValueError, IndexError, UnicodeError):
        raise KeyRefused(f"{shown}: not an OpenSSH public key (expected e.g. 'ssh-ed25519 AAAA... user@host')") \
            from None
    except Exception:  # unsupported algorithm types raise their own exception class
        raise KeyRefused(f"{shown}: unsupported public key type") from None
    if isinstance(key, dsa.DSAPublicKey):
        raise KeyRefused(f"{shown}: DSA keys are refused (weak and disabled by modern sshd); use ed25519")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise KeyRefused(f"{shown}: RSA key of {key.key_size} bits is too short (at least 2048)")
    if not isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise KeyRefused(f"{shown}: unsupported public key type")
    comment = " ".join(parts[2:])
    return " ".join(parts[:2]) + (f" {comment}" if comment else "")


@dataclass(frozen=True)
class HostKey:
    """An Ed25519 host key, derived by ``derive_host_key`` (the seed comes from the CLI edge)."""

    private: bytes  # 32 raw bytes

    @property
    def dropbear(self) -> bytes:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = ed25519.Ed25519PrivateKey.from_private_bytes(self.private)
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return _ssh_string(b"ssh-ed25519") + _ssh_string(self.private + public)

    @property
    def public_line(self) -> str:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        key = ed25519.Ed25519PrivateKey.from_private_bytes(self.private)
        return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode()

    def __repr__(self) -> str:
        return f"HostKey({self.public_line[:40]}...)"


@valueclass
class HostKeyInputs:
    """What a debug image's host key is derived from. Everything that names the debug target is here
    and nothing that changes on a re-make (expiry, port), so re-making or re-pulling a debug image keeps
    the developer's known_hosts entry valid, while another app, tools image, channel or key gets its own."""

    parent: str  # digest of the patched release
    tools: str  # digest of the tools image
    keys: tuple[str, ...]  # the developers' public key lines
    channel: str


def derive_host_key(seed: bytes, inputs: HostKeyInputs) -> HostKey:
    """HKDF-SHA256 of a per-user secret ``seed`` over ``inputs``. The seed keeps the private key from
    being computable out of public facts alone (digests and public keys are not secrets)."""
    import hashlib

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if len(seed) < 32:
        raise InvalidInput("the debug host key seed must be at least 32 bytes")
    keys = sorted({" ".join(line.split()[:2]) for line in inputs.keys})  # the comment is not the key
    doc = canonical_json({"parent": inputs.parent, "tools": inputs.tools, "keys": keys, "channel": inputs.channel})
    info = b"regfp debug host key v1\0" + hashlib.sha256(doc).digest()
    return HostKey(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(seed))


def known_hosts_line(public_line: str, port: int, host: str = "127.0.0.1") -> str:
    """The ``known_hosts`` line for the debug sshd, as ssh writes it (brackets for a port other than 22)."""
    where = host if port == 22 else f"[{host}]:{port}"
    return f"{where} {' '.join(public_line.split()[:2])}"


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


@valueclass
class DebugInputs:
    parent: Image  # the patched release (never an environment image)
    tools: Image
    keys: tuple[str, ...]
    host_key: HostKey
    expires: str  # RFC 3339
    mtime: int
    identity: Issued | None = None
    sshd_only: bool = False
    port: int = DEFAULT_PORT


def debug_image(inputs: DebugInputs, store: Store, annotations: dict[str, str]) -> Image:
    parent, tools = inputs.parent, inputs.tools
    if parent.annotations.get("dev.regfp.stage") == "environment":
        raise InvalidInput("debug images are built on the patched release, never on an environment image")
    if tools.config.platform.architecture != parent.config.architecture:
        raise InvalidInput(f"the tools image is {tools.config.platform}, the app {parent.config.platform}")
    if not inputs.keys:
        raise KeyRefused("at least one --ssh-key is needed")
    image = parent
    for layer in tools.layers:
        image = image.appended(layer, History(created=parent.config.created, created_by="regfp debug: tools"))
    sshd = read_file(image, DROPBEAR)
    if sshd is None:
        raise InvalidInput(f"the debug tools image has no /{DROPBEAR}; it must provide dropbear as its sshd")
    # A dir: tools tree becomes an image of whatever platform is asked for, whatever its programs are built
    # for: the sshd's ELF header says what they run on.
    built_for = elf_architecture(sshd.data)
    if built_for is not None and built_for != parent.config.architecture:
        raise InvalidInput(f"the debug tools' /{DROPBEAR} is a program for {built_for}, the app is "
                           f"{parent.config.platform}: a {parent.config.platform} debug image needs tools built "
                           f"for {parent.config.architecture} (debug.tools: an image index with that platform)")
    shell = next((s for s in _SHELLS if read_file(image, s) is not None), None)
    if shell is None:
        raise InvalidInput("the debug image has no shell (/bin/sh) for root and the debug entrypoint")
    entries = _entries(inputs, image, shell)
    written = write_layer(entries, store.blob_sink(private=True), mtime=inputs.mtime)  # the host key is in it
    desc = written.descriptor
    image = image.appended(Layer(desc, written.diff_id, lambda: store.open_blob(desc)),
                           History(created=parent.config.created, created_by="regfp debug: root, sshd, keys"))
    cfg = parent.config
    app = [*(cfg.entrypoint or ()), *(cfg.cmd or ())]
    env = merge_polyfill_env(cfg.env_map, tools.config.env_map)
    ordered = [f"{k}={env[k]}" for k in (i.partition("=")[0] for i in cfg.env) if k in env]
    ordered += sorted(f"{k}={v}" for k, v in env.items() if k not in cfg.env_map)
    ports = dict(image.config.container.get("ExposedPorts") or {})
    ports[f"{inputs.port}/tcp"] = {}
    config = image.config.with_container(
        User="0:0", Entrypoint=["/" + shell, "/" + ENTRY], Cmd=[] if inputs.sshd_only else app or [],
        Env=[*ordered, f"REGFP_SSH_PORT={inputs.port}"], ExposedPorts=dict(sorted(ports.items())))
    return image.with_config(config).with_annotations(
        {**annotations, A_DEBUG: "true", A_PARENT: parent.digest.text, A_EXPIRES: inputs.expires,
         CONTAINS_SECRET: "true"})


# ELF e_machine values (the ELF specification's registry) as OCI architecture names.
_ELF_ARCH = {3: "386", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390x", 40: "arm", 62: "amd64", 183: "arm64",
             243: "riscv64", 258: "loong64"}


def elf_architecture(data: bytes) -> str | None:
    """The OCI architecture an ELF program is built for (None: not ELF, or a machine not listed). ppc64 and
    mips are told apart by byte order, as Go names them."""
    if len(data) < 20 or data[:4] != b"\x7fELF" or data[5] not in (1, 2):
        return None
    little = data[5] == 1
    arch = _ELF_ARCH.get(int.from_bytes(data[18:20], "little" if little else "big"))
    if arch == "ppc64" and little:
        return "ppc64le"
    if arch == "mips":
        return ("mips64" if data[4] == 2 else "mips") + ("le" if little else "")
    return arch


def _entries(inputs: DebugInputs, image: Image, shell: str) -> list[Entry]:
    passwd = _patched_table(image, "etc/passwd", "root", f"root:x:0:0:root:/root:/{shell}")
    shadow = _patched_table(image, "etc/shadow", "root", "root:*:19000:0:99999:7:::")
    group = _patched_table(image, "etc/group", "root", "root:x:0:")
    script = _entry_script(inputs.port)
    entries = [
        file_entry("etc/passwd", passwd, 0o644),
        file_entry("etc/shadow", shadow, 0o600),
        file_entry("etc/group", group, 0o644),
        dir_entry("root", 0o700),
        dir_entry("root/.ssh", 0o700),
        file_entry("root/.ssh/authorized_keys", ("\n".join(inputs.keys) + "\n").encode(), 0o600),
        dir_entry("etc/dropbear", 0o700),
        file_entry(HOST_KEY, inputs.host_key.dropbear, 0o600),
        file_entry(HOST_KEY + ".pub", (inputs.host_key.public_line + "\n").encode(), 0o644),
        file_entry(ENTRY, script.encode(), 0o755),
    ]
    if inputs.identity is not None:
        ident = inputs.identity
        entries += [dir_entry(IDENTITY_DIR, 0o750), file_entry(f"{IDENTITY_DIR}/tls.key", ident.key_pem, 0o400),
                    file_entry(f"{IDENTITY_DIR}/tls.crt", ident.cert_pem, 0o444),
                    file_entry(f"{IDENTITY_DIR}/ca.crt", ident.ca_pem, 0o444)]
    return entries


def _patched_table(image: Image, path: str, user: str, line: str) -> bytes:
    """``/etc/passwd``-like file with ``user``'s line replaced by (or extended with) ``line``."""
    found = read_file(image, path)
    lines = found.data.decode("utf-8", "replace").splitlines() if found else []
    out = [entry for entry in lines if entry.split(":", 1)[0] != user]
    return ("\n".join([line, *out]) + "\n").encode()


def _entry_script(port: int) -> str:
    return f"""#!/bin/sh
# regfp debug entrypoint: dropbear (key-only logins) next to the application. The application runs as a
# child, not exec'd, so sshd outlives it (a crashed app is what one debugs); TERM, INT and HUP sent to
# PID 1 go to the application, and once it is gone they stop the container.
port="${{REGFP_SSH_PORT:-{port}}}"
log() {{ echo "regfp-debug: $*" >&2; }}
caps=""; uid=""
if [ -r /proc/self/status ]; then
  while read -r key value _; do
    case "$key" in CapEff:) caps="$value" ;; Uid:) uid="$value" ;; esac
  done < /proc/self/status
fi
if [ -n "$uid" ] && [ "$uid" != 0 ]; then
  log "cannot start sshd: the container runs as uid $uid; the debug image logs in as root and must" \\
      "start as root (user 0:0)"
  exit 1
fi
# dropbear running as root calls setgid+initgroups for every session, even a root login, and setgroups
# needs CAP_SETGID (setuid to the uid it already has needs nothing): without it each login fails after
# authentication, with "Error changing user group" in this log and nothing on the client.
if [ -n "$caps" ] && [ $(( 0x${{caps#"${{caps%??}}"}} & 64 )) -eq 0 ]; then
  log "cannot start sshd: the container lacks CAP_SETGID, which dropbear needs to open any session" \\
      "(even root's). Add it: docker/podman run --cap-add SETGID; Kubernetes:" \\
      "securityContext.capabilities.add [SETGID]; an OCI bundle (umoci unpack): CAP_SETGID in" \\
      "process.capabilities bounding, effective and permitted."
  exit 1
fi
exec 3<&0  # a background job's stdin is /dev/null; the application keeps the container's stdin via fd 3
/{DROPBEAR} -F -E -s -g -p "$port" -r /{HOST_KEY} </dev/null 3<&- &
sshd=$!
app=""
if [ "$#" -gt 0 ]; then
  "$@" <&3 3<&- &
  app=$!
fi
exec 3<&-
stop=""
on_signal() {{
  stop="$1"
  if [ -n "$app" ]; then kill -"$1" "$app" 2>/dev/null; else kill -TERM "$sshd" 2>/dev/null; fi
}}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT
trap 'on_signal HUP' HUP
status=0
if [ -n "$app" ]; then
  # wait returns early (above 128) when a trapped signal arrives: wait again until the app is gone.
  while :; do
    wait "$app"; status=$?
    kill -0 "$app" 2>/dev/null || break
  done
  app=""
  if [ -n "$stop" ]; then
    kill -TERM "$sshd" 2>/dev/null
  else
    how="status $status"
    [ "$status" -le 128 ] || how="$how (signal $((status - 128)))"
    log "the application exited with $how; sshd stays up on port $port until the container is stopped"
  fi
fi
while :; do
  wait "$sshd"; code=$?
  kill -0 "$sshd" 2>/dev/null || break
done
[ "$#" -gt 0 ] || status=$code
exit "$status"
"""


def fingerprint(public_line: str) -> str:
    """SHA256 fingerprint as ssh-keygen -l prints it."""
    import hashlib

    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
