"""enqueue_due on a real redis-server: atomic claims, no duplicate triggers, skips."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
import redis

from config.registry import DestinationPolicy
from worker.runtime import Runtime
from worker.scheduling.enqueue import enqueue_due_once
from worker.scheduling.store import ScheduleStore
from worker.store.keys import Keys
from worker.store.records import RotationStore

pytestmark = pytest.mark.integration

NOW = 1_700_000_000.0


class RecordingApp:
    """Stands in for the Celery app: records every task it is asked to send."""

    def __init__(self, fail_for: set[str] | None = None) -> None:
        self.sent: list[tuple[str, list[Any]]] = []
        self._lock = threading.Lock()
        self._fail_for = fail_for or set()

    def send_task(self, name: str, args: list[Any], **_: Any) -> None:
        if args[0] in self._fail_for:
            raise ConnectionError("broker refused the message")
        with self._lock:
            self.sent.append((name, list(args)))


def policies(count: int) -> list[DestinationPolicy]:
    return [
        DestinationPolicy(destination_id=f"d{i:05d}", environment_id="env", interval_seconds=86400)
        for i in range(count)
    ]


@pytest.fixture
def schedule(redis_client: redis.Redis, keys: Keys) -> ScheduleStore:
    return ScheduleStore(redis_client, keys)


@pytest.fixture
def store(redis_client: redis.Redis, keys: Keys) -> RotationStore:
    return RotationStore(redis_client, keys, claim_ttl=3600, stream_maxlen=1000)


def make_due(schedule: ScheduleStore, redis_client: redis.Redis, keys: Keys, count: int) -> None:
    """``count`` registry destinations, all due before NOW."""
    schedule.sync(policies(count), NOW - 10 * 86400, random.Random(3), catchup_seconds=0)
    rng = random.Random(4)
    redis_client.zadd(
        keys.schedule, {f"d{i:05d}": NOW - rng.uniform(1, 5000) for i in range(count)}
    )


def test_two_concurrent_callers_never_trigger_a_destination_twice(
    schedule: ScheduleStore,
    store: RotationStore,
    redis_client: redis.Redis,
    keys: Keys,
    runtime: Runtime,
) -> None:
    count = 2000
    make_due(schedule, redis_client, keys, count)
    app = RecordingApp()
    reports: list[dict[str, int]] = []
    barrier = threading.Barrier(2)

    def beat() -> None:
        # Each "beat" uses its own connection, like two processes would.
        client = redis.Redis(connection_pool=redis_client.connection_pool)
        own = Runtime.build(runtime.settings, client)
        barrier.wait()
        while True:  # keep ticking until nothing is due, like beat would
            report = enqueue_due_once(app, own, batch_size=97, now=NOW)
            reports.append(report)
            if report["claimed"] == 0:
                return

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    destinations = [args[0] for _, args in app.sent]
    assert len(destinations) == count
    assert len(set(destinations)) == count  # nobody triggered twice
    assert {name for name, _ in app.sent} == {"rotate_destination"}
    assert sum(r["claimed"] for r in reports) == count
    assert sum(r["started"] for r in reports) == count
    assert all(r["inProgress"] == 0 for r in reports)
    # Both callers did part of the work, and every claim in Redis is the rotation sent.
    assert sum(1 for r in reports if r["claimed"]) >= 2
    for destination_id, rotation_id in (args for _, args in app.sent):
        assert store.active(destination_id) == rotation_id
        record = store.record(rotation_id)
        assert record is not None and record.get("trigger") == "schedule"
    assert len(set(redis_client.keys(keys.active("*")))) == count
    # Claimed entries are leased (moved into the future), not removed.
    assert schedule.upcoming(NOW) == []
    assert redis_client.zcard(keys.schedule) == count


def test_a_second_trigger_returns_the_running_rotation(
    schedule: ScheduleStore,
    store: RotationStore,
    redis_client: redis.Redis,
    keys: Keys,
    runtime: Runtime,
) -> None:
    make_due(schedule, redis_client, keys, 3)
    running = store.claim("d00001", trigger="operator")
    app = RecordingApp()
    report = enqueue_due_once(app, runtime, batch_size=10, now=NOW)
    assert report == {"claimed": 3, "started": 2, "inProgress": 1, "skipped": 0, "errors": 0}
    assert sorted(args[0] for _, args in app.sent) == ["d00000", "d00002"]
    assert store.active("d00001") == running.rotation_id


def test_paused_and_needs_attention_are_taken_off_the_schedule(
    schedule: ScheduleStore,
    store: RotationStore,
    redis_client: redis.Redis,
    keys: Keys,
    runtime: Runtime,
) -> None:
    make_due(schedule, redis_client, keys, 4)
    redis_client.hset(keys.destination("d00000"), "paused", "1")
    redis_client.hset(keys.destination("d00001"), "needs_attention", "1")
    redis_client.hset(keys.destination("d00002"), "needs_attention", "")  # cleared: scheduled
    app = RecordingApp()
    report = enqueue_due_once(app, runtime, batch_size=10, now=NOW)
    assert report["skipped"] == 2 and report["started"] == 2
    assert sorted(args[0] for _, args in app.sent) == ["d00002", "d00003"]
    assert schedule.due_of("d00000") is None and schedule.due_of("d00001") is None


def test_a_send_failure_releases_the_claim_and_retries_soon(
    schedule: ScheduleStore,
    store: RotationStore,
    redis_client: redis.Redis,
    keys: Keys,
    runtime: Runtime,
) -> None:
    make_due(schedule, redis_client, keys, 2)
    app = RecordingApp(fail_for={"d00000"})
    report = enqueue_due_once(app, runtime, batch_size=10, now=NOW)
    assert report["errors"] == 1 and report["started"] == 1
    assert store.active("d00000") is None  # no claim left behind
    due = schedule.due_of("d00000")
    assert due is not None and NOW < due <= NOW + 60
    later = RecordingApp()
    assert enqueue_due_once(later, runtime, batch_size=10, now=due)["started"] == 1
