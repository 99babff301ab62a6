"""The shared Redox rate limiter: one sliding-window log in Redis for every worker process.

Redox counts requests per IP over a *rolling* five minutes, so we keep the same kind of
window: a sorted set of request timestamps (Redis server time, so workers' clocks do not
matter), trimmed and checked in one Lua script. A 429 from Redox sets a pause every worker
honours ("429s shrink the pace instead of failing jobs").
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

import redis

from worker.errors import RateLimited
from worker.store.keys import Keys

__all__ = ["RateLimiter"]

# KEYS: log zset, penalty key. ARGV: limit, window_ms, member.
# Returns 0 when a slot was taken, else the milliseconds to wait before asking again.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local penalty = tonumber(redis.call('GET', KEYS[2]) or '0')
if penalty > now then
  return penalty - now
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then wait = 1 end
return wait
"""

# KEYS: penalty key. ARGV: pause_ms. Extends the pause, never shortens it.
_THROTTLED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then
  redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]) + 1000)
end
return until_ms
"""


class RateLimiter:
    """``requests`` per ``window_seconds`` across every process sharing the Redis.

    ``acquire()`` blocks until a slot is free (at most ``max_wait_seconds``, then raises
    :class:`RateLimited`, a transient error); ``throttled()`` is Redox's 429 feedback.
    ``on_wait`` receives the seconds each acquire waited (for metrics). Each slot is held for
    the window plus ``transit_allowance_seconds`` (the time from taking a slot to Redox
    receiving the request), so Redox's own rolling count never exceeds ``requests``.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        requests: int,
        window_seconds: float,
        max_wait_seconds: float = 60.0,
        default_pause_seconds: float = 2.0,
        transit_allowance_seconds: float = 0.25,
        on_wait: Callable[[float], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._keys = [keys.ratelimit, keys.ratelimit_penalty]
        self._penalty_key = [keys.ratelimit_penalty]
        self._limit = requests
        # Redox counts a request when it arrives, we count it when the slot is taken: hold each
        # slot a little longer than the window so transit time never puts N+1 in its window.
        self._window_ms = int((window_seconds + transit_allowance_seconds) * 1000)
        self._max_wait = max_wait_seconds
        self._default_pause = default_pause_seconds
        self._on_wait = on_wait
        self._sleep = sleep
        self._acquire = client.register_script(_ACQUIRE)
        self._throttled = client.register_script(_THROTTLED)

    def acquire(self) -> float:
        """Take one request slot, waiting as needed; return the seconds waited."""
        started = time.monotonic()
        member = uuid.uuid4().hex
        while True:
            wait_ms = int(
                self._acquire(keys=self._keys, args=[self._limit, self._window_ms, member])
            )
            waited = time.monotonic() - started
            if wait_ms <= 0:
                if self._on_wait is not None:
                    self._on_wait(waited)
                return waited
            if waited + wait_ms / 1000 > self._max_wait:
                raise RateLimited(
                    f"no Redox request slot within {self._max_wait:.0f}s (shared limiter)",
                    retry_after=wait_ms / 1000,
                )
            # A little jitter so waiting workers do not all wake on the same millisecond.
            self._sleep(wait_ms / 1000 + random.uniform(0, 0.005))

    def throttled(self, retry_after: float | None) -> None:
        """Pause every worker for Retry-After seconds (or a default) after a 429."""
        pause = retry_after if retry_after is not None else self._default_pause
        self._throttled(keys=self._penalty_key, args=[max(1, int(pause * 1000))])
