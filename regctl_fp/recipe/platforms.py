"""Platforms in recipes: ``os/arch[/variant]`` names as the OCI image-spec spells them, and image
references given once for every platform or per platform (``{linux/amd64: ..., linux/arm64: ...}``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..oci.canonical import canonical_json
from ..oci.descriptor import Platform
from ..values import valueclass

# Values of the image-spec's platform.os / platform.architecture (Go's GOOS/GOARCH) that images use,
# and the names people type instead (uname -m, Debian, Rust).
ARCHITECTURES = frozenset({"386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle",
                           "ppc64", "ppc64le", "riscv64", "s390x", "wasm"})
OSES = frozenset({"aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js", "linux",
                  "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows"})
ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "x64": "amd64", "aarch64": "arm64", "armhf": "arm/v7",
                "armel": "arm/v6", "i386": "386", "i686": "386", "ppc64el": "ppc64le"}


def check_platform(text: str) -> str:
    """``text`` if it names a platform as the image-spec does (``linux/arm64``, ``linux/arm/v7``), else
    a ValueError saying what is wrong and, for a familiar misspelling, what to write."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {text!r} is not os/architecture[/variant] (e.g. linux/amd64, linux/arm/v7)")
    os_, arch = parts[0], parts[1]
    if os_ not in OSES:
        raise ValueError(f"platform {text!r}: unknown os {os_!r} (e.g. linux, windows)")
    if arch not in ARCHITECTURES:
        hint = f"; did you mean {os_}/{ARCH_ALIASES[arch]}?" if arch in ARCH_ALIASES else \
            " (e.g. amd64, arm64, arm, 386, ppc64le, s390x, riscv64)"
        raise ValueError(f"platform {text!r}: unknown architecture {arch!r}{hint}")
    if len(parts) == 3 and not parts[2].isalnum():
        raise ValueError(f"platform {text!r}: the variant must be letters and digits (e.g. v7, v8)")
    return text


def parse_platform(text: str) -> Platform:
    return Platform.parse(check_platform(text))


def same_platform(a: Platform, b: Platform) -> bool:
    """Equal as the image-spec compares them: a missing variant is the architecture's default one
    (arm64 is v8), so linux/arm64 and linux/arm64/v8 are one platform."""
    return a.matches(b) and b.matches(a)


def duplicate(platforms: Iterable[Platform]) -> tuple[Platform, Platform] | None:
    """Two entries of ``platforms`` that name the same platform, if any."""
    seen: list[Platform] = []
    for p in platforms:
        for q in seen:
            if same_platform(p, q):
                return q, p
        seen.append(p)
    return None


@valueclass
class Refs:
    """An image reference for every platform (``single``; an index gives each its own manifest), or one
    per platform (``per_platform``: platform name -> reference)."""

    single: str | None
    per_platform: Mapping[str, str]

    @classmethod
    def of(cls, value: str | Mapping[str, str]) -> Refs:
        return cls(value, {}) if isinstance(value, str) else cls(None, dict(value))

    @property
    def text(self) -> str:
        """The reference, or the per-platform map as canonical JSON: what keys and labels record."""
        return self.single if self.single is not None else canonical_json(dict(self.per_platform)).decode()

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return tuple(Platform.parse(p) for p in self.per_platform)

    def for_platform(self, platform: Platform) -> str | None:
        """The reference to load for ``platform`` (None: the map names no image for it)."""
        if self.single is not None:
            return self.single
        for name, ref in self.per_platform.items():
            if same_platform(Platform.parse(name), platform):
                return ref
        return None
