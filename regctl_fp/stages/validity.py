"""Identity validity windows (no cryptography here, so planning stays cheap to import).

A window is a function of the clock alone: time is cut into slots of two thirds of the lifetime, and
a certificate issued in a slot is valid from the slot's start for the whole lifetime. So any ``now``
in the same slot issues the same certificate (same bytes), a new one is issued when the slot changes,
and at any moment the certificate an image should hold has more than a third of its lifetime left.
"""

from __future__ import annotations

IDENTITY_DIR = "var/run/secrets/regfp/identity"


def window(now: int, ttl: int) -> tuple[int, int]:
    """The validity window for an issue at ``now``: from the start of its slot, for ``ttl`` seconds."""
    step = max(ttl * 2 // 3, 1)
    start = now // step * step
    return start, start + ttl
