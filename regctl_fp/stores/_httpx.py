"""httpx, imported without what a synchronous client never uses: httpcore imports trio whenever it is
installed (~40 ms of start-up), and httpx imports its command-line client (rich, pygments: ~15 ms).
Both are marked absent while httpx loads, unless something imported them already."""

from __future__ import annotations

import sys

_SKIPPED = [name for name in ("trio", "httpx._main") if name not in sys.modules]
for name in _SKIPPED:
    sys.modules[name] = None  # type: ignore[assignment]  # makes importing it raise ImportError
try:
    import httpcore  # noqa: F401 - its connection pool is what pulls trio in, lazily, later
    import httpx
finally:
    for name in _SKIPPED:
        del sys.modules[name]

__all__ = ["httpx"]
