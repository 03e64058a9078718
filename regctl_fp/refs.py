"""Image references: parse and format ``oci:PATH:NAME``, ``oci:PATH@DIGEST``, ``dir:PATH`` and
registry references ``HOST[:PORT]/REPO[:TAG|@DIGEST]``. Pure: nothing here touches the filesystem."""

from __future__ import annotations

import re

from .errors import InvalidDigest, RefError
from .oci.digest import Digest
from .values import valueclass

# OCI image-layout ref.name grammar (annotations.md): components of alphanumerics joined by separators.
_LAYOUT_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_LAYOUT_NAME = re.compile(rf"{_LAYOUT_COMPONENT}(?:/{_LAYOUT_COMPONENT})*")
# distribution-spec repository and tag grammar.
_REPO_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_REPO_COMPONENT}(?:/{_REPO_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                   r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?")
DOCKER_HUB = "registry-1.docker.io"


def check_layout_name(name: str) -> str:
    if not isinstance(name, str) or not _LAYOUT_NAME.fullmatch(name):
        raise RefError(str(name), "not a valid OCI layout name (components of [A-Za-z0-9] joined by "
                                  "'-', '.', '_', ':', '@', '+' or '/')")
    return name


def check_repository(repo: str) -> str:
    if not _REPOSITORY.fullmatch(repo) or len(repo) > 255:
        raise RefError(repo, "not a valid repository name (lowercase [a-z0-9] components joined by "
                             "'.', '_', '__', '-' and '/')")
    return repo


def check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise RefError(tag, "not a valid tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})")
    return tag


def split_name(name: str) -> tuple[str, str]:
    """``repo:tag`` -> (repo, tag); the tag is whatever follows the last ':' after the last '/'."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon <= slash:
        return name, "latest"
    return name[:colon], name[colon + 1:]


@valueclass
class LayoutRef:
    """An image in an OCI layout: by name, by digest, or (neither) the layout's only image."""

    path: str
    name: str | None = None
    digest: Digest | None = None

    def __str__(self) -> str:
        if self.digest is not None:
            return f"oci:{self.path}@{self.digest}"
        return f"oci:{self.path}:{self.name}" if self.name else f"oci:{self.path}"


@valueclass
class DirRef:
    """A plain directory, turned into a single-layer image deterministically."""

    path: str

    def __str__(self) -> str:
        return f"dir:{self.path}"


@valueclass
class RegistryRef:
    registry: str  # host[:port], already normalised (docker.io -> registry-1.docker.io)
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if pinned, else the tag."""
        return self.digest.text if self.digest is not None else (self.tag or "latest")

    @property
    def host(self) -> str:
        """The registry without its port; an IPv6 address keeps its brackets (``[::1]``)."""
        if self.registry.startswith("["):
            return self.registry[: self.registry.index("]") + 1]
        return self.registry.rsplit(":", 1)[0]

    @property
    def plain_http(self) -> bool:
        return self.host in ("localhost", "127.0.0.1", "[::1]")

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


Ref = LayoutRef | DirRef | RegistryRef


def _parse_digest(ref: str, text: str) -> Digest:
    try:
        return Digest.parse(text)
    except InvalidDigest as e:
        raise RefError(ref, e.message) from None


def parse_ref(text: str) -> Ref:
    if not isinstance(text, str) or not text:
        raise RefError(str(text), "empty reference")
    scheme, sep, rest = text.partition(":")
    if sep and scheme == "oci":
        return _parse_layout(text, rest)
    if sep and scheme == "dir":
        if not rest:
            raise RefError(text, "dir: needs a directory path")
        return DirRef(rest)
    if sep and scheme == "docker" and rest.startswith("//"):
        return parse_registry(rest[2:], original=text)
    if sep and scheme in ("docker-archive", "oci-archive", "containers-storage", "docker-daemon", "http", "https"):
        raise RefError(text, f"the {scheme}: transport is not supported; use oci:PATH:NAME, dir:PATH or "
                             "HOST/REPO[:TAG]")
    return parse_registry(text, original=text)


def _parse_layout(text: str, rest: str) -> LayoutRef:
    if not rest:
        raise RefError(text, "oci: needs a layout path (oci:PATH:NAME or oci:PATH@sha256:...)")
    for alg in ("@sha256:", "@sha512:"):
        at = rest.rfind(alg)
        if at != -1:
            path = rest[:at]
            if not path:
                raise RefError(text, "missing layout path before '@'")
            return LayoutRef(path, digest=_parse_digest(text, rest[at + 1:]))
    path, sep, name = rest.partition(":")
    if not path:
        raise RefError(text, "missing layout path")
    if sep:
        if not name:
            raise RefError(text, "empty name after ':' (oci:PATH:NAME)")
        check = _LAYOUT_NAME.fullmatch(name)
        if not check:
            raise RefError(text, f"{name!r} is not a valid OCI layout name")
        return LayoutRef(path, name=name)
    return LayoutRef(path)


def parse_registry(text: str, *, original: str | None = None) -> RegistryRef:
    orig = original or text
    rest = text
    digest = None
    if "@" in rest:
        rest, _, dtext = rest.rpartition("@")
        digest = _parse_digest(orig, dtext)
    first, slash, remainder = rest.partition("/")
    if slash and (("." in first or ":" in first or first == "localhost") and _HOST.fullmatch(first)):
        registry, path = first, remainder
        port = first.rpartition("]")[2].rpartition(":")[2] if ":" in first.rpartition("]")[2] else ""
        if port and not 0 < int(port) < 65536:
            _bad(orig, f"port {port} is out of range (1-65535)")
    elif "/" in rest or re.fullmatch(r"[a-z0-9._-]+(?::[A-Za-z0-9_.-]+)?", rest):
        registry, path = "docker.io", rest
    else:
        raise RefError(orig, "not a reference: use oci:PATH:NAME, oci:PATH@sha256:..., dir:PATH or "
                             "HOST[:PORT]/REPO[:TAG|@DIGEST]")
    tag = None
    slash_at = path.rfind("/")
    colon = path.rfind(":")
    if colon > slash_at:
        path, tag = path[:colon], path[colon + 1:]
        if not _TAG.fullmatch(tag):
            _bad(orig, f"{tag!r} is not a valid tag")
    if registry in ("docker.io", "index.docker.io", DOCKER_HUB):
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not _REPOSITORY.fullmatch(path):
        _bad(orig, f"{path!r} is not a valid repository name (lowercase, [a-z0-9._-/])")
    if len(path) > 255:  # registries answer NAME_INVALID; say so before any network round trip
        _bad(orig, f"the repository name is {len(path)} characters long (at most 255)")
    if tag is None and digest is None:
        tag = "latest"
    return RegistryRef(registry, path, tag, digest)


def _bad(ref: str, reason: str) -> None:
    raise RefError(ref, reason)
