"""Facts from the world outside the library, read in one place: the clock, the environment, the host."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..oci.descriptor import Platform

if TYPE_CHECKING:
    from ..stores.bounded import Rate

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


def transfer_rate() -> Rate:
    """The slowest registry transfer regfp waits for: ``REGFP_MIN_RATE`` bytes per second on average
    (``k``/``m`` suffixes: KiB, MiB), after ``REGFP_TRANSFER_GRACE`` seconds."""
    from ..stores.bounded import DEFAULT_GRACE, DEFAULT_MIN_RATE, Rate

    rate_text = os.environ.get("REGFP_MIN_RATE") or str(DEFAULT_MIN_RATE)
    grace_text = os.environ.get("REGFP_TRANSFER_GRACE") or str(DEFAULT_GRACE)
    scale = {"k": 1 << 10, "m": 1 << 20}.get(rate_text[-1:].lower(), 1)
    try:
        rate = float(rate_text[:-1] if scale > 1 else rate_text) * scale
        grace = float(grace_text)
    except ValueError:
        raise InvalidInput(f"REGFP_MIN_RATE={rate_text!r} and REGFP_TRANSFER_GRACE={grace_text!r} must be numbers "
                           "(bytes per second with an optional k or m suffix; seconds)") from None
    if not (rate > 0 and grace >= 0) or rate == float("inf") or grace == float("inf"):
        raise InvalidInput("REGFP_MIN_RATE must be above 0 and REGFP_TRANSFER_GRACE at least 0, both finite")
    return Rate(min_rate=rate, grace=grace)


def host_platform() -> Platform:
    machine = os.uname().machine.lower()  # what platform.machine() reads, without importing platform
    arch, variant = _ARCH.get(machine, (machine, None))
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
