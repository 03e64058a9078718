"""Identity validity windows (no cryptography here, so planning stays cheap to import).

Windows are aligned to a third of the lifetime: any ``now`` inside the same third issues the same
certificate, and a certificate is re-issued once less than a third of its lifetime is left.
"""

from __future__ import annotations

IDENTITY_DIR = "var/run/secrets/regfp/identity"


def window(now: int, ttl: int) -> tuple[int, int]:
    """The validity window for an issue at ``now``: aligned to a third of ``ttl``."""
    step = max(ttl // 3, 1)
    start = now // step * step
    return start, start + ttl


def needs_reissue(not_after: int, ttl: int, now: int) -> bool:
    return not_after - now < ttl / 3
