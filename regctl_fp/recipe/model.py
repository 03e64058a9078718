"""Recipe format 1 as frozen dataclasses. The type hints drive both parsing and ``regfp schema``.

Values keep the spelling of the recipe (relative paths, durations as text) so that a stage's recipe
fragment, which goes into its cache key, does not depend on where the recipe lives on disk.
"""

from __future__ import annotations

import posixpath
from typing import Annotated, Any, Literal

from ..imagepath import image_path_problem
from ..oci.frozen import EMPTY, FrozenDict
from ..oci.mediatypes import Compression
from ..timeutil import parse_duration
from ..values import valueclass
from .platforms import check_platform
from .schema import Spec, field, pattern_spec


def _duration(value: str) -> str:
    parse_duration(value)
    return value


def _tree_path(value: str) -> str:
    """A path inside the source tree: relative, and never above its root."""
    if value.startswith("/"):
        raise ValueError(f"{value!r} must be relative to the source tree, not absolute")
    norm = posixpath.normpath(value) if value else "."
    if norm == ".." or norm.startswith("../"):
        raise ValueError(f"{value!r} escapes the source tree with '..'")
    return value


def _image_path(value: str) -> str:
    """A directory (or copy target) in the image: ``/`` and a trailing ``/`` are meaningful here."""
    problem = image_path_problem(value, root_ok=True, trailing_slash_ok=True)
    if problem:
        raise ValueError(f"{value!r} {problem}")
    return value


def _image_file_path(value: str) -> str:
    """A file the recipe puts into the image: never the root, never a directory spelling."""
    problem = image_path_problem(value)
    if problem:
        raise ValueError(f"{value!r} {problem}")
    return value


def _env_value(value: str) -> str:
    if "\0" in value:
        raise ValueError("environment variable values must not contain NUL")
    return value


def _recipe_path(value: str) -> str:
    if not value or "\0" in value:
        raise ValueError("a path must be a non-empty string")
    return value


Duration = Annotated[str, Spec("duration", {"pattern": r"^([0-9]+[smhdw])+$"}, _duration)]
TreePath = Annotated[str, Spec("tree-path", {}, _tree_path)]
ImagePath = Annotated[str, Spec("image-path", {"pattern": "^/"}, _image_path)]
ImageFilePath = Annotated[str, Spec("image-file-path", {"pattern": "^/[^/]"}, _image_file_path)]
# POSIX's portable names: anything else ('PATH=/x', spaces, newlines) would corrupt the config's Env list.
EnvVarName = Annotated[str, pattern_spec("env-var", r"[A-Za-z_][A-Za-z0-9_]*",
                                         "{value!r} is not an environment variable name (letters, digits and "
                                         "'_', not starting with a digit)")]
EnvValue = Annotated[str, Spec("env-value", {"pattern": "^[^\\u0000]*$"}, _env_value)]
Env = FrozenDict[EnvVarName, EnvValue]
RecipePath = Annotated[str, Spec("recipe-path", {"description": "relative to the recipe file"}, _recipe_path)]
Name = Annotated[str, pattern_spec("name", r"[a-z0-9]+(?:[._-][a-z0-9]+)*",
                                   "{value!r} is not a valid name (lowercase letters, digits, '.', '_', '-')")]
ChannelName = Annotated[str, pattern_spec("channel", r"[a-z0-9]+(?:[._-][a-z0-9]+)*",
                                          "{value!r} is not a valid channel name (lowercase, digits, '.', '_', '-')")]
Owner = Annotated[str, pattern_spec("owner", r"[0-9]+(?::[0-9]+)?", "{value!r} must be numeric 'uid' or 'uid:gid'")]
Port = Annotated[str, pattern_spec("port", r"[0-9]{1,5}(?:/(?:tcp|udp|sctp))?",
                                   "{value!r} is not a port (e.g. 8080 or 53/udp)")]
PlatformName = Annotated[str, Spec("platform", {"pattern": "^[a-z0-9]+/[a-z0-9_]+(/[a-zA-Z0-9]+)?$",
                                                "description": "os/architecture[/variant] as the OCI image-spec "
                                                               "names it, e.g. linux/amd64, linux/arm/v7"},
                                   check_platform)]
# One reference for every platform (a multi-platform index gives each its own image), or one per platform.
PerPlatformRefs = FrozenDict[PlatformName, str]


