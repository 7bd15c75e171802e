"""Fault injection for the local workspace emulator: latency, dropped connections, 429/503.

One seeded random source under a lock decides each request's fate, so a test that sets
`Faults.seed` sees the same sequence of faults every run.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass

WRITE_METHODS = frozenset({"PUT", "DELETE"})


@dataclass
class Faults:
    """What can go wrong, as shares of requests; change the fields while the emulator runs."""

    rate_429: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    # Of the dropped writes, the share applied before the connection closes: the change is made
    # and only the response is lost, which is what a client cannot tell from a failed write.
    drop_after_write: float = 0.5
    retry_after_s: float = 1.0
    latency_s: float = 0.0
    # (capacity, refill per second) of a token bucket that PUT and DELETE draw from.
    write_bucket: tuple[int, float] | None = None
    seed: int | None = None
    # Only requests with these methods draw faults (latency still applies to all); None: all.
    methods: frozenset[str] | None = None


@dataclass(frozen=True)
class Refusal:
    """A throttling or availability answer given instead of handling the request."""

    status: int
    code: str
    message: str
    retry_after: int


@dataclass(frozen=True)
class Decision:
    """The fate of one request, decided before it is handled."""

    latency_s: float = 0.0
    # Close the connection without a response, before handling or after handling.
    drop_before: bool = False
    drop_after: bool = False
    refusal: Refusal | None = None


class FaultInjector:
    """Turns the live `Faults` into a `Decision` per request; safe to call from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._random = random.Random()
        # The Faults object and seed the random source was last seeded from.
        self._seeded_from: tuple[Faults, int | None] | None = None
        self._bucket: tuple[int, float] | None = None
        self._tokens = 0.0
        self._refilled_at = 0.0

    def decide(self, faults: Faults, method: str) -> Decision:
        """Draw this request's faults, in a fixed order so that a seed gives a fixed sequence."""
        is_write = method in WRITE_METHODS
        if faults.methods is not None and method not in faults.methods:
            return Decision(latency_s=faults.latency_s)
        with self._lock:
            self._reseed(faults)
            dropped = self._happens(faults.rate_drop)
            applied = dropped and is_write and self._happens(faults.drop_after_write)
            if dropped and not applied:
                return Decision(latency_s=faults.latency_s, drop_before=True)
            refusal = self._refusal(faults, is_write)
        return Decision(latency_s=faults.latency_s, drop_after=applied, refusal=refusal)

    def _reseed(self, faults: Faults) -> None:
        """Start the sequence over when the seed or the whole Faults object is replaced."""
        if self._seeded_from is not None:
            source, seed = self._seeded_from
            if source is faults and seed == faults.seed:
                return
        self._random.seed(faults.seed)
        self._seeded_from = (faults, faults.seed)

    def _happens(self, rate: float) -> bool:
        # Draw only for rates in use, so that enabling one fault leaves the others' sequence alone.
        return rate > 0 and self._random.random() < rate

    def _refusal(self, faults: Faults, is_write: bool) -> Refusal | None:
        retry_after = _header_seconds(faults.retry_after_s)
        if self._happens(faults.rate_429):
            return too_many_requests(retry_after)
        if self._happens(faults.rate_503):
            # NOTE: the emulator guesses a 503 as ARM's error body plus Retry-After, the shape of
            # its other refusals; azure-core's RetryPolicy retries 503 and honours Retry-After.
            return Refusal(
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable. Please retry the request later.",
                retry_after,
            )
        if is_write and faults.write_bucket is not None:
            wait = self._take_token(faults.write_bucket, faults.retry_after_s)
            if wait > 0:
                return too_many_requests(_header_seconds(wait))
        return None

    def _take_token(self, bucket: tuple[int, float], fallback_wait: float) -> float:
        """Take one write token; 0 when there was one, else the seconds until the next."""
        capacity, per_second = bucket
        now = time.monotonic()
        if bucket != self._bucket:
            self._bucket, self._tokens, self._refilled_at = bucket, float(capacity), now
        if per_second > 0:
            elapsed = now - self._refilled_at
            self._tokens = min(float(capacity), self._tokens + elapsed * per_second)
        self._refilled_at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        if per_second <= 0:
            return fallback_wait
        return (1 - self._tokens) / per_second


def too_many_requests(retry_after: int) -> Refusal:
    """A 429 as ARM sends it when a client is throttled."""
    # NOTE: ARM throttling answers 429 with Retry-After in seconds (Learn, "Understand how Azure
    # Resource Manager throttles requests"); the error code and message are the emulator's guess.
    return Refusal(
        429,
        "TooManyRequests",
        f"The request was throttled. Retry after {retry_after} seconds.",
        retry_after,
    )


def _header_seconds(seconds: float) -> int:
    """Retry-After carries whole seconds: round up, and never 0 for a real wait."""
    return max(1, math.ceil(seconds)) if seconds > 0 else 0
