"""Facts from the world outside the library, read in one place: the clock, the environment, the host."""

from __future__ import annotations

import os
import platform as host
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..oci.descriptor import Platform

if TYPE_CHECKING:
    from ..sources import BuildOptions

_ARCH = {"x86_64": ("amd64", None), "amd64": ("amd64", None), "aarch64": ("arm64", None),
         "arm64": ("arm64", None), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"), "ppc64le": ("ppc64le", None),
         "s390x": ("s390x", None), "riscv64": ("riscv64", None), "i686": ("386", None)}


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` if set (reproducible-builds.org), else 0: never the clock."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return 0
    try:
        epoch = int(value)
    except ValueError:
        raise InvalidInput(f"SOURCE_DATE_EPOCH={value!r} is not an integer number of seconds") from None
    if epoch < 0:
        raise InvalidInput("SOURCE_DATE_EPOCH must not be negative")
    return epoch


def host_platform() -> Platform:
    arch, variant = _ARCH.get(host.machine().lower(), (host.machine().lower(), None))
    return Platform("linux", arch, variant)


def parse_platform(text: str | None) -> Platform | None:
    if text is None:
        return None
    try:
        return Platform.parse(text)
    except ValueError as e:
        raise InvalidInput(str(e)) from None


def cache_dir() -> Path:
    """Where regfp keeps caches (Git mirrors, dir: images): ``$XDG_CACHE_HOME/regfp``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "regfp"


def config_dir() -> Path:
    """Where regfp keeps small per-user files that are not caches: ``$XDG_CONFIG_HOME/regfp``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "regfp"


def build_options(platform: Platform | None = None) -> BuildOptions:
    """How dir: references become images on this machine: its platform, SOURCE_DATE_EPOCH, the cache."""
    import time

    from ..dircache import DirCache
    from ..sources import BuildOptions
    from .registry_session import open_for_sources

    return BuildOptions(epoch=source_date_epoch(), platform=platform or host_platform(),
                        cache=DirCache(cache_dir() / "dir-images.json", clock=time.time_ns), registry=open_for_sources)
