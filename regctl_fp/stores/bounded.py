"""Bounds on what a registry can make regfp read or wait for: response bodies read whole are capped, and
every transfer must keep a minimum average rate after a grace period, so a server that answers without
end, or one byte every few seconds, fails with a clear error instead of exhausting memory or patience.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import RegistryError
from ..values import valueclass
from .http_client import DecodingError, Response

BODY_LIMIT = 16 << 20  # a response read whole: token answers, tag and repository lists, /v2/
ERROR_BODY_LIMIT = 64 << 10  # an error answer is read for its message only; the rest is dropped
DEFAULT_MIN_RATE = 100 << 10  # bytes per second, on average over a whole transfer
DEFAULT_GRACE = 60.0  # seconds every transfer gets on top of what the minimum rate allows


@valueclass
class Rate:
    """The slowest transfer regfp waits for: ``grace`` seconds plus ``size / min_rate``."""

    min_rate: float = DEFAULT_MIN_RATE
    grace: float = DEFAULT_GRACE

    def allowed(self, size: int) -> float:
        return self.grace + size / self.min_rate

    def describe(self) -> str:
        return f"{self.grace:g} s plus 1 s per {self.min_rate:g} bytes"


class Deadline:
    """When a transfer started, and the checks that it is not too slow."""

    def __init__(self, rate: Rate, clock: Callable[[], float]) -> None:
        self.rate = rate
        self._clock = clock
        self.start = clock()

    @property
    def elapsed(self) -> float:
        return self._clock() - self.start

    def exceeded(self, size: int) -> bool:
        """Whether a transfer of ``size`` bytes has taken longer than the rate allows for it."""
        return self.elapsed > self.rate.allowed(size)


def read_body(resp: Response, method: str, rate: Rate, clock: Callable[[], float]) -> None:
    """Read ``resp``'s body whole, so that ``resp.content`` holds it, within bounds, and close it.

    A success answer larger than ``BODY_LIMIT`` is refused; an error answer is cut at
    ``ERROR_BODY_LIMIT`` (only its message matters). The body must arrive at the minimum average rate
    after the grace period. Transport errors propagate for the caller to retry.
    """
    limit = BODY_LIMIT if resp.is_success else ERROR_BODY_LIMIT
    deadline = Deadline(rate, clock)
    parts: list[bytes] = []
    got = 0
    try:
        for chunk in resp.iter_bytes():  # decoded: a small compressed body cannot expand past the limit
            if got + len(chunk) > limit:
                if resp.is_success:
                    raise RegistryError(method, str(resp.request.url), resp.status_code, None,
                                        f"the answer is larger than {limit >> 20} MiB; refusing to read it")
                parts.append(chunk[:limit - got])
                break
            parts.append(chunk)
            got += len(chunk)
            if deadline.exceeded(got):
                raise RegistryError(method, str(resp.request.url), resp.status_code, None,
                                    f"the answer came too slowly ({got} bytes in {deadline.elapsed:.0f} s; "
                                    f"the limit is {rate.describe()})")
    except DecodingError as e:
        raise RegistryError(method, str(resp.request.url), resp.status_code, None,
                            f"the answer cannot be decoded ({e})") from None
    finally:
        resp.close()
    resp.set_content(b"".join(parts))  # what ``resp.content`` and ``resp.json()`` read
