"""The shared sliding-window limiter on a real redis-server, with an injected sleep.

The injected sleep moves the limiter's clock instead of waiting: it shifts every logged
request, the 429 pause and the adaptive state's times back by the slept time, as if that
much time had passed.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from worker.errors import RateLimited
from worker.store.keys import Keys
from worker.store.limiter import RateLimiter, adaptive_key, allowed_share

WINDOW = 10.0
#: The log holds each slot for the window plus the transit allowance.
HELD = WINDOW + 0.25


class VirtualSleep:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        shift = seconds * 1000
        rows: Any = self.client.zrange(self.keys.ratelimit, 0, -1, withscores=True)
        for member, score in rows:
            self.client.zadd(self.keys.ratelimit, {member: score - shift})
        penalty: Any = self.client.get(self.keys.ratelimit_penalty)
        if penalty is not None:
            self.client.set(self.keys.ratelimit_penalty, int(float(penalty) - shift) - 1)
        state = adaptive_key(self.keys)
        for name in ("from", "cut"):
            value: Any = self.client.hget(state, name)
            if value is not None:
                self.client.hset(state, name, str(float(value) - shift))

    def advance(self, seconds: float) -> None:
        """Let time pass without a limiter asking for it."""
        self(seconds)
        self.calls.pop()


def limiter(client: redis.Redis, keys: Keys, sleep: VirtualSleep, **kw: Any) -> RateLimiter:
    """A limiter on the test's Redis; without the burst cap unless a test sets it."""
    args: dict[str, Any] = {
        "requests": 3,
        "window_seconds": WINDOW,
        "max_wait_seconds": 60.0,
        "burst_share": 1.0,
    }
    args.update(kw)
    return RateLimiter(client, keys, transit_allowance_seconds=0.25, sleep=sleep, **args)


def slots_now(one: RateLimiter, sleep: VirtualSleep, most: int = 1000) -> int:
    """How many acquires go through before the first wait (the allowed limit in use)."""
    before = len(sleep.calls)
    taken = 0
    while len(sleep.calls) == before and taken < most:
        one.acquire()
        taken += 1
    return taken - 1 if len(sleep.calls) > before else taken


# -- the sliding window -----------------------------------------------------------------


def test_window_holds_n_requests(redis_client: redis.Redis, keys: Keys) -> None:
    sleep = VirtualSleep(redis_client, keys)
    one = limiter(redis_client, keys, sleep)
    for _ in range(3):
        one.acquire()
    assert sleep.calls == []
    one.acquire()  # the fourth must wait for the oldest to leave the window
    assert len(sleep.calls) == 1
    assert WINDOW < sleep.calls[0] <= HELD + 0.01  # window + transit allowance (+ jitter)
    assert 1 <= redis_client.zcard(keys.ratelimit) <= 3  # never more than N in the window


def test_two_limiters_share_one_window(redis_client: redis.Redis, keys: Keys) -> None:
    """Two processes (two instances) count against the same log."""
    sleep = VirtualSleep(redis_client, keys)
    a, b = limiter(redis_client, keys, sleep), limiter(redis_client, keys, sleep)
    a.acquire()
    b.acquire()
    a.acquire()
    assert sleep.calls == []
    b.acquire()
    assert len(sleep.calls) == 1


def test_gives_up_after_max_wait(redis_client: redis.Redis, keys: Keys) -> None:
    sleep = VirtualSleep(redis_client, keys)
    one = limiter(redis_client, keys, sleep, max_wait_seconds=1.0)
    for _ in range(3):
        one.acquire()
    with pytest.raises(RateLimited) as caught:
        one.acquire()
    assert caught.value.retry_after is not None and caught.value.retry_after > 1.0
    assert sleep.calls == []


