"""The shared sliding-window limiter on a real redis-server, with an injected sleep.

The injected sleep moves the limiter's clock instead of waiting: it shifts every logged
request (and the 429 pause) back by the slept time, as if that much time had passed.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from worker.errors import RateLimited
from worker.store.keys import Keys
from worker.store.limiter import RateLimiter


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


def limiter(client: redis.Redis, keys: Keys, sleep: VirtualSleep, **kw: float) -> RateLimiter:
    args: dict[str, float] = {"requests": 3, "window_seconds": 10.0, "max_wait_seconds": 60.0}
    args.update(kw)
    return RateLimiter(
        client,
        keys,
        requests=int(args["requests"]),
        window_seconds=args["window_seconds"],
        max_wait_seconds=args["max_wait_seconds"],
        transit_allowance_seconds=0.25,
        sleep=sleep,
    )


def test_window_holds_n_requests(redis_client: redis.Redis, keys: Keys) -> None:
    sleep = VirtualSleep(redis_client, keys)
    one = limiter(redis_client, keys, sleep)
    for _ in range(3):
        one.acquire()
    assert sleep.calls == []
    one.acquire()  # the fourth must wait for the oldest to leave the window
    assert len(sleep.calls) == 1
    assert 10.0 < sleep.calls[0] <= 10.25 + 0.01  # window + transit allowance (+ jitter)
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


def test_throttled_pauses_everyone(redis_client: redis.Redis, keys: Keys) -> None:
    sleep = VirtualSleep(redis_client, keys)
    a, b = limiter(redis_client, keys, sleep), limiter(redis_client, keys, sleep)
    a.throttled(3.0)
    b.acquire()
    assert len(sleep.calls) == 1 and 2.5 < sleep.calls[0] <= 3.1
    a.throttled(None)  # no Retry-After: the default pause
    a.acquire()
    assert len(sleep.calls) == 2 and 1.5 < sleep.calls[1] <= 2.1


def test_throttled_never_shortens_a_pause(redis_client: redis.Redis, keys: Keys) -> None:
    sleep = VirtualSleep(redis_client, keys)
    a = limiter(redis_client, keys, sleep)
    a.throttled(5.0)
    a.throttled(1.0)
    a.acquire()
    assert 4.5 < sum(sleep.calls) <= 5.1
