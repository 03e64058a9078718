"""Registry sessions: flags and the environment become client options and credentials (read here, at
the edge), one client per registry host for the length of a command."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..refs import Ref, RegistryRef
from ..values import valueclass
from . import edge

if TYPE_CHECKING:
    from ..oci.descriptor import Descriptor
    from ..stores.registry import RegistryStore
    from ..stores.transport import ClientOptions, RegistryClient

CERTS_D = Path("/etc/docker/certs.d")  # docker's per-registry CA directory


@valueclass
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


def current_flags() -> Flags:
    """The registry flags of the running command (``configure`` sets them)."""
    return _flags


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
    from ..stores.auth import LOOPBACK, host_name
    from ..stores.transport import ClientOptions

    cas = [flags.ca_file] if flags.ca_file else []
    host_dir = CERTS_D / host
    if host_dir.is_dir():
        cas.extend(str(p) for p in sorted(host_dir.glob("*.crt")))
    name = host_name(host)
    plain = host in flags.insecure or name in flags.insecure or (name in LOOPBACK and not cas)
    return ClientOptions(plain_http=plain, ca_files=tuple(cas), insecure_hosts=flags.insecure,
                         rate=edge.transfer_rate())


@contextmanager
def session() -> Iterator[Session]:
    s = Session(_flags)
    try:
        yield s
    finally:
        s.close()


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