def test_acquire_is_one_round_trip(redis_client: redis.Redis, keys: Keys) -> None:
    """One EVALSHA per acquire, adaptive state and burst cap or not."""
    sleep = VirtualSleep(redis_client, keys)
    one = limiter(redis_client, keys, sleep, requests=1000, burst_share=0.1)
    one.acquire()  # loads the script
    one.throttled(None, "500")
    sleep.advance(3)  # past the pause
    sent: list[str] = []
    original = redis_client.execute_command

    def counting(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return original(*args, **options)  # type: ignore[no-untyped-call]

    redis_client.execute_command = counting  # type: ignore[method-assign]
    try:
        for _ in range(5):
            one.acquire()
    finally:
        redis_client.execute_command = original  # type: ignore[method-assign]
    assert sent == ["EVALSHA"] * 5


def test_burst_share_spreads_the_window(redis_client: redis.Redis, keys: Keys) -> None:
    """A tenth of the limit in any tenth of the window: same long-run rate, no burst."""
    sleep = VirtualSleep(redis_client, keys)
    one = limiter(redis_client, keys, sleep, requests=100, burst_share=0.1)
    assert slots_now(one, sleep) == 10
    assert 0.9 * HELD / 10 < sleep.calls[-1] <= HELD / 10 + 0.01
    for _ in range(89):  # the rest of the window's 100, ten per tenth of it
        one.acquire()
    # Real time passes too while 89 acquires run (up to ~0.5 s on a loaded CI machine), and
    # the limiter sleeps that much less; without the cap the sum would be 0.
    assert sum(sleep.calls) == pytest.approx(9 * HELD / 10, abs=0.6)
    one.acquire()  # the 101st waits for the first to leave the window
    assert sum(sleep.calls) == pytest.approx(HELD, abs=0.6)


def test_burst_share_never_starves_a_small_limit(redis_client: redis.Redis, keys: Keys) -> None:
    """Three per window: one per tenth of it (rounded up), so still three per window."""
    sleep = VirtualSleep(redis_client, keys)
    one = limiter(redis_client, keys, sleep, requests=3, burst_share=0.1)
    for _ in range(3):
        one.acquire()
    assert sum(sleep.calls) == pytest.approx(2 * HELD / 10, abs=0.05)


# -- the 429 cooldown -----------------------------------------------------------------


def test_throttled_pauses_everyone(redis_client: redis.Redis, keys: Keys) -> None:
    sleep = VirtualSleep(redis_client, keys)
    a = limiter(redis_client, keys, sleep, requests=100)
    b = limiter(redis_client, keys, sleep, requests=100)
    a.throttled(3.0)
    b.acquire()
    assert len(sleep.calls) == 1 and 2.5 < sleep.calls[0] <= 3.1
    a.throttled(None)  # no Retry-After: the default pause
    a.acquire()
    assert len(sleep.calls) == 2 and 1.5 < sleep.calls[1] <= 2.1


def test_throttled_never_shortens_a_pause(redis_client: redis.Redis, keys: Keys) -> None:
    sleep = VirtualSleep(redis_client, keys)
    a = limiter(redis_client, keys, sleep, requests=100)
    a.throttled(5.0)
    a.throttled(1.0)
    a.acquire()
    assert 4.5 < sum(sleep.calls) <= 5.1


# -- the adaptive limit ---------------------------------------------------------------


def test_rate_limit_header_lowers_every_worker(redis_client: redis.Redis, keys: Keys) -> None:
    """X-RateLimit-Limit: 30 against a budget of 90 -> 80 % of 30 for every instance."""
    sleep = VirtualSleep(redis_client, keys)
    a = limiter(redis_client, keys, sleep, requests=90)
    b = limiter(redis_client, keys, sleep, requests=90)
    a.acquire()
    a.throttled(None, "30")
    assert b.allowed() == pytest.approx(24.0, abs=0.1)
    sleep.advance(HELD)  # the pause and the first request are over
    assert slots_now(b, sleep) == 24
    assert WINDOW < sleep.calls[-1] <= HELD + 0.01  # the 25th waits for the window


def test_rate_limit_header_is_scaled_to_our_window(redis_client: redis.Redis, keys: Keys) -> None:
    """Redox's 7,500 per 300 s is 200 per 10 s at 80 %."""
    sleep = VirtualSleep(redis_client, keys)
    one = limiter(redis_client, keys, sleep, requests=300, redox_window_seconds=300.0)
    one.throttled(None, "7500")
    assert one.allowed() == pytest.approx(200.0, abs=0.1)


def test_learned_limit_holds_then_recovers(redis_client: redis.Redis, keys: Keys) -> None:
    """The learnt limit holds ``learned_limit_windows``, then grows 10 % of the budget per
    window, never above the budget; the state then expires."""
    sleep = VirtualSleep(redis_client, keys)
    one = limiter(redis_client, keys, sleep, requests=100, learned_limit_windows=2)
    one.throttled(1.0, "50")
    assert one.allowed() == pytest.approx(40.0, abs=0.1)
    sleep.advance(2 * HELD - 0.5)
    assert one.allowed() == pytest.approx(40.0, abs=0.1)
    sleep.advance(0.5 + 3 * HELD)
    assert one.allowed() == pytest.approx(70.0, abs=0.1)
    sleep.advance(10 * HELD)
    assert one.allowed() == 100.0
    ttl = redis_client.pttl(adaptive_key(keys))
    assert 0 < ttl <= (2 + 6 + 1) * HELD * 1000  # hold + recovery + one window


def test_unexplained_429_backs_off_multiplicatively(redis_client: redis.Redis, keys: Keys) -> None:
    """No header, or a header we are already under: halve, then add 10 % per window."""
    sleep = VirtualSleep(redis_client, keys)
    one = limiter(redis_client, keys, sleep, requests=100, default_pause_seconds=0.001)
    one.acquire()
    one.throttled(None)
    assert one.allowed() == pytest.approx(50.0, abs=0.1)
    one.acquire()  # admitted after the cut: its 429 is news
    one.throttled(None, "100")  # 80 % of 100 is above 50: something else spends the budget
    assert one.allowed() == pytest.approx(25.0, abs=0.1)
    sleep.advance(2 * HELD)
    assert one.allowed() == pytest.approx(45.0, abs=0.1)
    one.acquire()
    one.throttled(None, "junk")  # an unusable header is no header
    assert one.allowed() == pytest.approx(22.5, abs=0.1)


def test_stale_429s_cut_once(redis_client: redis.Redis, keys: Keys) -> None:
    """Requests admitted before a cut that come back 429 say nothing about the new rate:
    a burst of them cuts once, not once each."""
    sleep = VirtualSleep(redis_client, keys)
    threads = [limiter(redis_client, keys, sleep, requests=100) for _ in range(4)]
    for one in threads:  # four requests in flight...
        one.acquire()
    for one in threads:  # ...all refused
        one.throttled(None)
    assert threads[0].allowed() == pytest.approx(50.0, abs=0.1)
    sleep.advance(3)  # past the pause; 3 s of recovery at 10 per window
    threads[0].acquire()
    threads[0].throttled(None)  # admitted after the cut: cut again
    assert threads[0].allowed() == pytest.approx((50 + 10 * 3 / HELD) / 2, abs=0.1)


def test_never_below_one_request(redis_client: redis.Redis, keys: Keys) -> None:
    sleep = VirtualSleep(redis_client, keys)
    one = limiter(redis_client, keys, sleep, requests=4)
    for _ in range(5):
        one.acquire()
        one.throttled(None)
        sleep.advance(HELD)
    assert one.allowed() >= 1.0
    assert slots_now(one, sleep) == 1


def test_backoff_stops_at_the_floor_but_a_stated_limit_does_not(
    redis_client: redis.Redis, keys: Keys
) -> None:
    """429s at random (not about our rate) cannot take a fleet below ``min_share`` of the
    budget; a limit Redox states is obeyed even below it."""
    sleep = VirtualSleep(redis_client, keys)
    one = limiter(redis_client, keys, sleep, requests=1000, min_share=0.05)
    for _ in range(12):  # 1000 / 2**12 would be 0.24
        one.acquire()
        one.throttled(None)
        sleep.advance(0.01)
    assert one.allowed() == pytest.approx(50.0, abs=0.5)
    one.acquire()
    one.throttled(None, "20")  # Redox: 20 per window; 80 % of it
    assert one.allowed() == pytest.approx(16.0, abs=0.5)


def test_recovery_frees_a_slot_before_the_log_does(redis_client: redis.Redis, keys: Keys) -> None:
    """Full at a lowered limit, the next request waits for the first of: a logged request
    leaving the window, or recovery granting one more slot."""
    sleep = VirtualSleep(redis_client, keys)
    one = limiter(redis_client, keys, sleep, requests=100, learned_limit_windows=0)
    one.throttled(0.001, "10")  # 8 per window, growing 10 per window from now
    sleep.advance(0.01)
    assert slots_now(one, sleep) == 8
    assert sleep.calls[-1] < 0.2 * HELD  # one more slot after ~1/10 of a window


def test_allowed_share_for_metrics(redis_client: redis.Redis, keys: Keys) -> None:
    sleep = VirtualSleep(redis_client, keys)
    one = limiter(redis_client, keys, sleep, requests=200, learned_limit_windows=0)
    assert allowed_share({}, 0.0) == 1.0
    one.throttled(None, "100")
    raw: Any = redis_client.hgetall(adaptive_key(keys))
    now_ms = float(raw["cut"])
    assert allowed_share(raw, now_ms) == pytest.approx(0.4)
    assert allowed_share(raw, now_ms + 2 * HELD * 1000) == pytest.approx(0.6)
    assert allowed_share(raw, now_ms + 100 * HELD * 1000) == 1.0
