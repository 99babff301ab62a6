"""The shared Redox rate limiter: one sliding-window log in Redis for every worker process,
and one adaptive limit next to it that a 429 lowers for every worker at once.

Redox counts requests per IP over a *rolling* five minutes, so we keep the same kind of
window: a sorted set of request timestamps (Redis server time, so workers' clocks do not
matter), trimmed and checked in one Lua script per request. The same log also caps each
``burst_share`` of the window at that share of the limit (by default a twentieth of the
budget in any twentieth of the window): the long-run rate is unchanged, but a window's
budget goes out at a steady pace instead of in one burst. That keeps the first 429 cheap:
when Redox's real limit is below the budget, every request admitted between Redox filling
up and its first 429 reaching the limiter draws a 429 too; at full-burst speed (every
worker slot sending) that is dozens, at the steady pace one or two.

The budget we are configured with (``requests``) is a guess: Redox's pages give both
7,500 and 10,000 per five minutes, and another tool on the same egress IP spends from the
same count. A 429 is the only evidence of the real limit, so it changes the pace of every
worker, not just the call that drew it:

* ``Retry-After`` (when Redox sends it) becomes a cooldown every worker honours; without
  it, a short default pause.
* ``X-RateLimit-Limit`` is Redox's real limit per *its* window: the allowed rate drops to
  ``limit_share`` of it (scaled to our window) and stays there ``learned_limit_windows``
  windows. A limit Redox told us is not probed again at once: probing above it can only
  earn 429s.
* A 429 the header does not explain (no header, or we were already at or below the share
  of it, so something else spends from the count) cuts the allowed rate by
  ``backoff_factor``, once per round of requests: a 429 for a request admitted before the
  last cut says nothing about the new rate and is ignored (TCP's "one decrease per
  window of data"; each thread remembers when its last request was admitted).
* Without 429s the allowed rate grows back additively, ``recovery_share`` of ``requests``
  per window every window, never above ``requests``; with them it never falls below
  ``min_share`` of ``requests`` (429s that are not about our rate must not stall a fleet).

The adaptive state is one hash, ``<prefix>:ratelimit:adaptive``: ``limit`` requests per
window at time ``from`` (recovery starts at ``from``), ``cut`` (when it was last lowered),
and the ``requests``, ``window`` and ``step`` it was computed with. Recovery is computed
from it, not written, so an acquire stays one Lua call that only writes the log; only a
429 writes the state, atomically. The hash expires once the rate is back at the budget;
missing means "the budget". Everything adaptive is per window, so a short window (tests,
benchmarks) is the same behaviour time-compressed.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import redis

from worker.errors import RateLimited
from worker.store.keys import Keys

__all__ = ["RateLimiter", "adaptive_key", "allowed_share"]

# Shared Lua prologue: Redis time in ms (with microseconds), and allowed(): the requests
# per window allowed now, where recovery starts, and the last cut (the budget, now and 0
# when the hash is empty).
_ALLOWED = """
local function allowed(state_key, now, budget, window, step)
  local s = redis.call('HMGET', state_key, 'limit', 'from', 'cut')
  local limit = tonumber(s[1])
  if limit == nil then return budget, now, 0 end
  local from = tonumber(s[2]) or now
  if now > from then limit = limit + step * (now - from) / window end
  if limit > budget then limit = budget end
  return limit, from, tonumber(s[3]) or 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
-- Numbers passed to redis.call keep only 14 digits: times go as strings, to the microsecond.
local function ms(value) return string.format('%.3f', value) end
"""

# KEYS: log zset, penalty key, adaptive state hash.
# ARGV: requests, window_ms, recovery per window, member, burst share (1: off).
# Now is in ms with microseconds (log scores too): the cut below tells requests admitted
# before it from those admitted after it, and a millisecond holds several requests.
# Returns {0, now} when a slot was taken, else {ms to wait before asking again, now}.
_ACQUIRE = (
    _ALLOWED
    + """
local budget = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local step = tonumber(ARGV[3])
local penalty = tonumber(redis.call('GET', KEYS[2]) or '0')
if penalty > now then
  return {math.ceil(penalty - now), ms(now)}