@valueclass
class Source:
    """Where the application comes from: a Git repository at a branch, tag or full commit id."""

    git: str = field(doc="repository: a path relative to the recipe file, or a URL git can reach")
    ref: str = field(default="HEAD", doc="branch, tag or full commit id")
    subdir: TreePath = field(default="", doc="the part of the tree to use")
    name: Name | None = field(default=None, doc="repository name in image names (default: its basename)")
    url: str | None = field(default=None, doc="recorded as org.opencontainers.image.source")


@valueclass
class CopyRule:
    """Copy a file or directory of the source tree into the image."""

    from_: TreePath = field(key="from", doc="path in the source tree (relative to subdir)")
    to: ImagePath = field(doc="absolute path in the image")
    chown: Owner | None = field(default=None, doc="numeric uid:gid for the copied entries (default 0:0)")


@valueclass
class RunStep:
    """A host-side command run in a temporary export of the tree; its outputs become a layer."""

    command: tuple[str, ...] | str = field(doc="argv list, or a string run with /bin/sh -c")
    outputs: tuple[CopyRule, ...] = field(doc="paths the command produces, copied into the image")
    env: Env = field(default=EMPTY, doc="extra environment (the rest is clean)")
    timeout: Duration = field(default="30m", doc="how long the command may run before it is stopped (e.g. 30m)")
    # None, not False, when absent: a build's key holds its recipe fragment, and an absent key keeps the
    # keys of recipes written before it existed.
    per_platform: bool | None = field(
        default=None, doc="run once per platform of a multi-platform recipe, with TARGETPLATFORM, TARGETOS, "
                          "TARGETARCH and TARGETVARIANT set, each platform getting its own layer (default: run "
                          "once; its layer is one blob shared by every platform)")


@valueclass
class Build:
    """How the tree becomes an image on a base."""

    base: str | PerPlatformRefs = field(doc="a channel name from patch.channels, or an image reference (a "
                                            "multi-platform index serves every platform), or a mapping of "
                                            "platform -> image reference")
    rebuild_after: Duration | None = field(default=None, doc="rebuild once the build is this old (e.g. 90d)")
    copy: tuple[CopyRule, ...] = field(default=(), doc="source tree -> image paths (the application layer)")
    dependencies: tuple[TreePath, ...] = field(default=(), doc="tree paths layered first, on their own, so "
                                                              "code-only changes reuse that layer")
    run: RunStep | None = field(default=None, doc="a host-side build step; its outputs become the last layer")
    workdir: ImagePath | None = field(default=None, doc="working directory of the image's process")
    entrypoint: tuple[str, ...] | None = field(default=None, doc="the program the image runs (argv list)")
    cmd: tuple[str, ...] | None = field(default=None, doc="default arguments after the entrypoint (argv list)")
    env: Env = field(default=EMPTY, doc="environment variables (recipe wins over the base)")
    user: str | None = field(default=None, doc="user the process runs as: a name, uid or uid:gid")
    labels: FrozenDict[str, str] = field(default=EMPTY, doc="image config labels")
    ports: tuple[Port, ...] = field(default=(), doc="exposed ports, e.g. 8080 or 53/udp")
    compression: Compression = field(default="gzip", doc="how layers are compressed: gzip, zstd or none")

    def __post_init__(self) -> None:
        if not self.copy and self.run is None:
            raise ValueError("build needs at least one 'copy' rule or a 'run' step")


@valueclass
class Patch:
    """OS channels the build is rebased onto."""

    channels: FrozenDict[str, str | PerPlatformRefs] = field(
        doc="channel name -> image reference (a multi-platform index serves every platform), another channel's "
            "name, or a mapping of platform -> image reference")
    fallback: Literal["error", "rebuild"] = field(default="error", doc="when a rebase is impossible")
    from_: str | None = field(default=None, key="from", doc="patch this image (e.g. one built by pack) instead "
                                                           "of building source/build")


Percent = Annotated[str, pattern_spec("percent", r"(?:100|[1-9]?[0-9])%", "{value!r} is not a percentage (0% to 100%)")]


@valueclass
class Cohorts:
    """Static A/B tags: rollouts/<name>:cohort-<k>; buckets below the canary share follow n-0."""

    buckets: int = field(default=10, doc="how many cohort tags (clients hash into one of them)")
    canary: Percent = field(default="10%", doc="share of buckets that run the newest release")

    def __post_init__(self) -> None:
        if not 1 <= self.buckets <= 1000:
            raise ValueError("buckets must be between 1 and 1000")


