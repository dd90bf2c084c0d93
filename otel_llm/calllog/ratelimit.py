"""Per-key request rate limits: a token bucket per (API key, endpoint class).

The seeds' defaults: list 60, details 120, stats 30 requests per minute. A bucket holds up to a
minute's allowance and refills continuously, so a client may burst up to its limit and then
gets one request per ``60 / limit`` seconds; a refused request is told, in whole seconds, when
the next one will pass (``Retry-After``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from otel_llm import settings

EndpointClass = Literal["list", "details", "stats"]
"""list: list and count; details: one call and its details; stats: statistics."""


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Requests per minute allowed to one key, per endpoint class; 0: unlimited."""

    list_per_minute: int = 60
    details_per_minute: int = 120
    stats_per_minute: int = 30

    def __post_init__(self) -> None:
        for name in ("list_per_minute", "details_per_minute", "stats_per_minute"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")

    def per_minute(self, endpoint: EndpointClass) -> int:
        return {
            "list": self.list_per_minute,
            "details": self.details_per_minute,
            "stats": self.stats_per_minute,
        }[endpoint]

    @classmethod
    def from_settings(cls) -> RateLimits:
        """The limits the ``call_log_rate_limit_*`` settings give (environment or default)."""
        return cls(
            list_per_minute=settings.CALL_LOG_RATE_LIMIT_LIST.resolve(),
            details_per_minute=settings.CALL_LOG_RATE_LIMIT_DETAILS.resolve(),
            stats_per_minute=settings.CALL_LOG_RATE_LIMIT_STATS.resolve(),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may proceed; ``retry_after`` (seconds, >= 1) when it may not."""

    allowed: bool
    limit: int
    """Requests per minute of this endpoint class (0: unlimited)."""
    remaining: int
    """Requests that would pass right now."""
    retry_after: int = 0


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float):
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    """Thread-safe token buckets. Memory is bounded: past ``max_buckets`` the least recently
    used bucket is forgotten (it would have refilled to full long before, with the few keys an
    operator configures)."""

    def __init__(
        self,
        limits: RateLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = 10_000,
    ):
        self.limits = limits if limits is not None else RateLimits()
        self._clock = clock
        self._max_buckets = max_buckets
        self._buckets: OrderedDict[tuple[str, EndpointClass], _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: str, endpoint: EndpointClass) -> Decision:
        """Take one request's token from ``key``'s bucket for ``endpoint``, if there is one."""
        limit = self.limits.per_minute(endpoint)
        if limit == 0:
            return Decision(allowed=True, limit=0, remaining=0)
        rate = limit / 60.0  # tokens per second
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get((key, endpoint))
            if bucket is None:
                bucket = _Bucket(float(limit), now)
                self._buckets[(key, endpoint)] = bucket
                if len(self._buckets) > self._max_buckets:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end((key, endpoint))
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(float(limit), bucket.tokens + elapsed * rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return Decision(allowed=True, limit=limit, remaining=int(bucket.tokens))
            wait = (1.0 - bucket.tokens) / rate
            return Decision(allowed=False, limit=limit, remaining=0, retry_after=_seconds(wait))

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)


def _seconds(wait: float) -> int:
    # Retry-After is whole seconds; rounding up means a client that waits that long passes.
    return max(1, math.ceil(wait - 1e-9))
