"""Registries from the command line: flags and the environment become client options and credentials
(read here, at the edge), one client per registry host for the length of a command, ``copy`` and
``inspect`` with a registry on either side, and ``login``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput, RefError
from ..oci import mediatypes as mt
from ..refs import DirRef, LayoutRef, Ref, RegistryRef, parse_registry
from . import edge, output
from .progress import progress_bar

if TYPE_CHECKING:
    from ..oci.descriptor import Descriptor, Platform
    from ..stores.base import Store
    from ..stores.registry import RegistryStore
    from ..stores.transport import ClientOptions, RegistryClient

CERTS_D = Path("/etc/docker/certs.d")  # docker's per-registry CA directory
JOBS = 6  # blobs moved at a time (skopeo moves 6 too)
PASSWORD_LIMIT = 64 << 10  # what --password-stdin reads at most (tokens used as passwords can be long)


@dataclass(frozen=True)
class Flags:
    insecure: tuple[str, ...] = ()  # hosts allowed plain HTTP (besides localhost and 127.0.0.1)
    ca_file: str | None = None


_flags = Flags()


def configure(insecure: list[str] | None = None, ca_file: str | None = None) -> None:
    """Record the registry flags of the running command (called by the typer command first)."""
    global _flags
    if ca_file is not None:
        from ..errors import InputFileError
        from ..regularfile import open_regular

        try:
            open_regular(ca_file).close()  # read later by OpenSSL, which would block on a FIFO
        except FileNotFoundError:
            raise InvalidInput(f"--ca-file {ca_file}: no such file") from None
        except InputFileError as e:
            raise InvalidInput(f"--ca-file {e.message}") from None
        except OSError as e:
            raise InvalidInput(f"--ca-file {ca_file}: cannot read ({e.strerror})") from None
    _flags = Flags(tuple(insecure or ()), ca_file)


def is_registry(ref: Ref) -> bool:
    return isinstance(ref, RegistryRef)


class Session:
    """One client per registry host, so a copy within a registry can mount instead of re-upload."""

    def __init__(self, flags: Flags) -> None:
        self._flags = flags
        self._clients: dict[str, RegistryClient] = {}

    def client(self, host: str) -> RegistryClient:
        from ..stores.credentials import find_credential
        from ..stores.transport import RegistryClient

        if host not in self._clients:
            credential = find_credential(host, os.environ, Path.home())
            self._clients[host] = RegistryClient(host, credential, client_options(host, self._flags))
        return self._clients[host]

    def store(self, ref: RegistryRef) -> RegistryStore:
        from ..stores.registry import RegistryStore

        return RegistryStore.for_ref(self.client(ref.registry), ref)

    def open(self, ref: RegistryRef) -> tuple[RegistryStore, Descriptor]:
        """The repository's store and the descriptor the reference names (by digest or tag)."""
        from ..stores.registry import RegistryStore

        store = self.store(ref)
        if ref.digest is not None:
            return store, store.resolve_digest(ref.digest)
        return store, store.resolve(RegistryStore.name_of(ref))

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()


def client_options(host: str, flags: Flags) -> ClientOptions:
    from ..stores.transport import ClientOptions

    cas = [flags.ca_file] if flags.ca_file else []
    host_dir = CERTS_D / host
    if host_dir.is_dir():
        cas.extend(str(p) for p in sorted(host_dir.glob("*.crt")))
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    local = name in ("localhost", "127.0.0.1", "[::1]")
    plain = host in flags.insecure or name in flags.insecure or (local and not cas)
    return ClientOptions(plain_http=plain, ca_files=tuple(cas), rate=edge.transfer_rate())


@contextmanager
def session() -> Iterator[Session]:
    s = Session(_flags)
    try:
        yield s
    finally:
        s.close()


# -- commands -------------------------------------------------------------------------------------------
def inspect(ref: RegistryRef, text: str, want: Platform | None, json_out: bool) -> None:
    from ..oci.manifest import Index
    from ..stores.base import read_image
    from . import render

    with session() as s:
        store, desc = s.open(ref)
        if desc.media_type in mt.INDEX_TYPES and want is None:
            render.index(text, desc, Index.parse(store.get_manifest(desc), desc.media_type), json_out)
            return
        render.image(text, read_image(store, desc, want), json_out)


