"""The single-flight lease on a real redis-server: exclusion, heartbeat, fencing."""

from __future__ import annotations

import time

import pytest
import redis

from worker.errors import LockLost
from worker.store.keys import Keys
from worker.store.lease import Lease


def lease(client: redis.Redis, keys: Keys, ttl: float = 30.0, renew: float = 10.0) -> Lease:
    return Lease(client, keys, "dest-1", ttl=ttl, renew_every=renew)


def test_second_lease_cannot_acquire_while_held(redis_client: redis.Redis, keys: Keys) -> None:
    first, second = lease(redis_client, keys), lease(redis_client, keys)
    assert first.acquire()
    try:
        generation = int(redis_client.get(keys.generation("dest-1")) or 0)
        assert not second.acquire()
        assert int(redis_client.get(keys.generation("dest-1")) or 0) == generation
        first.check()  # a failed acquisition never bumps the generation
        assert 0 < second.remaining() <= 30
    finally:
        first.release()
    assert second.remaining() == 0
    assert second.acquire()
    second.release()


def test_expired_lease_is_fenced_off(redis_client: redis.Redis, keys: Keys) -> None:
    """A holder paused past its TTL is replaced; its next check() raises LockLost."""
    first = lease(redis_client, keys)
    assert first.acquire()
    first._stop.set()  # the holder is paused: no more renewals
    redis_client.pexpire(keys.lock("dest-1"), 1)  # ...and its TTL runs out
    time.sleep(0.05)
    second = lease(redis_client, keys)
    assert second.acquire()
    assert second.generation == first.generation + 1
    with pytest.raises(LockLost):
        first.check()
    assert first.lost
    second.check()
    first.release()  # must not release the second holder's lock
    second.check()
    second.release()


def test_generation_fences_even_with_the_same_token(redis_client: redis.Redis, keys: Keys) -> None:
    first = lease(redis_client, keys)
    assert first.acquire()
    redis_client.incr(keys.generation("dest-1"))  # another acquisition happened in between
    with pytest.raises(LockLost):
        first.check()
    first.release()


def test_heartbeat_keeps_the_lease_past_its_ttl(redis_client: redis.Redis, keys: Keys) -> None:
    first = lease(redis_client, keys, ttl=1.2, renew=0.3)
    assert first.acquire()
    try:
        time.sleep(2.0)  # longer than the TTL: only renewals keep it
        first.check()
        assert not lease(redis_client, keys).acquire()
    finally:
        first.release()
    assert redis_client.get(keys.lock("dest-1")) is None


def test_context_manager_releases(redis_client: redis.Redis, keys: Keys) -> None:
    with lease(redis_client, keys) as held:
        assert held.acquire()
    assert lease(redis_client, keys).acquire()


def test_fenced_write_writes_only_while_held(redis_client: redis.Redis, keys: Keys) -> None:
    first = lease(redis_client, keys)
    assert first.acquire()
    first.write_fenced("rec", {"step": "read"})
    assert redis_client.hget("rec", "step") == "read"
    redis_client.incr(keys.generation("dest-1"))  # taken over
    with pytest.raises(LockLost):
        first.write_fenced("rec", {"step": "issue"})
    assert redis_client.hget("rec", "step") == "read"
    first.release()
