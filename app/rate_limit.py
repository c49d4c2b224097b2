"""Requests per minute per API key: in Redis when one is configured, else in this process.

Fixed one-minute windows. The Redis counter is one Lua script (INCR, set the expiry on the
first hit, read the remaining time) so that concurrent API replicas share one count and no
window is ever left without an expiry. If Redis cannot be reached the limiter *fails open*:
the request goes through, a warning is logged (at most every few seconds) and `failed_open`
counts it. Rate limiting protects capacity, it is not an authorization check: refusing every
request because the limiter's store is down would turn a cache outage into a full outage,
while the keys themselves are still checked against the database.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

WINDOW_S = 60
_WARN_EVERY_S = 10.0
_MEMORY_BUCKETS = 10_000

# KEYS[1]: the counter; ARGV[1]: the window in milliseconds. Returns {count, ms left}.
_FIXED_WINDOW = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0


class RateLimiter(Protocol):
    # True when hit() is in-memory work (no network): the auth guard may call it on the event
    # loop instead of a worker thread.
    in_process: bool

    def hit(self, bucket: str, limit: int) -> Decision:
        """Count one request against `bucket`; `limit` requests per window are allowed."""
        ...

    def close(self) -> None: ...


class MemoryRateLimiter:
    """One process's counters: the embedded default, which has no Redis."""

    in_process = True

    def __init__(self, window_s: int = WINDOW_S) -> None:
        self._window_s = window_s
        self._counts: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, bucket: str, limit: int) -> Decision:
        now = time.monotonic()
        with self._lock:
            started, count = self._counts.get(bucket, (now, 0))
            if now - started >= self._window_s:
                started, count = now, 0
            if len(self._counts) >= _MEMORY_BUCKETS and bucket not in self._counts:
                self._counts.clear()  # bounded memory; at worst a window restarts early
            self._counts[bucket] = (started, count + 1)
        if count + 1 <= limit:
            return Decision(True)
        return Decision(False, max(1, math.ceil(started + self._window_s - now)))

    def close(self) -> None:
        return None


class RedisRateLimiter:
    """Counters in Redis, shared by every API replica."""

    in_process = False

    def __init__(self, url: str, window_s: int = WINDOW_S) -> None:
        import redis

        self._window_s = window_s
        # Short timeouts: a slow Redis must not add seconds to every request.
        self._redis: Any = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_FIXED_WINDOW)
        self.failed_open = 0
        self._warned_at = 0.0

    def hit(self, bucket: str, limit: int) -> Decision:
        import redis

        try:
            count, ttl_ms = self._script(
                keys=[f"rag:ratelimit:{bucket}"], args=[self._window_s * 1000]
            )
        except redis.RedisError as exc:
            self.failed_open += 1
            now = time.monotonic()
            if now - self._warned_at >= _WARN_EVERY_S:
                self._warned_at = now
                log.warning(
                    "rate limiter cannot reach Redis (%s); letting requests through (%d so far)",
                    exc.__class__.__name__,
                    self.failed_open,
                )
            return Decision(True)
        if int(count) <= limit:
            return Decision(True)
        return Decision(False, max(1, math.ceil(int(ttl_ms) / 1000)))

    def close(self) -> None:
        self._redis.close()


def make_rate_limiter(redis_url: str) -> RateLimiter:
    return RedisRateLimiter(redis_url) if redis_url else MemoryRateLimiter()