end
local limit, from = allowed(KEYS[3], now, budget, window, step)
local slots = math.max(1, math.floor(limit))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < slots then
  -- Room in the window; is there room in its last burst share too?
  local burst = tonumber(ARGV[5])
  if burst < 1 then
    local span = window * burst
    local cap = math.max(1, math.ceil(slots * burst))
    local since = '(' .. ms(now - span)
    local recent = redis.call('ZCOUNT', KEYS[1], since, '+inf')
    if recent >= cap then
      local row = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES', 'LIMIT',
        recent - cap, 1)
      return {math.max(1, math.ceil(tonumber(row[2]) + span - now)), ms(now)}
    end
  end
  redis.call('ZADD', KEYS[1], ms(now), ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  return {0, ms(now)}
end
-- Full: wait until enough old requests leave the window for one more to fit...
local oldest = redis.call('ZRANGE', KEYS[1], count - slots, count - slots, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
-- ...or until recovery grants one more slot, if that comes first.
if limit < budget then
  local grow = math.ceil((slots + 1 - limit) * window / step) + math.max(0, from - now)
  if grow < wait then wait = grow end
end
if wait < 1 then wait = 1 end
return {math.ceil(wait), ms(now)}
"""
)

# KEYS: penalty key, adaptive state hash.
# ARGV: requests, window_ms, recovery per window, pause_ms (0: none), header target per
# window (0: no header), admitted_at ms (0: unknown), backoff factor, learned hold ms,
# the lowest share of the budget allowed.
# Returns {action, allowed limit after it (string)}.
_THROTTLED = (
    _ALLOWED
    + """
local budget = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local step = tonumber(ARGV[3])
local pause = tonumber(ARGV[4])
local target = tonumber(ARGV[5])
local admitted = tonumber(ARGV[6])
if pause > 0 then
  local until_ms = now + pause
  local current = tonumber(redis.call('GET', KEYS[1]) or '0')
  if until_ms > current then
    redis.call('SET', KEYS[1], ms(until_ms), 'PX', pause + 1000)
  end
end
local limit, from, cut = allowed(KEYS[2], now, budget, window, step)
local action, new, start
if target > 0 and limit > target then
  action, new, start = 'limit', target, now + tonumber(ARGV[8])
elseif admitted == 0 or admitted >= cut then
  action, new, start = 'backoff', limit * tonumber(ARGV[7]), math.max(now, from)
else
  return {'ignored', tostring(limit)}
end
-- A stated limit is obeyed; guesses (backoff) keep the floor.
local floor = action == 'backoff' and budget * tonumber(ARGV[9]) or 1
if new < floor then new = floor end
if new < 1 then new = 1 end
redis.call('HSET', KEYS[2], 'limit', tostring(new), 'from', ms(start), 'cut', ms(now),
  'requests', budget, 'window', window, 'step', ARGV[3])
local ttl = math.ceil((start - now) + (budget - new) * window / step) + window
redis.call('PEXPIRE', KEYS[2], ttl)
return {action, tostring(new)}
"""
)

# KEYS: adaptive state hash. ARGV: requests, window_ms, recovery per window.
_CURRENT = (
    _ALLOWED
    + """
local limit = allowed(KEYS[1], now, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
return tostring(limit)
"""
)


def adaptive_key(keys: Keys) -> str:
    """Hash: the adaptive limit every worker obeys (absent: the configured budget)."""
    return f"{keys.ratelimit}:adaptive"


def allowed_share(state: Mapping[str, str], now_ms: float) -> float:
    """Share of the configured budget the limiter allows at ``now_ms`` (unix ms), read from
    the adaptive hash: 1.0 when it is empty. For metrics, which know neither the budget nor
    the window (the hash carries both, and the recovery step)."""
    try:
        limit, start = float(state["limit"]), float(state["from"])
        budget, window, step = (
            float(state["requests"]),
            float(state["window"]),
            float(state["step"]),
        )
    except (KeyError, ValueError):
        return 1.0
    if budget <= 0 or window <= 0:
        return 1.0
    if now_ms > start:
        limit += step * (now_ms - start) / window
    return min(1.0, limit / budget)


class RateLimiter:
    """``requests`` per ``window_seconds`` across every process sharing the Redis, lowered
    for all of them when Redox answers 429 (see the module docstring).

    ``acquire()`` blocks until a slot is free (at most ``max_wait_seconds``, then raises
    :class:`RateLimited`, a transient error); ``throttled()`` is Redox's 429 feedback.
    ``on_wait`` receives the seconds each acquire waited and ``on_throttled`` what each 429
    did (``"limit"``, ``"backoff"`` or ``"ignored"``), for metrics. Each slot is held for
    the window plus ``transit_allowance_seconds`` (the time from taking a slot to Redox
    receiving the request), so Redox's own rolling count never exceeds the allowed limit.
    ``redox_window_seconds`` is the window ``X-RateLimit-Limit`` counts over (Redox: five
    minutes); unset, ours. ``burst_share`` 1 turns the burst cap off (the whole window's
    limit may go at once).
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
        limit_share: float = 0.8,
        backoff_factor: float = 0.5,
        recovery_share: float = 0.1,
        learned_limit_windows: float = 12.0,
        redox_window_seconds: float | None = None,
        burst_share: float = 0.05,
        min_share: float = 0.05,
        on_wait: Callable[[float], None] | None = None,
        on_throttled: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._state_key = adaptive_key(keys)
        self._acquire_keys = [keys.ratelimit, keys.ratelimit_penalty, self._state_key]
        self._throttled_keys = [keys.ratelimit_penalty, self._state_key]
        self._limit = requests
        # Redox counts a request when it arrives, we count it when the slot is taken: hold each
        # slot a little longer than the window so transit time never puts N+1 in its window.
        self._window_ms = int((window_seconds + transit_allowance_seconds) * 1000)
        self._step = max(recovery_share * requests, 1e-6)
        self._budget_args: list[str | int] = [requests, self._window_ms, repr(self._step)]
        # X-RateLimit-Limit counts per Redox's window; we aim at a share of it per ours.
        self._header_scale = limit_share * window_seconds / (redox_window_seconds or window_seconds)
        self._backoff = backoff_factor
        self._min_share = repr(min_share)
        self._burst = repr(burst_share)
        self._hold_ms = int(learned_limit_windows * self._window_ms)
        self._max_wait = max_wait_seconds
        self._default_pause = default_pause_seconds
        self._on_wait = on_wait
        self._on_throttled = on_throttled
        self._sleep = sleep
        # When this thread's last request was admitted (Redis ms): a 429 for a request
        # admitted before the last cut is stale. The client acquires, sends and reports
        # the 429 on one thread.
        self._admitted = threading.local()
        self._acquire = client.register_script(_ACQUIRE)
        self._throttled = client.register_script(_THROTTLED)
        self._current = client.register_script(_CURRENT)

    def acquire(self) -> float:
        """Take one request slot, waiting as needed; return the seconds waited."""
        started = time.monotonic()
        member = uuid.uuid4().hex
        while True:
            args = [*self._budget_args, member, self._burst]
            reply: Any = self._acquire(keys=self._acquire_keys, args=args)
            wait_ms, now_ms = int(reply[0]), float(reply[1])
            waited = time.monotonic() - started
            if wait_ms <= 0:
                self._admitted.at = now_ms
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

    def throttled(self, retry_after: float | None, limit: str | int | None = None) -> None:
        """Redox answered 429: pause every worker for Retry-After seconds (or a default),
        and lower the shared limit: to a share of ``limit`` (the ``X-RateLimit-Limit``
        header, per Redox's window) when it explains the 429, else multiplicatively."""
        pause = retry_after if retry_after is not None else self._default_pause
        real = _positive_int(limit)
        target = real * self._header_scale if real is not None else 0.0
        admitted = repr(getattr(self._admitted, "at", 0.0))
        reply: Any = self._throttled(
            keys=self._throttled_keys,
            args=[
                *self._budget_args,
                max(1, int(pause * 1000)),
                repr(target),
                admitted,
                repr(self._backoff),
                self._hold_ms,
                self._min_share,
            ],
        )
        if self._on_throttled is not None:
            action = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            self._on_throttled(action)

    def allowed(self) -> float:
        """Requests per window every worker may send now (``requests`` unless a 429
        lowered it)."""
        reply: Any = self._current(keys=[self._state_key], args=self._budget_args)
        return float(reply.decode() if isinstance(reply, bytes) else reply)


def _positive_int(value: str | int | None) -> int | None:
    """A header's limit as a positive integer; None when absent or unusable."""
    if value is None:
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if 0 < number < 2**31 else None
