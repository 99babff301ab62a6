"""The Redis schedule on a real redis-server: sync, atomic claims with leases, spreading."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
import redis

from config.durations import in_window
from config.registry import DestinationPolicy
from worker.scheduling.store import ScheduleStore
from worker.store.keys import Keys

pytestmark = pytest.mark.integration

DAY = 86400.0
NOW = 1_700_000_000.0


def pol(ident: str, **fields: Any) -> DestinationPolicy:
    base: dict[str, Any] = {"destination_id": ident, "environment_id": "env-1"}
    if "cron" not in fields:
        base["interval_seconds"] = 30 * DAY
    return DestinationPolicy(**(base | fields))


@pytest.fixture
def store(redis_client: redis.Redis, keys: Keys) -> ScheduleStore:
    return ScheduleStore(redis_client, keys)


def sync(
    store: ScheduleStore, policies: list[DestinationPolicy], now: float = NOW, **kw: Any
) -> Any:
    return store.sync(policies, now, random.Random(1), catchup_seconds=3600, **kw)


def test_sync_adds_new_destinations_with_spread_due_times(
    store: ScheduleStore, redis_client: redis.Redis, keys: Keys
) -> None:
    policies = [pol(f"d{i}") for i in range(200)]
    report = sync(store, policies)
    assert len(report.added) == 200 and not report.updated and not report.removed
    dues = [store.due_of(f"d{i}") for i in range(200)]
    assert all(d is not None and NOW <= d <= NOW + 30 * DAY for d in dues)
    assert len(set(dues)) == 200
    assert redis_client.smembers(keys.policies) == {f"d{i}" for i in range(200)}
    assert store.policy("d7") == policies[7]
    assert store.all_policies() == sorted(policies, key=lambda p: p.destination_id)


def test_sync_uses_last_rotated(store: ScheduleStore) -> None:
    history = {"old": NOW - 90 * DAY, "recent": NOW - DAY}
    sync(store, [pol("old"), pol("recent")], last_rotated=history.get)
    old, recent = store.due_of("old"), store.due_of("recent")
    assert old is not None and NOW <= old <= NOW + 3600
    assert recent is not None and NOW - DAY + 27 * DAY <= recent <= NOW - DAY + 30 * DAY


def test_resync_keeps_due_times_unless_schedule_changed(store: ScheduleStore) -> None:
    sync(store, [pol("a"), pol("b"), pol("c")])
    due_a, due_b, due_c = (store.due_of(x) for x in "abc")
    report = sync(
        store,
        [pol("a"), pol("b", name="renamed"), pol("c", interval_seconds=2 * DAY)],
        now=NOW + 10,
    )
    assert report.added == () and report.removed == ()
    assert report.updated == ("b", "c") and report.rescheduled == ("c",)
    assert report.unchanged == 1
    assert store.due_of("a") == due_a
    assert store.due_of("b") == due_b
    new_c = store.due_of("c")
    assert new_c != due_c and new_c is not None and NOW + 10 <= new_c <= NOW + 10 + 2 * DAY
    assert store.policy("b") == pol("b", name="renamed")


def test_window_change_reschedules_into_window(store: ScheduleStore) -> None:
    sync(store, [pol("a")])
    report = sync(store, [pol("a", window=(120, 180))])
    assert report.rescheduled == ("a",)
    due = store.due_of("a")
    assert due is not None and in_window(due, (120, 180))


def test_removed_paused_disabled_leave_the_schedule_only(
    store: ScheduleStore, redis_client: redis.Redis, keys: Keys
) -> None:
    sync(store, [pol("keep"), pol("gone"), pol("pause"), pol("off")])
    redis_client.hset(keys.destination("gone"), "last_rotated_at", "1")
    redis_client.hset(keys.rotation("r-1"), "destination_id", "gone")
    report = sync(store, [pol("keep"), pol("pause", paused=True), pol("off", enabled=False)])
    assert report.removed == ("gone", "off")
    assert report.paused == ("pause",)
    for ident in ("gone", "pause", "off"):
        assert store.due_of(ident) is None
        assert not redis_client.sismember(keys.policies, ident)
    assert store.due_of("keep") is not None
    # nothing else is touched: state, records, and the last policy (for in-flight rotations)
    assert redis_client.hget(keys.destination("gone"), "last_rotated_at") == "1"
    assert redis_client.exists(keys.rotation("r-1"))
    assert store.policy("gone") == pol("gone")
    assert store.policy("pause") == pol("pause", paused=True)
    # a removed destination cannot be rescheduled by a rotation finishing late
    assert store.reschedule("gone", NOW + 100) is False
    assert store.due_of("gone") is None
    assert store.claim_due(NOW + 365 * DAY, 100, 60) == ["keep"]
    # unpausing brings it back as a new destination
    report = sync(store, [pol("keep"), pol("pause")])
    assert report.added == ("pause",)
    assert store.due_of("pause") is not None


def test_unscheduled_destination_stays_off_on_resync(store: ScheduleStore) -> None:
    sync(store, [pol("a")])
    store.unschedule("a")  # e.g. needs_attention
    report = sync(store, [pol("a")])
    assert report.unchanged == 1 and store.due_of("a") is None
    assert store.reschedule("a", NOW + 5) is True
    assert store.due_of("a") == NOW + 5


def test_claim_due_returns_only_due_and_leases(
    store: ScheduleStore, redis_client: redis.Redis, keys: Keys
) -> None:
    redis_client.zadd(keys.schedule, {"past": NOW - 10, "now": NOW, "later": NOW + 10})
    assert sorted(store.claim_due(NOW, 10, 300)) == ["now", "past"]
    assert store.due_of("past") == NOW + 300
    assert store.due_of("now") == NOW + 300
    assert store.due_of("later") == NOW + 10
    assert store.claim_due(NOW, 10, 300) == []  # leased, not claimable again
    assert store.claim_due(NOW + 10, 10, 300) == ["later"]
    assert sorted(store.claim_due(NOW + 300, 10, 300)) == ["now", "past"]  # lease expired


def test_claim_due_respects_limit(
    store: ScheduleStore, redis_client: redis.Redis, keys: Keys
) -> None:
    redis_client.zadd(keys.schedule, {f"d{i}": NOW - i for i in range(25)})
    first = store.claim_due(NOW, 10, 60)
    assert len(first) == 10
    assert first == [f"d{i}" for i in range(24, 14, -1)]  # most overdue first
    assert store.claim_due(NOW, 0, 60) == []
    rest = store.claim_due(NOW, 100, 60)
    assert len(rest) == 15 and not set(first) & set(rest)


def test_two_concurrent_claimers_split_the_due_set(redis_url: str, keys: Keys) -> None:
    setup = redis.Redis.from_url(redis_url, decode_responses=True)
    due = {f"due-{i}" for i in range(5_000)}
    with setup.pipeline(transaction=False) as pipe:
        for i in range(50_000):
            score = NOW - (i % 5_000) if i < 5_000 else NOW + 1 + i
            pipe.zadd(keys.schedule, {(f"due-{i}" if i < 5_000 else f"later-{i}"): score})
        pipe.execute()
    setup.close()

    got: list[list[str]] = [[], []]
    barrier = threading.Barrier(2)

    def claimer(slot: int) -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        store = ScheduleStore(client, keys)
        barrier.wait()
        while batch := store.claim_due(NOW, 50, 300):
            got[slot].extend(batch)
        client.close()

    threads = [threading.Thread(target=claimer, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    a, b = set(got[0]), set(got[1])
    assert len(got[0]) == len(a) and len(got[1]) == len(b)
    assert a | b == due
    assert not a & b
    assert a and b  # both really ran


def test_reschedule_requires_policy(store: ScheduleStore) -> None:
    assert store.reschedule("unknown", NOW) is False
    assert store.due_of("unknown") is None
    sync(store, [pol("a")])
    assert store.reschedule("a", NOW + 42) is True
    assert store.due_of("a") == NOW + 42


def test_upcoming(store: ScheduleStore, redis_client: redis.Redis, keys: Keys) -> None:
    redis_client.zadd(keys.schedule, {"a": NOW + 1, "b": NOW + 2, "c": NOW + 100})
    assert store.upcoming(NOW + 50) == [("a", NOW + 1), ("b", NOW + 2)]
    assert store.upcoming(NOW + 50, limit=1) == [("a", NOW + 1)]


def test_spread_overdue(store: ScheduleStore, redis_client: redis.Redis, keys: Keys) -> None:
    sync(store, [pol(f"d{i}") for i in range(500)] + [pol("w", window=(120, 180))])
    overdue = {f"d{i}": NOW - 1000 - i for i in range(300)} | {"w": NOW - 5}
    redis_client.zadd(keys.schedule, overdue)
    future = {ident: store.due_of(ident) for ident in (f"d{i}" for i in range(300, 500))}
    count = store.spread_overdue(NOW, 3600, random.Random(3))
    assert count == 301
    dues = [store.due_of(ident) for ident in overdue if ident != "w"]
    assert all(d is not None and NOW <= d <= NOW + 3600 for d in dues)
    assert len(set(dues)) > 290
    w = store.due_of("w")
    assert w is not None and in_window(w, (120, 180)) and w >= NOW
    assert {ident: store.due_of(ident) for ident in future} == future