def copy(src: Ref, dst: Ref, src_text: str, dst_text: str, want: Platform | None, json_out: bool,
         private: bool = False) -> None:
    """``regfp copy`` when either side is a registry: blobs (in parallel, skipping what the destination
    has, mounting within a registry), then manifests, then the destination name."""
    from ..sources import load_image, open_layout_ref
    from ..stores.base import read_image, write_image
    from ..stores.layout import LayoutStore
    from ..transfer import copy_descriptor
    from . import edge

    if isinstance(dst, LayoutRef) and dst.name is None:
        raise RefError(dst_text, "the destination needs a name: oci:PATH:NAME")
    if isinstance(dst, DirRef):
        raise RefError(dst_text, "a dir: reference cannot be a destination")
    with session() as s, progress_bar() as bar:
        if isinstance(src, DirRef):
            if not isinstance(dst, RegistryRef):
                raise RefError(dst_text, "not usable here")
            target = s.store(dst)
            options = edge.build_options(want)
            image = load_image(src, work=target, options=options, progress=bar)
            copied = write_image(target, image)
            _name(target, dst, copied)
            _report(src_text, dst_text, copied, json_out)
            return
        src_store: Store
        if isinstance(src, LayoutRef):
            src_store, desc = open_layout_ref(src)
        elif isinstance(src, RegistryRef):
            src_store, desc = s.open(src)
        else:
            raise RefError(src_text, "not usable here")
        if want is not None and desc.media_type in mt.INDEX_TYPES:
            desc = read_image(src_store, desc, want).descriptor
        if isinstance(dst, RegistryRef):
            _refuse(src_store, desc, dst, dst_text, private)
            target = s.store(dst)
            copied = copy_descriptor(src_store, target, desc, jobs=JOBS, progress=bar)
            _name(target, dst, copied)
        else:
            assert isinstance(dst, LayoutRef) and dst.name is not None
            with LayoutStore.open_or_create(dst.path) as layout:
                copied = copy_descriptor(src_store, layout, desc, jobs=JOBS, progress=bar)
                layout.set_names({dst.name: copied})
    _report(src_text, dst_text, copied, json_out)


def _refuse(store: Store, desc: Descriptor, dst: RegistryRef, shown: str, private: bool) -> None:
    """Debug images stay in ad-hoc/ repositories; images with a private key go only where --private says."""
    from ..stages.promotion import refuse_promotion
    from ..stores.base import manifest_annotations

    refuse_promotion(store, desc, dst.repository, shown)
    if not private and any(a.get("dev.regfp.contains-secret") == "true"
                           for a in manifest_annotations(store, desc)):
        raise InvalidInput(f"{shown}: the image carries a private key (dev.regfp.contains-secret); push it only "
                           "to a private repository, and say so with --private")


def _name(target: RegistryStore, dst: RegistryRef, copied: Descriptor) -> None:
    from ..stores.registry import RegistryStore

    if dst.digest is not None:
        if dst.digest != copied.digest:
            raise RefError(str(dst), f"the image copied is {copied.digest}, not the digest the destination names")
        if dst.tag is None:
            return
    target.set_names({RegistryStore.name_of(dst): copied})


def _report(src_text: str, dst_text: str, copied: Descriptor, json_out: bool) -> None:
    if json_out:
        output.print_json({"source": src_text, "destination": dst_text, "digest": copied.digest.text,
                           "mediaType": copied.media_type, "size": copied.size})
    else:
        output.line(f"{dst_text} {copied.digest}")


def login(server: str, username: str, password_stdin: bool, json_out: bool) -> None:
    """Check the credentials against the registry, then store them where docker would."""
    from ..stores.auth import Credential
    from ..stores.credentials import store_login
    from ..stores.transport import RegistryClient

    host = _login_host(server)
    if not username:
        raise InvalidInput("login needs a user name: -u USER")
    if not password_stdin:
        raise InvalidInput("pass the password on standard input with --password-stdin "
                           "(never on the command line, where other users can see it)")
    password = sys.stdin.read(PASSWORD_LIMIT + 1)  # bounded: stdin may be a pipe that never ends
    if len(password) > PASSWORD_LIMIT:
        raise InvalidInput(f"the password on standard input is longer than {PASSWORD_LIMIT} characters")
    password = password.removesuffix("\n").removesuffix("\r")
    if not password:
        raise InvalidInput("no password on standard input")
    credential = Credential(username=username, password=password, source="regfp login")
    with RegistryClient(host, credential, client_options(host, _flags)) as client:
        client.check_login()
    where = store_login(host, username, password, os.environ, Path.home())
    if json_out:
        output.print_json({"registry": host, "username": username, "stored": where})
    else:
        output.line(f"Login Succeeded: {username} at {host} (stored in {where})")


def _login_host(server: str) -> str:
    from ..refs import DOCKER_HUB
    from ..stores.credentials import HUB_ALIASES

    text = server.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    if not text:
        raise InvalidInput("login needs a registry host")
    if text in HUB_ALIASES:
        return DOCKER_HUB
    return parse_registry(f"{text}/x").registry if "." in text or ":" in text or text == "localhost" else text


def open_for_sources(ref: RegistryRef) -> tuple[RegistryStore, Descriptor]:
    """For ``sources.load_image``: a registry reference opened with this command's flags. The session
    stays open for the rest of the process (the image's layers are read lazily)."""
    return _process_session().open(ref)


_shared: Session | None = None


def _process_session() -> Session:
    global _shared
    if _shared is None:
        _shared = Session(_flags)
    return _shared