@valueclass
class Rollouts:
    """The release stream rollouts/<name>: releases r<N> cut from one patch channel, and tags n-<k>."""

    channel: ChannelName = field(doc="the patch channel whose images become releases")
    keep: int = field(default=10, doc="how many relative tags n-0 ... n-(keep-1) to maintain")
    cohorts: Cohorts | None = field(default=None, doc="static A/B tags cohort-<k> that clients hash into")


Mode = Annotated[str, pattern_spec("mode", r"0?[0-7]{3,4}", "{value!r} is not an octal file mode (e.g. 0644)")]
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
DnsName = Annotated[str, pattern_spec("dns", rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*", "{value!r} is not a DNS name")]


@valueclass
class Identity:
    """A per-environment identity certificate issued from this CA into every environment image."""

    ca: RecipePath = field(doc="CA certificate (PEM)")
    key: RecipePath = field(doc="CA private key (PEM, may be encrypted)")
    ttl: Duration = field(default="30d", doc="certificate lifetime; re-issued when a third is left")
    key_password_env: EnvVarName | None = field(default=None, doc="environment variable holding the key "
                                                                  "password (never the password itself)")
    trust_domain: DnsName = field(default="regfp.local", doc="SPIFFE trust domain of the SAN URI")
    hosts: tuple[DnsName, ...] = field(default=(), doc="machines allowed to run the image (DNS SANs)")
    puller: str | None = field(default=None, doc="the identity that pulls the image (urn:regfp:puller:...)")


@valueclass
class FileSource:
    """A file for the image, with its mode and owner."""

    src: RecipePath = field(doc="file relative to the recipe")
    mode: Mode = field(default="0644", doc="octal file mode in the image, e.g. 0644")
    owner: Owner = field(default="0:0", doc="numeric uid:gid of the file in the image")


@valueclass
class Push:
    """Where regfp build --push sends images."""

    prefix: str = field(doc="registry prefix, e.g. ghcr.io/acme or localhost:5000/acme")
    private: bool = field(default=False, doc="the target is private: images with secrets may go there")


@valueclass
class Environment:
    """One location x environment variant following the release stream at its delta."""

    location: Name = field(doc="where it runs, e.g. us-east: images are <location>.<environment>/app/<name>")
    environment: Name = field(doc="which environment, e.g. prod or staging")
    delta: int = field(default=0, doc="which release: 0 = newest, 1 = the one before, ...")
    env: Env = field(default=EMPTY, doc="environment variables set in the image (the recipe wins over the release "
                                         "and polyfills)")
    files: FrozenDict[ImageFilePath, str | FileSource] = field(
        default=EMPTY, doc="image path -> file relative to the recipe, or {src, mode, owner}")
    ca_certs: tuple[RecipePath, ...] = field(default=(), doc="CA certificates (PEM files relative to the recipe) "
                                                             "added to the image's CA bundle")
    polyfills: tuple[str, ...] = field(default=(), doc="image references whose layers are merged in")
    identity: Identity | None = field(default=None, doc="issue an identity certificate into the image")
    push: Push | None = field(default=None, doc="this environment's own registry prefix (images go to "
                                                "<prefix>/app/<name>:<tag>)")

    def __post_init__(self) -> None:
        if self.delta < 0:
            raise ValueError("delta must be 0 or more")


@valueclass
class Debug:
    """What regfp debug-image adds: ad-hoc images with tools, root and sshd, never promoted."""

    tools: str | None = field(default=None, doc="image reference of the debug tools (it provides "
                                                "/usr/sbin/dropbear)")
    environment: Name = field(default="dev", doc="the environment whose identity debug images carry")
    ttl: Duration = field(default="8h", doc="how long a debug image lives (dev.regfp.expires; gc --expired "
                                            "drops it after)")


@valueclass
class Matrix:
    """One image per combination of the axes: matrix/<name>:<v1>-<v2>-... (layers in axis order)."""

    name: Name = field(doc="the images are matrix/<name>:<v1>-<v2>-...")
    axes: FrozenDict[str, FrozenDict[str, str | PerPlatformRefs]] = field(
        doc="axis -> {value name -> image reference, or a per-platform mapping platform -> reference}, in "
            "layer order (first axis at the bottom)")
    entrypoint: str | None = field(default=None, doc="the axis whose entrypoint, cmd, workdir and user win")
    overwrite: bool = field(default=False, doc="allow a path to come from two axes (the later axis wins)")

    def __post_init__(self) -> None:
        import re

        if not self.axes:
            raise ValueError("a matrix needs at least one axis")
        for axis, values in self.axes.items():
            if not values:
                raise ValueError(f"axis {axis!r} has no values")
            for value in values:
                if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.]*", value):
                    raise ValueError(f"value {value!r} of axis {axis!r} must be letters, digits, '_' or '.' "
                                     "(it becomes part of a tag)")
        if self.entrypoint is not None and self.entrypoint not in self.axes:
            raise ValueError(f"entrypoint names axis {self.entrypoint!r}, which is not one of "
                             f"{', '.join(self.axes)}")


@valueclass
class Work:
    """Work items split into chunk images work/<name>:<i>-of-<n> for fan-out workers."""

    name: Name = field(doc="the images are work/<name>:<i>-of-<n>")
    root: RecipePath = field(doc="directory holding the items, relative to the recipe")
    items: tuple[str, ...] = field(default=("**/*",), doc="glob patterns within root")
    chunks: int = field(default=4, doc="how many chunk images the items are spread over")
    base: str | PerPlatformRefs | None = field(
        default=None, doc="image the chunks are built on (a channel or reference, or a per-platform mapping "
                          "platform -> reference); default: none (data only)")
    user: Owner = field(default="65534:65534", doc="the non-root user the workers run as")

    def __post_init__(self) -> None:
        if not 1 <= self.chunks <= 10000:
            raise ValueError("chunks must be between 1 and 10000")
        if self.user.partition(":")[0] == "0":
            raise ValueError("work images run as a non-root user")


@valueclass
class Cache:
    """A registry repository used as a shared, content-addressed stage cache (tags key-<hex>, ...)."""

    repository: str = field(doc="registry repository, e.g. ghcr.io/acme/regfp-cache")


@valueclass
class Attest:
    """Sign an SBOM and a provenance for every build, patch, environment, matrix and work image, attached
    as OCI referrers."""

    key: RecipePath = field(doc="signing key (PEM, ECDSA P-256 or Ed25519, may be encrypted; owner-only)")
    key_password_env: EnvVarName | None = field(default=None, doc="environment variable holding the key "
                                                                  "password (never the password itself)")


@valueclass
class Output:
    """Where the computed images are written."""

    layout: RecipePath = field(default="out", doc="OCI layout directory, relative to the recipe")


@valueclass
class Recipe:
    """A regfp recipe, format 1."""

    regfp: Literal[1] = field(doc="format version")
    name: Name = field(doc="the build name used by rollouts and environments")
    platforms: tuple[PlatformName, ...] = field(
        default=(), doc="the platforms to build, e.g. [linux/amd64, linux/arm64]: each stage is then an image "
                        "index with one image per platform (default: the base's platforms if it is a "
                        "multi-platform index or a per-platform mapping, else the host's, as one image)")
    source: Source | None = field(default=None, doc="required unless patch.from names the image to patch")
    build: Build | None = field(default=None, doc="required unless patch.from names the image to patch")
    patch: Patch | None = field(default=None, doc="OS channels the build is rebased onto: "
                                                  "patch/<repo>/<sha>:<channel>")
    rollouts: Rollouts | None = field(default=None, doc="the release stream rollouts/<name>")
    environments: tuple[Environment, ...] = field(default=(), doc="location x environment variants of the "
                                                                  "release stream")
    debug: Debug | None = field(default=None, doc="settings of regfp debug-image")
    matrix: tuple[Matrix, ...] = field(default=(), doc="one image per combination of axis values")
    work: tuple[Work, ...] = field(default=(), doc="work items split into chunk images")
    output: Output = field(default=Output(), doc="where the images are written")
    push: Push | None = field(default=None, doc="the registry prefix regfp build --push sends images to")
    cache: Cache | None = field(default=None, doc="a registry repository used as a shared stage cache")
    attest: Attest | None = field(default=None, doc="sign and attach an SBOM and a provenance to every image")


def fragment(value: Any) -> Any:
    """A model value as plain JSON data, keyed by YAML spelling (what goes into cache keys)."""
    import dataclasses

    from .schema import yaml_key

    if dataclasses.is_dataclass(value):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is None or v == () or v == EMPTY:
                continue
            out[yaml_key(f)] = fragment(v)
        return out
    if isinstance(value, dict):
        return {k: fragment(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [fragment(v) for v in value]
    return value
