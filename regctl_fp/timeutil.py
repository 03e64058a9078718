"""Times as regfp writes them (RFC 3339, UTC, whole seconds) and durations as recipes spell them."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> int:
    """Seconds since the epoch; a missing zone means UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 / RFC 3339 time (e.g. 2026-01-31T12:00:00Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def parse_duration(text: str) -> int:
    """``90d``, ``12h``, ``30m``, ``1w2d``, ``45s`` -> seconds (positive)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"{text!r} is not a duration (e.g. 90d, 12h, 30m)")
    pos = 0
    total = 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text) or total <= 0:
        raise ValueError(f"{text!r} is not a duration (e.g. 90d, 12h, 30m; units s m h d w)")
    return total


def format_duration(seconds: int) -> str:
    for unit, size in (("w", _UNIT["w"]), ("d", _UNIT["d"]), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
